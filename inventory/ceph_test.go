package inventory

import (
	"strings"
	"testing"
)

const cephBase = base + `
[ceph]
conf = "/etc/ceph/ceph.conf"

[[image]]
name = "deb"
rbd  = "gold/debian12"
`

func TestCephInventory(t *testing.T) {
	src := cephBase + `
[[host]]
name = "node1"
mac  = "52:54:00:00:00:01"
ip   = "198.18.0.11"
root = { rbd = "node1", from = "deb", size = "8GiB" }

[[target]]
name = "data"
luns = [ { lun = 0, rbd = "data/db01", size = "100GiB" }, { lun = 1, image = "d.img", size = "1G" } ]
[[target.acl]]
initiator = "iqn.2026-11.example.lab:node1"
`
	inv, ps := Parse("netsan.toml", []byte(src))
	if inv == nil {
		t.Fatalf("rejected: %v", ps)
	}
	if c := inv.Ceph; c == nil || c.ID != "admin" || c.Pool != "rbd" || c.Conf != "/etc/ceph/ceph.conf" {
		t.Errorf("ceph defaults: %+v", c)
	}
	if got := inv.HostByName("node1").Root.RBD; got != "rbd/node1" {
		t.Errorf("root rbd = %q, want the default pool added: rbd/node1", got)
	}
	if got := inv.HostByName("node1").Root.Backing(); got != "rbd:rbd/node1" {
		t.Errorf("root Backing = %q", got)
	}
	if got := inv.ImageByName("deb").RBD; got != "gold/debian12" {
		t.Errorf("golden rbd = %q", got)
	}
	if got := inv.Targets[0].LUNs[0].RBD; got != "data/db01" {
		t.Errorf("lun rbd = %q", got)
	}
	// The first use is [ceph] itself, on its line.
	use := inv.CephUse()
	if want := lineOf(src, 0, "[ceph]"); use == nil || use.Pos.Line != want {
		t.Errorf("CephUse = %+v, want line %d ([ceph])", use, want)
	}
}

// TestCephConfRelative: a relative [ceph] conf is the inventory's
// neighbour, as data_dir and tftp.root are, not a file in whatever
// directory netsan was started from.
func TestCephConfRelative(t *testing.T) {
	src := strings.Replace(cephBase, `conf = "/etc/ceph/ceph.conf"`, `conf = "ceph/lab.conf"`, 1)
	inv, ps := Parse("/etc/netsan/netsan.toml", []byte(src))
	if inv == nil {
		t.Fatalf("rejected: %v", ps)
	}
	if got, want := inv.Ceph.Conf, "/etc/netsan/ceph/lab.conf"; got != want {
		t.Errorf("ceph conf = %q, want %q (beside the inventory)", got, want)
	}
}

func TestNoCephUse(t *testing.T) {
	inv, ps := Parse("netsan.toml", []byte(base))
	if inv == nil {
		t.Fatal(ps)
	}
	if inv.UsesCeph() || inv.CephUse() != nil {
		t.Errorf("an inventory without [ceph] or rbd uses Ceph: %+v", inv.CephUse())
	}
}

func TestBadCephInventories(t *testing.T) {
	host := func(root string) string {
		return "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = " + root + "\n"
	}
	for _, tc := range []struct {
		name, base, src, msg string
		at                   string // the problem is on the first line of src holding this
	}{
		{"rbd without [ceph]", base, host(`{ rbd = "a" }`), "needs a [ceph] section", "root ="},
		{"bad rbd name", cephBase, host(`{ rbd = "p/q/r" }`), `rbd "p/q/r": want pool/image`, "root ="},
		{"rbd and image", cephBase, host(`{ rbd = "a", image = "a.img" }`), "more than one of image, device and rbd", "root ="},
		{"rbd root from file golden", cephBase, host(`{ rbd = "a", from = "golden" }`), "import the image into Ceph", "root ="},
		{"file root from rbd golden", cephBase, host(`{ image = "a.img", from = "deb" }`), "give the root an rbd too", "root ="},
		{"root is the rbd golden", cephBase, host(`{ rbd = "gold/debian12" }`), "is a golden image", "root ="},
		{"image with path and rbd", cephBase, "[[image]]\nname = \"x\"\npath = \"x.img\"\nrbd = \"x\"\n", "both path and rbd", "[[image]]"},
		{"shared rbd", cephBase, host(`{ rbd = "r" }`) + "[[target]]\nname = \"d\"\nluns = [ { lun = 0, rbd = \"rbd/r\" } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.example.lab:x\"\n", "rbd:rbd/r is already used by a", "luns ="},
		{"lun needs a backing", cephBase, "[[target]]\nname = \"d\"\nluns = [ { lun = 0 } ]\n", "needs an image, a device or an rbd", "luns ="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, tc.base, tc.src, tc.msg, tc.at)
		})
	}
}

// refused checks that Parse refuses base+src with a problem whose message
// holds msg, on the first line of src holding at: the line a person has
// to edit.
func refused(t *testing.T, base, src, msg, at string) {
	t.Helper()
	inv, ps := Parse("netsan.toml", []byte(base+src))
	if inv != nil {
		t.Fatalf("accepted; problems: %v", ps)
	}
	want := lineOf(base+src, len(base), at)
	for _, p := range ps {
		if strings.Contains(p.Message, msg) {
			if p.Pos.Line != want {
				t.Errorf("%q at line %d, want %d", p.Message, p.Pos.Line, want)
			}
			return
		}
	}
	t.Errorf("no problem containing %q; got %v", msg, ps)
}

// lineOf is the 1-based line of the first s in src at or after byte from.
func lineOf(src string, from int, s string) int {
	i := strings.Index(src[from:], s)
	if i < 0 {
		return -1
	}
	return 1 + strings.Count(src[:from+i], "\n")
}
