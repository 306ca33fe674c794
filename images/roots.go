package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/inventory"
)

// LiveTarget is the running iSCSI target as a reset sees it. cmd/netsan
// implements it over the running server's control endpoints; a nil
// LiveTarget means no server is running, so there is nothing to ask.
type LiveTarget interface {
	// Sessions says who is logged in to target iqn, one line per session
	// (the server describes its sessions; reset only shows them).
	Sessions(ctx context.Context, iqn string) ([]string, error)
	// Logout asks every session on iqn to log out (and drops those that do
	// not) and returns once they are gone.
	Logout(ctx context.Context, iqn string) error
	// Reopen makes the target close and reopen the files behind iqn's LUNs:
	// after a reset the old root is unlinked but still open in the server.
	Reopen(ctx context.Context, iqn string) error
}

// BusyError refuses a reset while the host's root target has sessions.
type BusyError struct {
	Host     string
	Target   string
	Sessions []string // as LiveTarget.Sessions says them
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("host %s: target %s has %d live session(s) (%s); power the host off first, or --force to log it out",
		e.Host, e.Target, len(e.Sessions), strings.Join(e.Sessions, ", "))
}

// source returns the golden image and the root of h, or why h has no
// root to clone.
func source(inv *inventory.Inventory, h *inventory.Host) (*inventory.Image, *inventory.Root, error) {
	r := h.Root
	switch {
	case r == nil:
		return nil, nil, fmt.Errorf("host %s has no root", h.Name)
	case r.Device != "":
		return nil, nil, fmt.Errorf("host %s: root is device %s, not an image", h.Name, r.Device)
	case r.From == "":
		return nil, nil, fmt.Errorf("host %s: root has no from = <image>: nothing to clone it from", h.Name)
	}
	img := inv.ImageByName(r.From)
	if img == nil {
		return nil, nil, fmt.Errorf("host %s: root.from %q: no such [[image]]", h.Name, r.From)
	}
	return img, r, nil
}

// CloneRoot makes host h's root from its golden image (root.from): a file
// clone, or for an RBD root a Ceph clone through cl. It fails with
// os.ErrExist when the root is already there.
func CloneRoot(ctx context.Context, inv *inventory.Inventory, cl Cluster, h *inventory.Host, progress func(done, total int64)) (Method, error) {
	img, r, err := source(inv, h)
	if err != nil {
		return 0, err
	}
	m, err := cloneRoot(ctx, cl, img, r, progress)
	if err != nil {
		return 0, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return m, nil
}

// cloneRoot makes r, which must not exist, from golden image img.
func cloneRoot(ctx context.Context, cl Cluster, img *inventory.Image, r *inventory.Root, progress func(done, total int64)) (Method, error) {
	if r.RBD == "" {
		return Clone(ctx, img.Path, r.Image, r.Size.Bytes, progress)
	}
	golden, root, err := rbdClone(cl, img, r)
	if err != nil {
		return 0, err
	}
	if ok, err := cl.Exists(root); err != nil {
		return 0, err
	} else if ok {
		return 0, fmt.Errorf("rbd %s: %w", root, os.ErrExist)
	}
	if err := cl.Clone(golden, root, r.Size.Bytes); err != nil {
		return 0, err
	}
	return RBDClone, nil
}

// rbdClone names the golden image and the root of an RBD clone, and
// refuses a root size below the golden image's, as for files: it would cut
// the disk.
func rbdClone(cl Cluster, img *inventory.Image, r *inventory.Root) (golden, root ceph.Name, err error) {
	if root, err = rbdName(cl, r.RBD); err != nil {
		return golden, root, err
	}
	if golden, err = ceph.ParseName(img.RBD, ""); err != nil {
		return golden, root, err
	}
	if r.Size.Bytes > 0 {
		gi, err := cl.Stat(golden)
		if err != nil {
			return golden, root, fmt.Errorf("golden image %s: %w", img.Name, err)
		}
		if r.Size.Bytes < gi.Size {
			return golden, root, fmt.Errorf("clone rbd %s: size %d is smaller than golden image %s's %d bytes", root, r.Size.Bytes, img.Name, gi.Size)
		}
	}
	return golden, root, nil
}

// replaceRBD makes RBD root r a fresh clone of golden image img. The old
// root, which the target may hold open (Ceph removes no open image), is
// renamed away first and returned, to be removed once the target let it
// go; a clone that fails renames it back.
func replaceRBD(cl Cluster, img *inventory.Image, r *inventory.Root) (old *ceph.Name, err error) {
	golden, root, err := rbdClone(cl, img, r)
	if err != nil {
		return nil, err
	}
	stale := ceph.Name{Pool: root.Pool, Image: fmt.Sprintf("%s.replaced-%d", root.Image, time.Now().UnixNano())}
	switch err := cl.Rename(root, stale.Image); {
	case errors.Is(err, os.ErrNotExist):
		old = nil
	case err != nil:
		return nil, err
	default:
		old = &stale
	}
	if err := cl.Clone(golden, root, r.Size.Bytes); err != nil {
		if old != nil {
			if rerr := cl.Rename(stale, root.Image); rerr != nil {
				return nil, fmt.Errorf("%w; the old root is left as rbd %s: %w", err, stale, rerr)
			}
		}
		return nil, err
	}
	return old, nil
}

// ResetRoot replaces host h's root with a fresh clone of its golden image.
// While the host's root target has sessions it is refused with a
// *BusyError, unless force, which logs them out first. A file root is
// replaced atomically: until the rename it is intact, after it the new one
// is complete. An RBD root is renamed away, cloned anew, and the old one
// removed once the target reopened the root. live may be nil when no
// server runs.
func ResetRoot(ctx context.Context, inv *inventory.Inventory, cl Cluster, h *inventory.Host, live LiveTarget, force bool, progress func(done, total int64)) (Method, error) {
	img, r, err := source(inv, h)
	if err != nil {
		return 0, err
	}
	iqn := inv.TargetIQN(h)
	if live != nil {
		ss, err := live.Sessions(ctx, iqn)
		if err != nil {
			return 0, fmt.Errorf("host %s: sessions of %s: %w", h.Name, iqn, err)
		}
		if len(ss) > 0 {
			if !force {
				return 0, &BusyError{Host: h.Name, Target: iqn, Sessions: ss}
			}
			if err := live.Logout(ctx, iqn); err != nil {
				return 0, fmt.Errorf("host %s: logout of %s: %w", h.Name, iqn, err)
			}
		}
	}
	m := RBDClone
	var old *ceph.Name
	if r.RBD == "" {
		m, err = clone(ctx, img.Path, r.Image, r.Size.Bytes, progress, true)
	} else {
		old, err = replaceRBD(cl, img, r)
	}
	if err != nil {
		return 0, fmt.Errorf("host %s: %w", h.Name, err)
	}
	if live != nil {
		if err := live.Reopen(ctx, iqn); err != nil {
			return m, fmt.Errorf("host %s: root reset, but the target did not reopen it: %w", h.Name, err)
		}
	}
	if old != nil {
		if err := cl.Remove(*old); err != nil {
			return m, fmt.Errorf("host %s: root reset; the old one, renamed rbd %s, is still open (no server to reopen the root?) and stays: %w", h.Name, *old, err)
		}
	}
	return m, nil
}

// Ensure makes every missing host root that can be made, logging progress;
// serve calls it before the iSCSI target opens the roots. A root with from
// is cloned from its golden image; an RBD root without from is created
// empty at its size, and so is a missing RBD data LUN with a size. A
// missing file root or LUN without from is left to the target, which
// creates it sparse. Every image is tried; the errors are joined.
func Ensure(ctx context.Context, inv *inventory.Inventory, cl Cluster, log *zap.Logger) error {
	var errs []error
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		r := h.Root
		if r == nil || r.Device != "" || r.RBD == "" && r.From == "" {
			continue
		}
		what := fmt.Sprintf("host %s: root %s", h.Name, r.Backing())
		hl := log.With(zap.String("host", h.Name), zap.String("root", r.Backing()))
		if r.From == "" {
			errs = append(errs, ensure(hl, what, cl, r.Image, r.RBD, func() error {
				if r.Size.Bytes == 0 {
					return errors.New("it has neither a from (a golden image) nor a size to be created at")
				}
				hl.Info("root missing: creating it empty", zap.Int64("size", r.Size.Bytes))
				return createRBD(cl, r.RBD, r.Size.Bytes)
			}))
			continue
		}
		hl = hl.With(zap.String("op", "clone"), zap.String("image", r.From))
		errs = append(errs, ensure(hl, what, cl, r.Image, r.RBD, func() error {
			img, _, err := source(inv, h)
			if err != nil {
				return err
			}
			hl.Info("root missing: cloning from golden image")
			m, err := cloneRoot(ctx, cl, img, r, LogProgress(hl))
			if err == nil {
				hl.Info("root cloned", zap.Stringer("method", m))
			}
			return err
		}))
	}
	if !inv.ISCSI.On() {
		return errors.Join(errs...)
	}
	for i := range inv.Targets {
		t := &inv.Targets[i]
		for _, l := range t.LUNs {
			if l.RBD == "" {
				continue
			}
			what := fmt.Sprintf("target %s lun %d: %s", t.Name, l.LUN, l.Backing())
			ll := log.With(zap.String("target", t.Name), zap.Int("lun", l.LUN), zap.String("rbd", l.RBD))
			errs = append(errs, ensure(ll, what, cl, "", l.RBD, func() error {
				if l.Size.Bytes == 0 || l.ReadOnly {
					return errors.New("without a size (or read-only) it cannot be created")
				}
				ll.Info("lun missing: creating it empty", zap.Int64("size", l.Size.Bytes))
				return createRBD(cl, l.RBD, l.Size.Bytes)
			}))
		}
	}
	return errors.Join(errs...)
}

// ensure runs make when the image at path, or the RBD image rbd, is
// missing; what names it in errors. One that appears meanwhile (`netsan
// image clone`, another gateway) is kept.
func ensure(log *zap.Logger, what string, cl Cluster, path, rbd string, make func() error) error {
	ok, err := exists(cl, path, rbd)
	if err != nil {
		log.Error("cannot tell whether the image exists", zap.Error(err))
		return fmt.Errorf("%s: %w", what, err)
	}
	if ok {
		return nil
	}
	err = make()
	switch {
	case errors.Is(err, os.ErrExist):
		log.Info("image appeared meanwhile; keeping it")
		return nil
	case err != nil:
		log.Error("image missing, and not made", zap.Error(err))
		return fmt.Errorf("%s does not exist: %w", what, err)
	}
	return nil
}

// exists reports whether a root's or LUN's image is there: the file at
// path, or the RBD image rbd.
func exists(cl Cluster, path, rbd string) (bool, error) {
	if rbd != "" {
		return RBDExists(cl, rbd)
	}
	_, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// createRBD makes an empty RBD image of size bytes, for a root or LUN
// without a golden image.
func createRBD(cl Cluster, rbd string, size int64) error {
	n, err := rbdName(cl, rbd)
	if err != nil {
		return err
	}
	return cl.Create(n, size)
}

// LogProgress returns a progress func that logs at each tenth of the way,
// for logs that are not a terminal.
func LogProgress(log *zap.Logger) func(done, total int64) {
	last := -1
	return func(done, total int64) {
		pct := 100
		if total > 0 {
			pct = int(done * 100 / total)
		}
		if step := pct / 10; step > last {
			last = step
			log.Info("progress", zap.Int("percent", pct), zap.Int64("done", done), zap.Int64("total", total))
		}
	}
}
