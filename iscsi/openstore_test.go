package iscsi

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netsan/netsan/iscsi/backstore"
)

// TestOpenStore: a LUN is opened through Config.OpenStore when it is set,
// whatever its Path says, and a reload that leaves the LUN unchanged keeps
// the store it has instead of opening it again.
func TestOpenStore(t *testing.T) {
	need(t, "qemu-img")
	dir := t.TempDir()
	backing := filepath.Join(dir, "elsewhere.img")
	want := bytes.Repeat([]byte("opened by OpenStore\n"), 1<<16) // 1.25 MiB
	want = append(want, make([]byte, 2<<20-len(want))...)
	if err := os.WriteFile(backing, want, 0o644); err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int32
	cfg := oneDisk(0)
	cfg.Targets[0].ACL = nil
	cfg.Targets[0].LUNs[0].Path = "store:not-a-file"
	cfg.OpenStore = func(l LUN) (backstore.Store, error) {
		opens.Add(1)
		if filepath.Base(l.Path) != "store:not-a-file" {
			t.Errorf("OpenStore got Path %q", l.Path)
		}
		return backstore.Open(backing, 0, true)
	}
	ts := startServer(t, cfg)
	back := filepath.Join(dir, "back.raw")
	mustRun(t, time.Minute, nil, "qemu-img", "convert", "-f", "raw", "-O", "raw", ts.url("", testTarget, 0), back)
	got, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the LUN did not serve the store OpenStore opened")
	}
	if n := opens.Load(); n != 1 {
		t.Fatalf("OpenStore called %d times, want 1", n)
	}
	cur, _ := ts.targets.current()
	if err := ts.Reload(cur); err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("after a reload with the LUN unchanged: OpenStore called %d times, want 1", n)
	}
}
