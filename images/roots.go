package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

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

// source returns the golden image path and the root of h, or why h has no
// root to clone.
func source(inv *inventory.Inventory, h *inventory.Host) (golden string, r *inventory.Root, err error) {
	r = h.Root
	switch {
	case r == nil:
		return "", nil, fmt.Errorf("host %s has no root", h.Name)
	case r.Device != "":
		return "", nil, fmt.Errorf("host %s: root is device %s, not an image", h.Name, r.Device)
	case r.From == "":
		return "", nil, fmt.Errorf("host %s: root has no from = <image>: nothing to clone it from", h.Name)
	}
	img := inv.ImageByName(r.From)
	if img == nil {
		return "", nil, fmt.Errorf("host %s: root.from %q: no such [[image]]", h.Name, r.From)
	}
	return img.Path, r, nil
}

// CloneRoot makes host h's root image from its golden image (root.from).
// It fails with os.ErrExist when the root is already there.
func CloneRoot(ctx context.Context, inv *inventory.Inventory, h *inventory.Host, progress func(done, total int64)) (Method, error) {
	golden, r, err := source(inv, h)
	if err != nil {
		return 0, err
	}
	m, err := Clone(ctx, golden, r.Image, r.Size.Bytes, progress)
	if err != nil {
		return 0, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return m, nil
}

// ResetRoot replaces host h's root with a fresh clone of its golden image.
// While the host's root target has sessions it is refused with a
// *BusyError, unless force, which logs them out first. The old root is
// replaced atomically: until the rename it is intact, after it the new one
// is complete. live may be nil when no server runs.
func ResetRoot(ctx context.Context, inv *inventory.Inventory, h *inventory.Host, live LiveTarget, force bool, progress func(done, total int64)) (Method, error) {
	golden, r, err := source(inv, h)
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
	m, err := clone(ctx, golden, r.Image, r.Size.Bytes, progress, true)
	if err != nil {
		return 0, fmt.Errorf("host %s: %w", h.Name, err)
	}
	if live != nil {
		if err := live.Reopen(ctx, iqn); err != nil {
			return m, fmt.Errorf("host %s: root reset, but the target did not reopen it: %w", h.Name, err)
		}
	}
	return m, nil
}

// Ensure clones every missing host root that names a golden image (root.from),
// logging progress; serve calls it before the iSCSI target opens the roots.
// A missing root without from is left to the target, which creates it
// sparse. Every host is tried; the errors are joined.
func Ensure(ctx context.Context, inv *inventory.Inventory, log *zap.Logger) error {
	var errs []error
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Root == nil || h.Root.Device != "" || h.Root.From == "" {
			continue
		}
		if _, err := os.Lstat(h.Root.Image); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
			continue
		}
		hl := log.With(zap.String("host", h.Name), zap.String("op", "clone"),
			zap.String("image", h.Root.From), zap.String("root", h.Root.Image))
		hl.Info("root missing: cloning from golden image")
		m, err := CloneRoot(ctx, inv, h, LogProgress(hl))
		if errors.Is(err, os.ErrExist) { // `netsan image clone` got there first
			hl.Info("root appeared while cloning; keeping it")
			continue
		}
		if err != nil {
			hl.Error("clone failed", zap.Error(err))
			errs = append(errs, err)
			continue
		}
		hl.Info("root cloned", zap.Stringer("method", m))
	}
	return errors.Join(errs...)
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
