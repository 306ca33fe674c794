package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/netsantest"
)

func TestMain(m *testing.M) { netsantest.Main(m) }

// A short storm against netsan: 50 nodes boot at once, and each read its
// own root (what it read has the CRC of its clone's bytes at those
// places) and its writes are in its own root. A node whose server serves
// it another node's root reads the wrong first sector and fails.
func TestStorm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the storm needs root (network namespaces, a loop device)")
	}
	netsantest.NeedTools(t, "ip", "mkfs.xfs", "mount", "umount")
	bin := netsantest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	d, err := makeDisk(ctx, dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.close(); err != nil {
			t.Error(err)
		}
	})
	g := filepath.Join(d.mnt, "golden.img")
	if err := golden(g, 128); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Nodes: 50, ReadMiB: 4, Random: 200, WriteMiB: 1, ImageMiB: 128, Timeout: time.Minute}

	t.Run("own roots", func(t *testing.T) {
		o, err := storm(ctx, Netsan, bin, g, d, filepath.Join(dir, "own"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(o.summary())
		ops := pattern(cfg)
		for i, r := range o.res {
			if r.err != nil {
				t.Error(r.err)
				continue
			}
			if r.at[stepRoot] == 0 || r.at[stepWrites] == 0 {
				t.Errorf("%s: did not finish: %v", o.nodes[i].Name, r.at)
			}
			if err := verify(ops, o.nodes[i], r); err != nil {
				t.Error(err)
			}
		}
	})

	// netsan check refuses two hosts with one root; swapped roots it
	// cannot tell from right ones.
	t.Run("roots swapped", func(t *testing.T) {
		c := cfg
		c.Nodes = 4
		c.serve = func(ns []node) { ns[0].Image, ns[1].Image = ns[1].Image, ns[0].Image }
		o, err := storm(ctx, Netsan, bin, g, d, filepath.Join(dir, "swapped"), c)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range o.res {
			switch {
			case i < 2 && (r.err == nil || !strings.Contains(r.err.Error(), "another node's")):
				t.Errorf("%s, given another's root: %v, want it to see another node's first sector", o.nodes[i].Name, r.err)
			case i >= 2 && r.err != nil:
				t.Error(r.err)
			}
		}
	})
}
