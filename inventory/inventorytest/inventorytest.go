// Package inventorytest parses small inventories for the tests of the
// packages that serve one.
package inventorytest

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/netsan/netsan/inventory"
)

// Parse parses src as the inventory file dir/netsan.toml, so that relative
// paths in it resolve under dir, and fails t with the problems when it does
// not load.
func Parse(t testing.TB, dir, src string) *inventory.Inventory {
	t.Helper()
	inv, problems := inventory.Parse(filepath.Join(dir, "netsan.toml"), []byte(src))
	if inv == nil {
		t.Fatalf("inventory: %v", problems)
	}
	return inv
}

// BootFiles is the inventory of a server handing out boot files: data_dir
// dir, the TFTP root dir/tftp, iPXE's loaders from ipxeDir, and the
// [[host]] tables in hosts.
func BootFiles(t testing.TB, dir, ipxeDir, hosts string) *inventory.Inventory {
	t.Helper()
	return Parse(t, dir, Server(dir)+fmt.Sprintf(`
[tftp]
root     = "tftp"
ipxe_dir = %q

[iscsi]
base_iqn = "iqn.2026-11.example.lab"
`, ipxeDir)+hosts)
}

// Server is the [server] table of the tests' netsan: address 198.18.0.1,
// data_dir dataDir.
func Server(dataDir string) string {
	return fmt.Sprintf("\n[server]\naddress  = \"198.18.0.1\"\ndata_dir = %q\n", dataDir)
}

// Loopback is the head of an inventory for a netsan on 127.0.0.1 keeping
// its data in dataDir: [server], [http] on httpPort unless it is 0, and
// [iscsi] on iscsiPort with baseIQN, last, so that the lines that follow
// it may add to [iscsi] before the next table.
func Loopback(dataDir string, httpPort, iscsiPort int, baseIQN string) string {
	head := fmt.Sprintf("[server]\naddress = \"127.0.0.1\"\ndata_dir = %q\n", dataDir)
	if httpPort != 0 {
		head += fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", httpPort)
	}
	return head + fmt.Sprintf("[iscsi]\nlisten = [\"127.0.0.1:%d\"]\nbase_iqn = %q\n", iscsiPort, baseIQN)
}
