package images

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Usage reports a file's apparent size and the bytes the file system has
// allocated for it (st_blocks). Extents shared with a reflinked source are
// counted in full here; Shared tells how many of them are shared.
func Usage(path string) (size, allocated int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi.Size(), 0, fmt.Errorf("usage %s: no stat blocks", path)
	}
	return fi.Size(), st.Blocks * 512, nil
}

// FIEMAP (linux/fiemap.h); golang.org/x/sys does not carry it.
const (
	fsIocFiemap        = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapExtentLast   = 0x0001
	fiemapExtentShared = 0x2000
	fiemapBatch        = 128
)

type fiemap struct {
	Start         uint64
	Length        uint64
	Flags         uint32
	MappedExtents uint32
	ExtentCount   uint32
	Reserved      uint32
}

type fiemapExtent struct {
	Logical    uint64
	Physical   uint64
	Length     uint64
	Reserved64 [2]uint64
	Flags      uint32
	Reserved   [3]uint32
}

// fiemapReq is struct fiemap followed by its extent array, as the ioctl wants.
type fiemapReq struct {
	fiemap
	Extents [fiemapBatch]fiemapExtent
}

// ErrNoExtentMap means the file system does not implement FIEMAP (tmpfs),
// so whether extents are shared cannot be told.
var ErrNoExtentMap = fmt.Errorf("file system has no extent map (FIEMAP)")

// Shared reports how many bytes of path's extents the file system marks
// shared (FIEMAP_EXTENT_SHARED): a reflinked clone shares its unwritten
// extents with its golden image; a sparse copy shares none.
func Shared(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var shared int64
	req := new(fiemapReq)
	for start, guard := uint64(0), 0; guard < 1<<20; guard++ {
		*req = fiemapReq{fiemap: fiemap{Start: start, Length: ^uint64(0) - start, ExtentCount: fiemapBatch}}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(req)))
		if errno == unix.EOPNOTSUPP || errno == unix.ENOTTY {
			return 0, ErrNoExtentMap
		}
		if errno != 0 {
			return 0, fmt.Errorf("FIEMAP %s: %w", path, errno)
		}
		n := int(req.MappedExtents)
		if n == 0 {
			return shared, nil
		}
		for _, e := range req.Extents[:n] {
			if e.Flags&fiemapExtentShared != 0 {
				shared += int64(e.Length)
			}
			if e.Flags&fiemapExtentLast != 0 {
				return shared, nil
			}
		}
		last := req.Extents[n-1]
		start = last.Logical + last.Length
	}
	return shared, nil
}
