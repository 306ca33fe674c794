//go:build ceph

package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/iscsi/backstore"
)

// rbdLab starts a cluster with golden image rbd/base (16 MiB, a pattern
// at every MiB) and connects to it.
func rbdLab(t *testing.T) (*cephtest.Cluster, *ceph.Cluster) {
	t.Helper()
	tc := cephtest.Start(t, cephtest.Options{})
	c, err := ceph.Connect(ceph.Config{Conf: tc.Conf}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	base := ceph.Name{Pool: "rbd", Image: "base"}
	if err := c.Create(base, 16*mib); err != nil {
		t.Fatal(err)
	}
	writeRBD(t, c, base, goldenBlock, 0, 16*mib)
	return tc, c
}

var goldenBlock = bytes.Repeat([]byte("golden!\n"), 512)

// writeRBD writes block at every MiB of [from, to) of image n.
func writeRBD(t *testing.T, c *ceph.Cluster, n ceph.Name, block []byte, from, to int64) {
	t.Helper()
	s, err := c.OpenImage(n, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for off := from; off < to; off += mib {
		if _, err := s.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
}

// readRBD reads one block's length at off of image n.
func readRBD(t *testing.T, c *ceph.Cluster, n ceph.Name, off int64) []byte {
	t.Helper()
	s, err := c.OpenImage(n, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := make([]byte, len(goldenBlock))
	if _, err := s.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func rbdInventory(t *testing.T, conf, hosts string) *inventory.Inventory {
	t.Helper()
	return inventorytest.Parse(t, t.TempDir(), fmt.Sprintf(`
[server]
address  = "198.18.0.1"
data_dir = "data"

[iscsi]
base_iqn = "iqn.2026-11.example.lab"

[ceph]
conf = %q

[[image]]
name = "base"
rbd  = "rbd/base"
`, conf)+hosts)
}

func rbdHost(i int, root string) string {
	return fmt.Sprintf("\n[[host]]\nname = \"node%d\"\nmac = \"52:54:00:00:02:%02x\"\nroot = %s\n", i, i, root)
}

// TestEnsureRBD: serve's Ensure makes missing RBD roots as Ceph clones of
// their golden image (grown to size), creates a root without from and a
// data LUN at their size, keeps what exists, and a second run changes
// nothing; image clone refuses an existing root; reset makes a fresh
// clone, and is refused while the host has a session.
func TestEnsureRBD(t *testing.T) {
	tc, c := rbdLab(t)
	inv := rbdInventory(t, tc.Conf,
		rbdHost(1, `{ rbd = "node1", from = "base", size = "32MiB" }`)+
			rbdHost(2, `{ rbd = "rbd/node2", from = "base" }`)+
			rbdHost(3, `{ rbd = "node3", size = "8MiB" }`)+
			rbdHost(4, `{ rbd = "node4", from = "base" }`)+`
[[target]]
name = "data"
luns = [ { lun = 0, rbd = "db", size = "64MiB" } ]
`)
	// node4's root is there already, with the host's data: kept.
	node4 := ceph.Name{Pool: "rbd", Image: "node4"}
	if err := c.Create(node4, 4*mib); err != nil {
		t.Fatal(err)
	}
	mine := bytes.Repeat([]byte("node4..\n"), 512)
	writeRBD(t, c, node4, mine, 0, mib)

	if err := Ensure(t.Context(), inv, c, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	parent := "rbd/base@" + ceph.GoldenSnap
	for _, w := range []struct {
		name   string
		size   int64
		parent string
	}{
		{"node1", 32 * mib, parent},
		{"node2", 16 * mib, parent},
		{"node3", 8 * mib, ""},
		{"node4", 4 * mib, ""},
		{"db", 64 * mib, ""},
	} {
		info, err := c.Stat(ceph.Name{Pool: "rbd", Image: w.name})
		if err != nil {
			t.Errorf("%s: %v", w.name, err)
			continue
		}
		if info.Size != w.size || info.Parent != w.parent {
			t.Errorf("%s: %+v, want size %d parent %q", w.name, info, w.size, w.parent)
		}
	}
	if out := tc.MustRbd(t, "info", "rbd/node1"); !strings.Contains(out, "parent: "+parent) {
		t.Errorf("rbd info rbd/node1:\n%s\nwant parent %s", out, parent)
	}
	if got := readRBD(t, c, ceph.Name{Pool: "rbd", Image: "node2"}, 5*mib); !bytes.Equal(got, goldenBlock) {
		t.Errorf("node2 at 5 MiB: %q…, want the golden image's", got[:16])
	}
	if got := readRBD(t, c, node4, 0); !bytes.Equal(got, mine) {
		t.Errorf("Ensure replaced node4's existing root: %q…", got[:16])
	}

	// A second run has nothing to do: node1's own writes stay.
	node1 := ceph.Name{Pool: "rbd", Image: "node1"}
	host1 := bytes.Repeat([]byte("node1..\n"), 512)
	writeRBD(t, c, node1, host1, 3*mib, 4*mib)
	if err := Ensure(t.Context(), inv, c, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if got := readRBD(t, c, node1, 3*mib); !bytes.Equal(got, host1) {
		t.Errorf("second Ensure changed node1: %q…", got[:16])
	}
	if _, err := CloneRoot(t.Context(), inv, c, &inv.Hosts[0], nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("CloneRoot of an existing rbd root: %v, want ErrExist", err)
	}

	// Reset: refused while node1 has a session, then a fresh clone.
	h := &inv.Hosts[0]
	iqn := inv.TargetIQN(h)
	live := &fakeTarget{t: t, sessions: map[string][]string{iqn: {inv.InitiatorIQN(h)}}}
	var busy *BusyError
	if _, err := ResetRoot(t.Context(), inv, c, h, live, false, nil); !errors.As(err, &busy) {
		t.Fatalf("reset with a live session: %v, want *BusyError", err)
	}
	if got := readRBD(t, c, node1, 3*mib); !bytes.Equal(got, host1) {
		t.Errorf("refused reset changed node1: %q…", got[:16])
	}
	delete(live.sessions, iqn)
	m, err := ResetRoot(t.Context(), inv, c, h, live, false, nil)
	if err != nil || m != RBDClone {
		t.Fatalf("reset: %v, %v", m, err)
	}
	if got := readRBD(t, c, node1, 3*mib); !bytes.Equal(got, goldenBlock) {
		t.Errorf("node1 after reset: %q…, want the golden image's", got[:16])
	}
	if info, err := c.Stat(node1); err != nil || info.Size != 32*mib || info.Parent != parent || info.Used != 0 {
		t.Errorf("node1 after reset: %+v %v, want a fresh 32 MiB clone of %s", info, err, parent)
	}
	if got := strings.Join(live.calls, ";"); !strings.Contains(got, "reopen "+iqn) {
		t.Errorf("reset asked the target %q, want a reopen last", got)
	}

	// A server holds the root open, as the target does: the reset renames
	// it away, clones anew, and removes the old one once the server
	// reopened the root.
	server := &openRoot{c: c, n: node1}
	if err := server.Reopen(t.Context(), iqn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.s.Close() })
	if _, err := server.s.WriteAt(host1, 3*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := ResetRoot(t.Context(), inv, c, h, server, false, nil); err != nil {
		t.Fatalf("reset of a root the server holds open: %v", err)
	}
	got := make([]byte, len(goldenBlock))
	if _, err := server.s.ReadAt(got, 3*mib); err != nil || !bytes.Equal(got, goldenBlock) {
		t.Errorf("the server reads %q… %v after the reset, want the golden image's", got[:16], err)
	}
	if out := tc.MustRbd(t, "ls", "rbd"); strings.Contains(out, "replaced") {
		t.Errorf("rbd ls after the reset:\n%s\nwant no old root left", out)
	}
	// Without a server to reopen it, the old root stays, and the reset
	// says so; the root is a fresh clone all the same.
	if _, err := ResetRoot(t.Context(), inv, c, h, nil, false, nil); err == nil || !strings.Contains(err.Error(), "is still open") {
		t.Errorf("reset while an unknown user holds the root: %v", err)
	}
	if info, err := c.Stat(node1); err != nil || info.Parent != parent || info.Used != 0 {
		t.Errorf("node1 after reset: %+v %v, want a fresh clone", info, err)
	}
}

// openRoot is a server that holds a root open, as the iSCSI target does,
// and reopens it as the target does (the new image first, then the old
// one closed).
type openRoot struct {
	c *ceph.Cluster
	n ceph.Name
	s backstore.Store
}

func (o *openRoot) Sessions(context.Context, string) ([]string, error) { return nil, nil }
func (o *openRoot) Logout(context.Context, string) error               { return nil }
func (o *openRoot) Reopen(context.Context, string) error {
	s, err := o.c.OpenImage(o.n, false)
	if err != nil {
		return err
	}
	if o.s != nil {
		o.s.Close()
	}
	o.s = s
	return nil
}

// TestEnsureRBDRefuses: what Ensure cannot make is an error naming the
// host or LUN, and no image is made from a golden image that is not there,
// or smaller than the golden image, or without a cluster.
func TestEnsureRBDRefuses(t *testing.T) {
	tc, c := rbdLab(t)
	inv := rbdInventory(t, tc.Conf,
		rbdHost(1, `{ rbd = "node1", from = "base", size = "8MiB" }`)+
			rbdHost(2, `{ rbd = "node2" }`)+`
[[image]]
name = "gone"
rbd  = "gone"
`+rbdHost(3, `{ rbd = "node3", from = "gone" }`)+
			rbdHost(4, `{ rbd = "node4", from = "base" }`)+`
[[target]]
name = "data"
luns = [ { lun = 0, rbd = "ro", size = "8MiB", read_only = true } ]
`)
	err := Ensure(t.Context(), inv, c, zaptest.NewLogger(t))
	if err == nil {
		t.Fatal("Ensure: no error")
	}
	t.Logf("Ensure: %v", err)
	for _, want := range []string{
		"host node1: root rbd:rbd/node1 does not exist: clone rbd rbd/node1: size 8388608 is smaller than golden image base's",
		"host node2: root rbd:rbd/node2 does not exist: it has neither a from",
		"host node3: root rbd:rbd/node3 does not exist: golden rbd rbd/gone",
		"target data lun 0: rbd:rbd/ro does not exist: without a size (or read-only)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Ensure's error lacks %q", want)
		}
	}
	for _, n := range []string{"node1", "node2", "node3", "ro"} {
		if ok, err := c.Exists(ceph.Name{Pool: "rbd", Image: n}); ok || err != nil {
			t.Errorf("rbd/%s: exists %v, %v; want none made", n, ok, err)
		}
	}
	// The others are made all the same.
	if ok, err := c.Exists(ceph.Name{Pool: "rbd", Image: "node4"}); !ok || err != nil {
		t.Errorf("rbd/node4: exists %v, %v; want it cloned despite the others' errors", ok, err)
	}
	if err := Ensure(t.Context(), inv, nil, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), "no Ceph cluster connected") {
		t.Errorf("Ensure without a cluster: %v", err)
	}
}

// TestCollectorRBD: /metrics shows RBD golden images and roots with their
// provisioned size and what they hold themselves (rbd du's figure): a
// fresh clone holds nothing, a write into it one object; a missing root is
// left out, as a missing file is.
func TestCollectorRBD(t *testing.T) {
	tc, c := rbdLab(t)
	inv := rbdInventory(t, tc.Conf,
		rbdHost(1, `{ rbd = "node1", from = "base", size = "32MiB" }`)+
			rbdHost(2, `{ rbd = "node2", from = "base" }`))
	if err := Ensure(t.Context(), inv, c, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ceph.Name{Pool: "rbd", Image: "node2"}); err != nil {
		t.Fatal(err)
	}
	col := NewCollector(func() *inventory.Inventory { return inv })
	col.Cluster = c
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)

	// base has data in each of its four 4 MiB objects.
	const object = 4 << 20
	check := func(when string, rootUsed float64) {
		t.Helper()
		g := gauges(t, reg)
		for key, want := range map[string][2]float64{
			"golden/base/":    {16 << 20, 16 << 20},
			"root/base/node1": {32 << 20, rootUsed},
		} {
			size, ok := g["netsan_image_size_bytes"][key]
			used := g["netsan_image_allocated_bytes"][key]
			if !ok || size != want[0] || used != want[1] {
				t.Errorf("%s: %s size %v allocated %v (exported: %v), want %v", when, key, size, used, ok, want)
			}
		}
		if _, ok := g["netsan_image_size_bytes"]["root/base/node2"]; ok {
			t.Errorf("%s: the missing root node2 was exported", when)
		}
	}
	check("fresh clone", 0)
	writeRBD(t, c, ceph.Name{Pool: "rbd", Image: "node1"}, goldenBlock, 0, 1)
	check("after a write into node1", object)
}

// TestCollectorRBDClusterAway: while the only OSD does not answer, a scrape
// takes one operation timeout, not one per RBD image, and leaves them out;
// once it answers again they are back.
func TestCollectorRBDClusterAway(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out an operation timeout")
	}
	tc, c := rbdLab(t)
	var hosts string
	for i := range 3 {
		hosts += rbdHost(i, `{ rbd = "node`+fmt.Sprint(i)+`", from = "base" }`)
	}
	inv := rbdInventory(t, tc.Conf, hosts)
	if err := Ensure(t.Context(), inv, c, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	col := NewCollector(func() *inventory.Inventory { return inv })
	col.Cluster = c
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	if n := len(gauges(t, reg)["netsan_image_size_bytes"]); n != 4 {
		t.Fatalf("%d images exported, want 4", n)
	}

	if err := tc.FreezeOSD(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			tc.OSD.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	start := time.Now()
	g := gauges(t, reg)
	took := time.Since(start)
	t.Logf("scrape with the OSD stopped: %s, %d images", took.Round(time.Millisecond), len(g["netsan_image_size_bytes"]))
	if took > ceph.OpTimeout+ceph.OpTimeout/2 {
		t.Errorf("a scrape with the OSD stopped took %s; one timeout is %s", took, ceph.OpTimeout)
	}
	resume()
	deadline := time.Now().Add(2 * time.Minute)
	for len(gauges(t, reg)["netsan_image_size_bytes"]) != 4 {
		if time.Now().After(deadline) {
			t.Fatal("the RBD images did not come back to /metrics within 2 minutes of the OSD's return")
		}
		time.Sleep(time.Second)
	}
}
