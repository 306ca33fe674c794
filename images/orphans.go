package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/netsan/netsan/inventory"
)

// A host removed from the inventory leaves its root image on disk: its data
// may still matter, and deleting it is the operator's call. These functions
// make such roots visible instead of silently kept.

// rootsDir is where roots live by convention (data_dir/roots), searched for
// orphans even when no host in the inventory has its root there any more.
const rootsDir = "roots"

// rootImage is h's root image file, or "" when h has no root, or a device
// or an RBD image for one.
func rootImage(h *inventory.Host) string {
	if h.Root == nil || h.Root.Device != "" {
		return ""
	}
	return h.Root.Image
}

// inUse is every image file the inventory names: host roots, data LUNs and
// golden images.
func inUse(inv *inventory.Inventory) map[string]bool {
	used := make(map[string]bool, len(inv.Hosts)+len(inv.Images))
	for i := range inv.Hosts {
		if p := rootImage(&inv.Hosts[i]); p != "" {
			used[p] = true
		}
	}
	for i := range inv.Targets {
		for _, l := range inv.Targets[i].LUNs {
			if l.Device == "" && l.Image != "" {
				used[l.Image] = true
			}
		}
	}
	for _, img := range inv.Images {
		if img.Path != "" {
			used[img.Path] = true
		}
	}
	return used
}

// Orphans lists the image files that no host, data LUN or golden image of
// inv names, in the directories that hold hosts' roots and in
// data_dir/roots. data_dir itself is not searched (the lease file and the
// target's state live there), nor are hidden files (clones in progress).
func Orphans(inv *inventory.Inventory) ([]string, error) {
	used := inUse(inv)
	dirs := []string{filepath.Join(inv.Server.DataDir, rootsDir)}
	for i := range inv.Hosts {
		if p := rootImage(&inv.Hosts[i]); p != "" {
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	slices.Sort(dirs)
	var out []string
	for _, dir := range slices.Compact(dirs) {
		if dir == filepath.Clean(inv.Server.DataDir) {
			continue
		}
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("orphaned roots: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && !used[p] {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Kept is a root image that a reload left behind.
type Kept struct {
	Host string // the host whose root it was
	Path string
}

// Dropped lists the roots that old's hosts had on disk and that next no
// longer names: their host was removed, or its root moved elsewhere.
func Dropped(old, next *inventory.Inventory) []Kept {
	used := inUse(next)
	var out []Kept
	for i := range old.Hosts {
		p := rootImage(&old.Hosts[i])
		if p == "" || used[p] {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			out = append(out, Kept{Host: old.Hosts[i].Name, Path: p})
		}
	}
	return out
}
