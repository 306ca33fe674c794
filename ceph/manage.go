//go:build ceph

package ceph

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ceph/go-ceph/rbd"
)

// image opens image n, read-only or not.
func (c *Cluster) image(n Name, readOnly bool) (*rbd.Image, error) {
	io, err := c.ioctx(n.Pool)
	if err != nil {
		return nil, err
	}
	open := rbd.OpenImage
	if readOnly {
		open = rbd.OpenImageReadOnly
	}
	img, err := open(io, n.Image, rbd.NoSnapshot)
	return img, errnoOf(err)
}

// Exists reports whether the image is there.
func (c *Cluster) Exists(n Name) (bool, error) {
	img, err := c.image(n, true)
	if errors.Is(err, rbd.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rbd %s: %w", n, err)
	}
	return true, img.Close()
}

// Stat tells an image's size, what it uses and where it was cloned from.
// Used counts the objects the image itself holds, as `rbd du` does, so a
// fresh clone uses nothing of its own.
func (c *Cluster) Stat(n Name) (Info, error) {
	img, err := c.image(n, true)
	if err != nil {
		return Info{}, fmt.Errorf("rbd %s: %w", n, err)
	}
	defer img.Close()
	size, err := img.GetSize()
	if err != nil {
		return Info{}, fmt.Errorf("rbd %s: size: %w", n, err)
	}
	info := Info{Size: int64(size)}
	if p, err := img.GetParent(); err == nil {
		info.Parent = p.Image.PoolName + "/" + p.Image.ImageName + "@" + p.Snap.SnapName
	} else if !errors.Is(err, rbd.ErrNotFound) {
		return Info{}, fmt.Errorf("rbd %s: parent: %w", n, err)
	}
	err = img.DiffIterate(rbd.DiffIterateConfig{
		Length:        size,
		IncludeParent: rbd.ExcludeParent,
		WholeObject:   rbd.EnableWholeObject,
		Callback: func(_, length uint64, exists int, _ any) int {
			if exists != 0 {
				info.Used += int64(length)
			}
			return 0
		},
	})
	if err != nil {
		return Info{}, fmt.Errorf("rbd %s: usage: %w", n, err)
	}
	return info, nil
}

// Create makes an empty (thin) image of size bytes.
func (c *Cluster) Create(n Name, size int64) error {
	io, err := c.ioctx(n.Pool)
	if err != nil {
		return err
	}
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := rbd.CreateImage(io, n.Image, uint64(size), opts); err != nil {
		return fmt.Errorf("rbd %s: create: %w", n, errnoOf(err))
	}
	return nil
}

// Clone makes root a copy-on-write clone of golden's protected snapshot
// GoldenSnap (made and protected here on first use), grown to size where
// size is larger than golden.
func (c *Cluster) Clone(golden, root Name, size int64) error {
	gio, err := c.ioctx(golden.Pool)
	if err != nil {
		return err
	}
	rio, err := c.ioctx(root.Pool)
	if err != nil {
		return err
	}
	if err := c.protectGolden(golden); err != nil {
		return err
	}
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := rbd.CloneImage(gio, golden.Image, GoldenSnap, rio, root.Image, opts); err != nil {
		return fmt.Errorf("rbd %s: clone of %s@%s: %w", root, golden, GoldenSnap, errnoOf(err))
	}
	img, err := c.image(root, false)
	if err != nil {
		return fmt.Errorf("rbd %s: %w", root, err)
	}
	defer img.Close()
	have, err := img.GetSize()
	if err != nil {
		return fmt.Errorf("rbd %s: size: %w", root, err)
	}
	if size > int64(have) {
		if err := img.Resize(uint64(size)); err != nil {
			return fmt.Errorf("rbd %s: grow to %d: %w", root, size, err)
		}
	}
	return nil
}

// protectGolden makes sure golden has the snapshot clones come from, and
// that it is protected. Two gateways doing this at once both succeed.
func (c *Cluster) protectGolden(golden Name) error {
	img, err := c.image(golden, false)
	if err != nil {
		return fmt.Errorf("golden rbd %s: %w", golden, err)
	}
	defer img.Close()
	snap, err := img.CreateSnapshot(GoldenSnap)
	if errors.Is(err, rbd.ErrExist) {
		snap, err = img.GetSnapshot(GoldenSnap), nil
	}
	if err != nil {
		return fmt.Errorf("golden rbd %s: snapshot %s: %w", golden, GoldenSnap, err)
	}
	protected, err := snap.IsProtected()
	if err != nil {
		return fmt.Errorf("golden rbd %s@%s: %w", golden, GoldenSnap, err)
	}
	if protected {
		return nil
	}
	if err := snap.Protect(); err != nil && !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("golden rbd %s@%s: protect: %w", golden, GoldenSnap, err)
	}
	return nil
}

// Remove deletes an image (a host root being reset or deleted). An image
// that is open elsewhere (an iSCSI session, another gateway) is refused by
// the cluster with EBUSY.
func (c *Cluster) Remove(n Name) error {
	io, err := c.ioctx(n.Pool)
	if err != nil {
		return err
	}
	if err := rbd.RemoveImage(io, n.Image); err != nil {
		return fmt.Errorf("rbd %s: remove: %w", n, errnoOf(err))
	}
	return nil
}

// Rename gives image n the name to in its pool. An image open elsewhere
// (a LUN the target serves) may be renamed, unlike removed: the open image
// follows it, so a host root is replaced by renaming the old one away,
// cloning the new one, and removing the old once the target let it go.
func (c *Cluster) Rename(n Name, to string) error {
	io, err := c.ioctx(n.Pool)
	if err != nil {
		return err
	}
	if err := rbd.GetImage(io, n.Image).Rename(to); err != nil {
		return fmt.Errorf("rbd %s: rename to %s: %w", n, to, errnoOf(err))
	}
	return nil
}

// errnoOf makes a go-ceph error match the syscall.Errno it carries as well
// (ENOENT, EEXIST, EBUSY…), so callers test one error whatever store they
// use: errors.Is(err, os.ErrExist) for an image that is already there.
func errnoOf(err error) error {
	var ce interface{ ErrorCode() int }
	if err == nil || !errors.As(err, &ce) || ce.ErrorCode() >= 0 {
		return err
	}
	return errnoError{err, syscall.Errno(-ce.ErrorCode())}
}

// errnoError is a go-ceph error that is also its errno; its message is
// go-ceph's.
type errnoError struct {
	error
	errno syscall.Errno
}

func (e errnoError) Unwrap() []error { return []error{e.error, e.errno} }
