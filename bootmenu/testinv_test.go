package bootmenu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
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

const testHosts = `
[[host]]
name = "node1"
mac  = "52:54:00:00:00:01"
ip   = "198.18.0.11"
boot = "san"
root = { image = "roots/node1.img", size = "1GiB" }

[[host]]
name = "uefi1"
mac  = "52:54:00:00:00:02"
ip   = "198.18.0.12"
boot = "san"
efi_filename = '\EFI\debian\grubx64.efi'
root = { image = "roots/uefi1.img", size = "1GiB" }

[[host]]
name = "desk1"
mac  = "52:54:00:00:00:03"
ip   = "198.18.0.13"
boot = "local"

[[host]]
name = "lab1"
mac  = "52:54:00:00:00:04"
ip   = "198.18.0.14"
boot = "menu"
root = { image = "roots/lab1.img", size = "1GiB" }
efi_filename = '\EFI\redhat\grub.efi'

[[host]]
name = "dev1"
mac  = "52:54:00:00:00:05"
ip   = "198.18.0.15"
boot = "shell"

[[host]]
name = "bare1"
mac  = "52:54:00:00:00:06"
ip   = "198.18.0.16"
boot = "menu"

[[host]]
name   = "pi1"
mac    = "dc:a6:32:00:00:01"
ip     = "198.18.0.21"
serial = "9ffefde1"
boot   = "san"
root   = { image = "roots/pi1.img", size = "1GiB" }
chap   = { user = "pi1", secret = "pi1-root-secret-c0ffee" }

[[host]]
name   = "pi2"
mac    = "dc:a6:32:00:00:02"
ip     = "198.18.0.22"
serial = "9ffefde2"
boot   = "san"
root   = { image = "roots/pi2.img", size = "1GiB" }
chap   = { user = "pi2", secret = "pi2-root-secret-decade", mutual_secret = "target-secret-0123" }

[[host]]
name   = "pi3"
mac    = "dc:a6:32:00:00:03"
ip     = "198.18.0.23"
serial = "9ffefde3"
boot   = "local"
`

// newTestTree writes files and an inventory into a temporary directory.
// The inventory names the tftp root and ipxe dir relative to itself, as
// people write them, and is loaded through inventory.Parse.
func newTestTree(t testing.TB) *testTree {
	t.Helper()
	dir := t.TempDir()
	tt := &testTree{dir: dir, root: filepath.Join(dir, "tftp"), ipxe: filepath.Join(dir, "ipxe")}
	files := map[string]string{
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
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tt.inv = tt.parse(t, "authoritative")
	return tt
}

func (tt *testTree) parse(t testing.TB, mode string) *inventory.Inventory {
	t.Helper()
	src := fmt.Sprintf(`
[server]
address  = "198.18.0.1"
data_dir = %q

[dhcp]
mode   = %q
subnet = "198.18.0.0/24"

[tftp]
root     = "tftp"
ipxe_dir = "ipxe"

[iscsi]
listen   = ["0.0.0.0:3261"]
base_iqn = "iqn.2026-11.example.lab"
`, tt.dir, mode) + testHosts
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
