package bootmenu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/inventory/inventorytest"
)

// testTree is a temporary tftp.root and ipxe_dir with an inventory over them.
type testTree struct {
	dir, root, ipxe string
	inv             *inventory.Inventory
}

// newTestTree writes files and an inventory into a temporary directory.
// The inventory names the tftp root and ipxe dir relative to itself, as
// people write them, and is loaded through inventory.Parse.
func newTestTree(t testing.TB) *testTree {
	t.Helper()
	dir := t.TempDir()
	tt := &testTree{dir: dir, root: filepath.Join(dir, "tftp"), ipxe: filepath.Join(dir, "ipxe")}
	inventorytest.WriteFiles(t, dir, map[string]string{
		"ipxe/undionly.kpxe":        "UNDI loader",
		"ipxe/ipxe.efi":             "EFI loader",
		"tftp/hello.txt":            "hello from root",
		"tftp/sub/deep.txt":         "deep file",
		"tftp/start4.elf":           "shared start4",
		"tftp/9ffefde1/start4.elf":  "pi1 start4",
		"tftp/9ffefde1/config.txt":  "pi1 config",
		"tftp/9ffefde3/cmdline.txt": "pi3 own cmdline",
		"tftp/cmdline.txt":          "shared cmdline",
		"tftp/undionly.kpxe":        "root copy, shadowed by ipxe_dir",
		"secret.txt":                "outside the root",
	})
	tt.inv = tt.parse(t, "authoritative")
	return tt
}

func (tt *testTree) parse(t testing.TB, mode string) *inventory.Inventory {
	t.Helper()
	return tt.parseWith(t, mode, "")
}

// parseWith is parse with more sections (say [http]).
func (tt *testTree) parseWith(t testing.TB, mode, more string) *inventory.Inventory {
	t.Helper()
	src := inventorytest.Server(tt.dir) + more + fmt.Sprintf(`
[dhcp]
mode   = %q
subnet = "198.18.0.0/24"

[tftp]
root     = "tftp"
ipxe_dir = "ipxe"

[iscsi]
listen   = ["0.0.0.0:3261"]
base_iqn = "iqn.2026-11.example.lab"
`, mode) + inventorytest.Hosts(t, "node1", "uefi1", "desk1", "lab1", "dev1", "bare1", "pi1", "pi2", "pi3", "linux1")
	return inventorytest.Parse(t, tt.dir, src)
}

func (tt *testTree) resolver(t testing.TB) *Resolver {
	t.Helper()
	r, err := New(tt.inv, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	r.SetMACFinder(hostAddrs(tt.inv))
	return r
}

// addrTable answers MACFinder from a fixed table, as dhcpd's leases would.
type addrTable map[netip.Addr]net.HardwareAddr

func (a addrTable) MACOf(ip, _ netip.Addr) (net.HardwareAddr, error) {
	if mac, ok := a[ip]; ok {
		return mac, nil
	}
	return nil, errors.New("no lease")
}

// hostAddrs is every inventory host at its own address.
func hostAddrs(inv *inventory.Inventory) addrTable {
	a := addrTable{}
	for _, h := range inv.Hosts {
		if h.IP.IsValid() {
			a[h.IP.Addr] = h.MAC.HardwareAddr
		}
	}
	return a
}
