package inventorytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netsan/netsan/inventory"
)

// fleet is the machines the tests of the boot services know, by name:
// PCs that boot from SAN (node1; uefi1 with its own EFI loader), from
// their disk (desk1; node2, which has a root all the same), through a menu (lab1 with a root, bare1 without) or
// to a shell (dev1); Raspberry Pis known by their prefix that boot from SAN
// with CHAP (pi1) or mutual CHAP (pi2) or from their SD card (pi3); and
// pi4, a Pi known by its serial alone (its MAC is not Raspberry Pi's).
var fleet = []struct {
	name, mac, ip string
	keys          []string // the table's other lines
}{
	{"node1", "52:54:00:00:00:01", "198.18.0.11", []string{`root = { image = "roots/node1.img", size = "1GiB" }`}},
	{"uefi1", "52:54:00:00:00:02", "198.18.0.12", []string{`efi_filename = '\EFI\debian\grubx64.efi'`, `root = { image = "roots/uefi1.img", size = "1GiB" }`}},
	{"desk1", "52:54:00:00:00:03", "198.18.0.13", []string{`boot = "local"`}},
	{"node2", "52:54:00:00:00:07", "198.18.0.17", []string{`boot = "local"`, `root = { image = "roots/node2.img", size = "1GiB" }`}},
	{"lab1", "52:54:00:00:00:04", "198.18.0.14", []string{`boot = "menu"`, `root = { image = "roots/lab1.img", size = "1GiB" }`, `efi_filename = '\EFI\redhat\grub.efi'`}},
	{"dev1", "52:54:00:00:00:05", "198.18.0.15", []string{`boot = "shell"`}},
	{"bare1", "52:54:00:00:00:06", "198.18.0.16", []string{`boot = "menu"`}},
	{"pi1", "dc:a6:32:00:00:01", "198.18.0.21", []string{`serial = "9ffefde1"`, `root = { image = "roots/pi1.img", size = "1GiB" }`, `chap = { user = "pi1", secret = "pi1-root-secret-c0ffee" }`}},
	{"pi2", "dc:a6:32:00:00:02", "198.18.0.22", []string{`serial = "9ffefde2"`, `root = { image = "roots/pi2.img", size = "1GiB" }`, `chap = { user = "pi2", secret = "pi2-root-secret-decade", mutual_secret = "target-secret-0123" }`}},
	{"pi3", "dc:a6:32:00:00:03", "198.18.0.23", []string{`serial = "9ffefde3"`, `boot = "local"`}},
	{"pi4", "02:00:00:00:00:24", "198.18.0.24", []string{`serial = "9ffefde4"`, `boot = "menu"`}},
	// linux1 needs a [tftp] root in the inventory it goes into.
	{"linux1", "52:54:00:00:00:08", "198.18.0.18", []string{`boot = "linux"`, `root = { image = "roots/linux1.img", size = "1GiB" }`,
		`kernel = "debian12/vmlinuz"`, `initrd = "debian12/initrd.img"`, `cmdline = "console=ttyS0"`, `chap = { user = "linux1", secret = "linux1-root-secret-0ddba11" }`}},
}

// Hosts is the [[host]] tables of the named machines of the test fleet
// (node1, node2, uefi1, desk1, lab1, dev1, bare1, pi1 to pi4), in the
// order named.
func Hosts(t testing.TB, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range names {
		i := 0
		for i < len(fleet) && fleet[i].name != name {
			i++
		}
		if i == len(fleet) {
			t.Fatalf("no host %q in the test fleet", name)
		}
		h := fleet[i]
		fmt.Fprintf(&b, "\n[[host]]\nname = %q\nmac  = %q\nip   = %q\n%s\n", h.name, h.mac, h.ip, strings.Join(h.keys, "\n"))
	}
	return b.String()
}

// WriteFiles writes files (a path under dir → its content) and the
// directories they need.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// BootTree makes a directory for BootFiles: a TFTP root, tftp/, holding
// hello.txt, and beside it secret.txt with the symlink tftp/out pointing
// at it, a way out of the root that the servers must refuse.
func BootTree(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	WriteFiles(t, dir, map[string]string{"secret.txt": "outside the root", "tftp/hello.txt": "hello from root\n"})
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(dir, "tftp", "out")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// IPXEDir is where Debian's ipxe package puts its loaders.
const IPXEDir = "/usr/lib/ipxe"

// InstalledBootFiles is BootFiles over a new BootTree, its directory, and
// the loaders of Debian's ipxe package; it skips t when they are not
// installed.
func InstalledBootFiles(t testing.TB, hosts string) (*inventory.Inventory, string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(IPXEDir, "undionly.kpxe")); err != nil {
		t.Skip("Debian package ipxe not installed")
	}
	dir := BootTree(t)
	return BootFiles(t, dir, IPXEDir, hosts), dir
}
