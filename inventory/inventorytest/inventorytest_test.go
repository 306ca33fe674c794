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

// TestFleet: the whole fleet is one valid inventory, each host as named.
func TestFleet(t *testing.T) {
	names := []string{"node1", "node2", "uefi1", "desk1", "lab1", "dev1", "bare1", "pi1", "pi2", "pi3", "pi4"}
	inv := BootFiles(t, t.TempDir(), "/usr/lib/ipxe", Hosts(t, names...))
	if len(inv.Hosts) != len(names) {
		t.Fatalf("%d hosts, want %d", len(inv.Hosts), len(names))
	}
	for i, h := range inv.Hosts {
		if h.Name != names[i] {
			t.Errorf("host %d is %s, want %s", i, h.Name, names[i])
		}
	}
	if h := inv.HostByName("pi2"); h.Serial != "9ffefde2" || !h.CHAP.Mutual() || !h.BootsFromSAN() {
		t.Errorf("pi2 = %+v", h)
	}
}
