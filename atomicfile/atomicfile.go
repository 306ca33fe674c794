// Package atomicfile replaces small state files (leases, reservations) so that
// a crash at any moment leaves either the old content or the new, never a mix.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data: a temp file in the same directory,
// fsync, rename over path, then fsync of the directory so the rename itself
// survives a power cut. The temp file is removed on any failure.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, func(f *os.File) error { return f.Chmod(perm) })
}

// Replace is WriteFile for a file a person keeps (an inventory): the new
// content keeps path's permission bits, owner and group, so that a service
// running as another user still reads it.
func Replace(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return write(path, data, func(f *os.File) error {
		if err := f.Chmod(fi.Mode().Perm()); err != nil {
			return err
		}
		old, ok := fi.Sys().(*syscall.Stat_t)
		tmp, err := f.Stat()
		if err != nil || !ok {
			return err
		}
		if now := tmp.Sys().(*syscall.Stat_t); now.Uid != old.Uid || now.Gid != old.Gid {
			if err := f.Chown(int(old.Uid), int(old.Gid)); err != nil {
				return fmt.Errorf("keep owner %d:%d: %w", old.Uid, old.Gid, err)
			}
		}
		return nil
	})
}

// write replaces path with data; prepare sets the temp file's mode (and
// owner) before it takes path's place.
func write(path string, data []byte, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := writeSync(f, data, prepare); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeSync(f *os.File, data []byte, prepare func(*os.File) error) error {
	_, err := f.Write(data)
	if err == nil {
		err = prepare(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncDir makes the directory's entries (a rename, a new file) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
