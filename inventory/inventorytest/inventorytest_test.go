package inventorytest

import (
	"path/filepath"
	"testing"
)

// TestBootFiles: the paths in the inventory resolve under dir, and the
// hosts given are in it.
func TestBootFiles(t *testing.T) {
	dir := t.TempDir()
	inv := BootFiles(t, dir, "/usr/lib/ipxe", `
[[host]]
name = "node1"
mac  = "52:54:00:00:00:01"
boot = "local"
`)
	if got, want := inv.TFTP.Root, filepath.Join(dir, "tftp"); got != want {
		t.Errorf("tftp root %q, want %q", got, want)
	}
	if got := inv.TFTP.IPXEDir; got != "/usr/lib/ipxe" {
		t.Errorf("ipxe_dir %q", got)
	}
	if len(inv.Hosts) != 1 || inv.HostByName("node1") == nil {
		t.Errorf("hosts %+v, want node1 alone", inv.Hosts)
	}
}
