package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/lab"
)

// The Ceph build of netsan, made by the first test that needs it.
var cephBuild struct {
	once sync.Once
	bin  string
	err  error
}

func netsanCeph(t *testing.T) string {
	t.Helper()
	cephBuild.once.Do(func() {
		root, err := lab.RepoRoot()
		if err != nil {
			cephBuild.err = err
			return
		}
		cephBuild.bin = filepath.Join(env.tmpRoot, "netsan-ceph")
		build := exec.Command("go", "build", "-tags", "ceph,pacific", "-o", cephBuild.bin, "./cmd/netsan")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			cephBuild.err = err
			t.Logf("go build -tags ceph,pacific ./cmd/netsan:\n%s", out)
		}
	})
	if cephBuild.err != nil {
		t.Fatal(cephBuild.err)
	}
	return cephBuild.bin
}

// servedRBD is a lab whose netsan keeps its golden image, roots and data
// LUNs as RBD images in a single-node cluster running in the lab's own
// namespace, on its loopback.
type servedRBD struct {
	*served
	ceph *cephtest.Cluster
}

// serveRBD imports the golden image into the cluster as rbd/golden and
// serves hosts whose roots netsan clones from it (rbd/<name>) and targets.
func serveRBD(t *testing.T, hosts []lab.NetsanHost, targets []lab.DataTarget, discovery *lab.CHAP) *servedRBD {
	t.Helper()
	needNetsan(t)
	bin := netsanCeph(t)
	l := newLab(t)
	c := cephtest.Start(t, cephtest.Options{NetNS: l.Name})
	s := &servedRBD{ceph: c, served: &served{Lab: l, roots: map[string]string{},
		inv: rbdInventory(t, l, c, env.golden, hosts, targets, discovery)}}
	s.start(t, bin)
	return s
}

// rbdInventory imports golden into c as rbd/golden and returns the
// inventory of hosts, whose roots netsan clones from it (rbd/<name> for
// boot = "san" hosts), and targets.
func rbdInventory(t *testing.T, l *lab.Lab, c *cephtest.Cluster, golden string, hosts []lab.NetsanHost, targets []lab.DataTarget, discovery *lab.CHAP) lab.Inventory {
	t.Helper()
	if _, err := c.Rbd("import", "--no-progress", golden, "rbd/golden"); err != nil {
		t.Fatal(err)
	}
	inv := lab.Inventory{
		DataDir:       filepath.Join(l.Dir, "data"),
		BaseIQN:       baseIQN,
		Ceph:          c.Conf,
		GoldenRBD:     "rbd/golden",
		Hosts:         append([]lab.NetsanHost(nil), hosts...),
		Targets:       targets,
		DiscoveryCHAP: discovery,
	}
	for i := range inv.Hosts {
		if h := &inv.Hosts[i]; h.Boot == "" || h.Boot == "san" {
			h.RBD = "rbd/" + h.Name
		}
	}
	return inv
}

// export copies an RBD image into a file in dir.
func export(t *testing.T, c *cephtest.Cluster, dir, image string) string {
	t.Helper()
	file := filepath.Join(dir, strings.ReplaceAll(image, "/", "-")+".raw")
	if _, err := c.Rbd("export", "--no-progress", image, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// export copies an RBD image into a file in the lab's directory.
func (s *servedRBD) export(t *testing.T, image string) string {
	t.Helper()
	return export(t, s.ceph, s.Dir, image)
}

// TestRBDBoot: a diskless BIOS guest boots from its root, which netsan made
// as a Ceph clone of the golden RBD image; its write lands in its own root
// and not in the golden image.
func TestRBDBoot(t *testing.T) {
	h := sanHost(t, 1)
	s := serveRBD(t, []lab.NetsanHost{h}, nil, nil)
	if out, err := s.ceph.Rbd("info", "rbd/"+h.Name); err != nil || !strings.Contains(out, "parent: rbd/golden@") {
		t.Fatalf("rbd info rbd/%s: %v\n%s\nwant a clone of rbd/golden", h.Name, err, out)
	}
	ctx, cancel := testContext(t, bootTimeout)
	defer cancel()
	s.bootMarker(t, ctx, h.Host, lab.BIOS)
	checkStamp(t, s.export(t, "rbd/"+h.Name), h.Name)
	checkStamp(t, s.export(t, "rbd/golden"), "")
}

// TestRBDDataLUN: TestDataLUN's installed host, its data LUN an RBD image
// netsan creates: discovery and mutual CHAP, ext4 written, rebooted, read
// back, and the image in Ceph is a clean filesystem.
func TestRBDDataLUN(t *testing.T) {
	target := storeTarget()
	target.RBD = "rbd/data0"
	s := serveRBD(t, nil, []lab.DataTarget{target}, storeDiscovery)
	s.attachData(t, target)
	fsck(t, s.export(t, target.RBD))
}
