//go:build ceph

package ceph

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestClones: 20 roots cloned from one golden image are Ceph clones of its
// protected snapshot (rbd info names the parent), grown where asked, and a
// write through one root changes neither the golden image nor another root.
func TestClones(t *testing.T) {
	tc, c := connect(t)
	golden := Name{"rbd", "golden"}
	if err := c.Create(golden, 16<<20); err != nil {
		t.Fatal(err)
	}
	pattern := bytes.Repeat([]byte("golden!\n"), 512) // 4 KiB
	g := open(t, c, golden.Image, false)
	for off := int64(0); off < 16<<20; off += 1 << 20 {
		if _, err := g.WriteAt(pattern, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	const hosts = 20
	for i := range hosts {
		size := int64(0)
		if i == 0 {
			size = 32 << 20 // grown
		}
		if err := c.Clone(golden, Name{"rbd", fmt.Sprintf("node%d", i)}, size); err != nil {
			t.Fatal(err)
		}
	}
	if out := tc.MustRbd(t, "snap", "ls", "rbd/golden"); !strings.Contains(out, GoldenSnap) {
		t.Fatalf("rbd snap ls rbd/golden:\n%s\nwant %s", out, GoldenSnap)
	}
	for i := range hosts {
		n := fmt.Sprintf("rbd/node%d", i)
		if out := tc.MustRbd(t, "info", n); !strings.Contains(out, "parent: rbd/golden@"+GoldenSnap) {
			t.Fatalf("rbd info %s:\n%s\nwant parent rbd/golden@%s", n, out, GoldenSnap)
		}
	}
	info, err := c.Stat(Name{"rbd", "node0"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 32<<20 || info.Used != 0 || info.Parent != "rbd/golden@"+GoldenSnap {
		t.Errorf("node0 = %+v, want 32 MiB, nothing used of its own, parent rbd/golden@%s", info, GoldenSnap)
	}

	// Write through node3's root: only node3 changes.
	r := open(t, c, "node3", false)
	mine := bytes.Repeat([]byte("node3..\n"), 512)
	if _, err := r.WriteAt(mine, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"golden", "node2", "node4", "node3"} {
		s := open(t, c, n, true)
		got := make([]byte, len(pattern))
		if _, err := s.ReadAt(got, 1<<20); err != nil {
			t.Fatal(err)
		}
		s.Close()
		want := pattern
		if n == "node3" {
			want = mine
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s at 1 MiB: %q…, want %q…", n, got[:16], want[:16])
		}
	}
	if info, err := c.Stat(Name{"rbd", "node3"}); err != nil || info.Used == 0 {
		t.Errorf("node3 after a write: %+v %v, want some of its own", info, err)
	}

	// A clone of the same golden image again reuses the snapshot; a
	// removed root can be cloned anew (image reset).
	if err := c.Remove(Name{"rbd", "node3"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Exists(Name{"rbd", "node3"}); ok || err != nil {
		t.Fatalf("node3 after Remove: exists %v, %v", ok, err)
	}
	if err := c.Clone(golden, Name{"rbd", "node3"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(Name{"rbd", "missing"}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Stat of a missing image: %v, want ENOENT", err)
	}
	// Errors match their errno: a root that is already there, an image
	// another client has open.
	if err := c.Clone(golden, Name{"rbd", "node3"}, 0); !errors.Is(err, os.ErrExist) {
		t.Errorf("Clone onto an existing image: %v, want EEXIST", err)
	}
	if err := c.Create(golden, 1<<20); !errors.Is(err, os.ErrExist) {
		t.Errorf("Create of an existing image: %v, want EEXIST", err)
	}
	busy := open(t, c, "node2", false)
	if err := c.Remove(Name{"rbd", "node2"}); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("Remove of an open image: %v, want EBUSY", err)
	}
	// An open image can be renamed away, and its user writes on; once
	// closed it can be removed.
	if err := c.Rename(Name{"rbd", "node2"}, "node2.old"); err != nil {
		t.Fatalf("Rename of an open image: %v", err)
	}
	if _, err := busy.WriteAt(mine, 2<<20); err != nil {
		t.Errorf("write to an image renamed while open: %v", err)
	}
	if ok, err := c.Exists(Name{"rbd", "node2"}); ok || err != nil {
		t.Errorf("node2 after its rename: exists %v, %v", ok, err)
	}
	if err := c.Rename(Name{"rbd", "node4"}, "node2.old"); !errors.Is(err, os.ErrExist) {
		t.Errorf("Rename onto an existing name: %v, want EEXIST", err)
	}
	busy.Close()
	old := open(t, c, "node2.old", true)
	got := make([]byte, len(mine))
	if _, err := old.ReadAt(got, 2<<20); err != nil || !bytes.Equal(got, mine) {
		t.Errorf("node2.old at 2 MiB: %q… %v, want what was written through the renamed image", got[:16], err)
	}
	old.Close()
	if err := c.Remove(Name{"rbd", "node2.old"}); err != nil {
		t.Errorf("Remove of a renamed image once closed: %v", err)
	}
}
