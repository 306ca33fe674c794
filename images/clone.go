// Package images makes and inspects the disk images behind host roots: golden
// images are cloned into per-host roots by reflink (FICLONE) where the file
// system shares extents (XFS, btrfs), else by a sparse copy that writes only
// the source's allocated extents. A clone is built under a temporary name and
// renamed into place when complete, so the final name never holds half an
// image. Golden images are only ever opened read-only.
package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/netsan/netsan/atomicfile"
	"golang.org/x/sys/unix"
)

// Method is how a clone was made.
type Method int

const (
	// Reflink: the clone shares every extent with its source (FICLONE).
	Reflink Method = iota + 1
	// SparseCopy: the source's allocated extents were copied; its holes stay holes.
	SparseCopy
	// RBDClone: a Ceph copy-on-write clone of the golden image's protected
	// snapshot; nothing is copied.
	RBDClone
)

func (m Method) String() string {
	switch m {
	case Reflink:
		return "reflink"
	case SparseCopy:
		return "sparse copy"
	case RBDClone:
		return "rbd clone"
	}
	return "none"
}

// chunk is how much one copy_file_range call moves: small enough that
// progress and cancellation are seen every few milliseconds.
const chunk = 8 << 20

// Clone makes dst a copy of src, size bytes long (0 or less than src: src's
// size; a size below src's is refused, it would cut the disk). dst must not
// exist. progress, when not nil, is called with bytes copied so far and the
// total to copy (for a reflink, once, with both equal).
func Clone(ctx context.Context, src, dst string, size int64, progress func(done, total int64)) (Method, error) {
	return clone(ctx, src, dst, size, progress, false)
}

// clone writes src into a temporary file beside dst and renames it over
// dst: atomically replacing it when replace is set, else failing when dst
// already exists.
func clone(ctx context.Context, src, dst string, size int64, progress func(done, total int64), replace bool) (m Method, err error) {
	in, err := os.Open(src) // read-only, always: a golden image is never opened writable
	if err != nil {
		return 0, fmt.Errorf("clone: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, fmt.Errorf("clone: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("clone: %s is not a regular file", src)
	}
	if size > 0 && size < fi.Size() {
		return 0, fmt.Errorf("clone %s: size %d is smaller than the source's %d bytes", dst, size, fi.Size())
	}
	if !replace {
		if _, err := os.Lstat(dst); err == nil {
			return 0, fmt.Errorf("clone %s: %w", dst, os.ErrExist)
		}
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("clone: %w", err)
	}
	if err := RemoveStale(dst); err != nil {
		return 0, err
	}
	tmp, err := createTemp(dst)
	if err != nil {
		return 0, fmt.Errorf("clone %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	m, err = copyInto(ctx, in, tmp, fi.Size(), progress)
	if err != nil {
		return 0, fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	if size > fi.Size() {
		if err := tmp.Truncate(size); err != nil {
			return 0, fmt.Errorf("clone %s: grow to %d: %w", dst, size, err)
		}
	}
	if err := commit(tmp, dst, replace); err != nil {
		return 0, fmt.Errorf("clone %s: %w", dst, err)
	}
	return m, nil
}

// copyInto fills out (empty) with in's content: a reflink when the file
// system allows one, else a sparse copy.
func copyInto(ctx context.Context, in, out *os.File, srcSize int64, progress func(done, total int64)) (Method, error) {
	err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	if err == nil {
		if progress != nil {
			progress(srcSize, srcSize)
		}
		return Reflink, nil
	}
	if !reflinkUnsupported(err) {
		return 0, fmt.Errorf("FICLONE: %w", err)
	}
	if err := sparseCopy(ctx, in, out, srcSize, progress); err != nil {
		return 0, err
	}
	return SparseCopy, nil
}

// reflinkUnsupported: the errors FICLONE gives when the file system cannot
// share extents (ext4, tmpfs) or the files are on different file systems.
func reflinkUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ETXTBSY)
}

// extent is a run of allocated data, [Off, Off+Len).
type extent struct{ Off, Len int64 }

// dataExtents lists f's data regions with SEEK_DATA/SEEK_HOLE. A file system
// without hole tracking reports the whole file as data, which is still correct.
func dataExtents(f *os.File, size int64) ([]extent, error) {
	fd := int(f.Fd())
	var out []extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) { // no data after off
			break
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA %d: %w", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE %d: %w", data, err)
		}
		hole = min(hole, size)
		if hole <= data { // the file shrank under us; stop rather than loop
			break
		}
		out = append(out, extent{data, hole - data})
		off = hole
	}
	return out, nil
}

// sparseCopy copies in's data extents to the same offsets of out and sizes
// out like in; holes are never written, so they stay holes.
func sparseCopy(ctx context.Context, in, out *os.File, size int64, progress func(done, total int64)) error {
	exts, err := dataExtents(in, size)
	if err != nil {
		return err
	}
	var total, done int64
	for _, e := range exts {
		total += e.Len
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	if progress != nil {
		progress(0, total)
	}
	useCFR := true
	var buf []byte
	for _, e := range exts {
		for off, end := e.Off, e.Off+e.Len; off < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(end-off, chunk)
			var w int64
			if useCFR {
				w, err = copyFileRange(in, out, off, n)
				if err != nil && cfrUnsupported(err) {
					useCFR, err = false, nil
					continue
				}
			} else {
				if buf == nil {
					buf = make([]byte, chunk)
				}
				w, err = copyBuffered(in, out, off, buf[:n])
			}
			if err != nil {
				return fmt.Errorf("copy at %d: %w", off, err)
			}
			// Start writing this chunk out now, so that the fsync before the
			// rename finds little left to do and the disk works while we copy.
			_ = unix.SyncFileRange(int(out.Fd()), off, w, unix.SYNC_FILE_RANGE_WRITE)
			off += w
			done += w
			if progress != nil {
				progress(done, total)
			}
		}
	}
	return nil
}

// copyFileRange copies up to n bytes at off within the kernel.
func copyFileRange(in, out *os.File, off, n int64) (int64, error) {
	roff, woff := off, off
	w, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(n), 0)
	if err != nil {
		return 0, err
	}
	if w == 0 {
		return 0, io.ErrUnexpectedEOF // the source shrank under us
	}
	return int64(w), nil
}

// cfrUnsupported: copy_file_range cannot do this pair of files (older
// kernels across file systems, some FUSE and network file systems).
func cfrUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.EINVAL)
}

func copyBuffered(in, out *os.File, off int64, buf []byte) (int64, error) {
	r, err := in.ReadAt(buf, off)
	if r == 0 && err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if _, err := out.WriteAt(buf[:r], off); err != nil {
		return 0, err
	}
	return int64(r), nil
}

// tempPrefix names a clone in progress: ".node1.img.tmp-1234567".
func tempPrefix(dst string) string { return "." + filepath.Base(dst) + ".tmp-" }

// createTemp makes the temporary file beside dst and holds an exclusive
// flock on it while the clone runs, so RemoveStale in another process can
// tell a live clone from one whose writer died (the kernel drops the lock
// with the last descriptor, kill -9 included).
func createTemp(dst string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), tempPrefix(dst)+"*")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// RemoveStale deletes the temporary files that interrupted clones of dst
// left behind; files still locked by a running clone are left alone.
func RemoveStale(dst string) error {
	dir := filepath.Dir(dst)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stale clones of %s: %w", dst, err)
	}
	prefix := tempPrefix(dst)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue // gone already
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				f.Close()
				return fmt.Errorf("stale clone %s: %w", p, err)
			}
		}
		f.Close()
	}
	return nil
}

// commit makes the temporary file durable and gives it its final name:
// fsync the data, rename, fsync the directory so the rename survives a crash.
func commit(tmp *os.File, dst string, replace bool) error {
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := rename(tmp.Name(), dst, replace); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Dir(dst), err)
	}
	return nil
}

// rename moves from to to; without replace it fails if to exists, so two
// clones of one root racing each other cannot overwrite a finished one.
func rename(from, to string, replace bool) error {
	if replace {
		return os.Rename(from, to)
	}
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// No RENAME_NOREPLACE here: a hard link also refuses an existing name.
		if err = os.Link(from, to); err == nil {
			return os.Remove(from)
		}
		return err
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("rename: %w", os.ErrExist)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
