package backstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mapper is implemented by stores that can tell allocated extents from
// holes (GET LBA STATUS).
type Mapper interface {
	// Allocated reports whether the byte at off is backed by storage and how
	// many bytes from off, at most length, share that state.
	Allocated(off, length int64) (mapped bool, extentLen int64, err error)
}

// Prefetcher is implemented by stores that can start reading a range into
// the page cache ahead of use (PRE-FETCH).
type Prefetcher interface {
	Prefetch(off, length int64) error
}

// fileStore is a Store over a regular file or a block device. All I/O is
// positional (pread/pwrite), so one descriptor serves concurrent commands.
type fileStore struct {
	f        *os.File
	fd       int
	size     int64
	device   bool
	readOnly bool
}

// Open opens the store at path. A regular file that does not exist is
// created sparse at size; an existing file is never truncated and keeps its
// own size. A block device's size is read from the kernel.
func Open(path string, size int64, readOnly bool) (Store, error) {
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flags, 0)
	if errors.Is(err, os.ErrNotExist) && !readOnly {
		if size <= 0 {
			return nil, fmt.Errorf("backstore %s: missing and no size to create it at", path)
		}
		f, err = create(path, size)
	}
	if err != nil {
		return nil, fmt.Errorf("backstore: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("backstore: %w", err)
	}
	s := &fileStore{f: f, fd: int(f.Fd()), readOnly: readOnly}
	switch {
	case st.Mode().IsRegular():
		s.size = st.Size()
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		s.device = true
		var sz uint64
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&sz))); errno != 0 {
			f.Close()
			return nil, fmt.Errorf("backstore %s: BLKGETSIZE64: %w", path, errno)
		}
		s.size = int64(sz)
	default:
		f.Close()
		return nil, fmt.Errorf("backstore %s: neither a regular file nor a block device", path)
	}
	if s.size == 0 {
		f.Close()
		return nil, fmt.Errorf("backstore %s: size is zero", path)
	}
	return s, nil
}

// create makes a sparse file of size bytes. O_EXCL keeps a file created
// concurrently by someone else from being truncated.
func create(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

func (s *fileStore) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.f.ReadAt(p, off)
	if err == io.EOF && off+int64(len(p)) <= s.size {
		// A device or file shorter than announced: report, do not hide.
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (s *fileStore) WriteAt(p []byte, off int64) (int, error) {
	if s.readOnly {
		return 0, fmt.Errorf("backstore: write to read-only store: %w", os.ErrPermission)
	}
	return s.f.WriteAt(p, off)
}

func (s *fileStore) Sync() error {
	if s.readOnly {
		return nil
	}
	if err := unix.Fdatasync(s.fd); err != nil {
		return fmt.Errorf("backstore: fdatasync: %w", err)
	}
	return nil
}

func (s *fileStore) Size() int64 { return s.size }

func (s *fileStore) Close() error { return s.f.Close() }

// Unmap deallocates [off, off+length). Files get a hole punched; devices
// BLKZEROOUT (which discards where the device guarantees zeroes after it).
// Where neither works, zeros are written so later reads still return zeros.
func (s *fileStore) Unmap(off, length int64) error {
	if s.readOnly {
		return fmt.Errorf("backstore: unmap on read-only store: %w", os.ErrPermission)
	}
	if off < 0 || length < 0 || off+length > s.size {
		return fmt.Errorf("backstore: unmap [%d,+%d) outside size %d", off, length, s.size)
	}
	if length == 0 {
		return nil
	}
	var err error
	if s.device {
		r := [2]uint64{uint64(off), uint64(length)}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r))); errno != 0 {
			err = errno
		}
	} else {
		err = unix.Fallocate(s.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("backstore: unmap [%d,+%d): %w", off, length, err)
	}
	return s.writeZeros(off, length)
}

func (s *fileStore) writeZeros(off, length int64) error {
	zero := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(zero)))
		if _, err := s.f.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("backstore: zeroing at %d: %w", off, err)
		}
		off += n
		length -= n
	}
	return nil
}

// Allocated uses SEEK_DATA/SEEK_HOLE on files; a block device reports
// everything mapped.
func (s *fileStore) Allocated(off, length int64) (bool, int64, error) {
	if off < 0 || length <= 0 || off >= s.size {
		return false, 0, fmt.Errorf("backstore: extent query [%d,+%d) outside size %d", off, length, s.size)
	}
	length = min(length, s.size-off)
	if s.device {
		return true, length, nil
	}
	data, err := unix.Seek(s.fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return false, length, nil // only a hole up to the end of the file
	}
	if err != nil {
		return false, 0, fmt.Errorf("backstore: SEEK_DATA at %d: %w", off, err)
	}
	if data > off {
		return false, min(data-off, length), nil
	}
	hole, err := unix.Seek(s.fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, fmt.Errorf("backstore: SEEK_HOLE at %d: %w", off, err)
	}
	return true, min(hole-off, length), nil
}

// Prefetch asks the kernel to read [off, off+length) ahead (FADV_WILLNEED).
func (s *fileStore) Prefetch(off, length int64) error {
	if err := unix.Fadvise(s.fd, off, length, unix.FADV_WILLNEED); err != nil {
		return fmt.Errorf("backstore: prefetch [%d,+%d): %w", off, length, err)
	}
	return nil
}
