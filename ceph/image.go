//go:build ceph

package ceph

/*
#cgo LDFLAGS: -lrbd
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <rbd/librbd.h>

// The completion's argument is a cgo.Handle, an integer: it is carried as a
// pointer-sized value and never dereferenced.
static int netsan_aio_completion(uintptr_t h, rbd_completion_t *c) {
	return rbd_aio_create_completion((void *)h, NULL, c);
}

static uintptr_t netsan_aio_handle(rbd_completion_t c) {
	return (uintptr_t)rbd_aio_get_arg(c);
}

// extent is the first run of allocated bytes rbd_diff_iterate2 reports
// from an offset: where it starts and how long it runs without a hole.
struct netsan_extent {
	uint64_t start, len;
	int found;
};

#define NETSAN_STOP (-ECANCELED)

static int netsan_extent_cb(uint64_t off, size_t len, int exists, void *arg) {
	struct netsan_extent *e = arg;
	if (!exists)
		return 0;
	if (!e->found) {
		e->start = off, e->len = len, e->found = 1;
		return 0;
	}
	if (off == e->start + e->len) {
		e->len += len;
		return 0;
	}
	return NETSAN_STOP; // a hole: the run has ended
}

// netsan_first_extent finds the first allocated run in [off, off+len), the
// parent's data included: a clone reads it, so it is mapped.
static int netsan_first_extent(rbd_image_t img, uint64_t off, uint64_t len, struct netsan_extent *e) {
	int r = rbd_diff_iterate2(img, NULL, off, len, 1, 0, netsan_extent_cb, e);
	return r == NETSAN_STOP ? 0 : r;
}
*/
import "C"

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/cgo"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ceph/go-ceph/rados"
)

// image is a backstore.Store over an RBD image. Every read, write, discard
// and flush is submitted with librbd's aio calls and the caller waits for its
// own completion, so as many requests are in flight as there are commands
// running on the LU. Completions come back without any call from C into Go:
// librbd signals an eventfd, which one goroutine per image waits on through
// Go's poller and drains with rbd_poll_io_events.
type image struct {
	name     Name
	img      C.rbd_image_t
	size     int64
	readOnly bool

	events *os.File // the eventfd librbd signals
	poller sync.WaitGroup
	reqs   sync.Pool // *request, reused
}

// request is one aio call in flight. The buffer it reads into or writes
// from is pinned until librbd is done with it.
type request struct {
	done chan int64 // librbd's return value
	pin  runtime.Pinner
}

// pollBatch is how many completions one rbd_poll_io_events call collects.
const pollBatch = 64

func openImage(ioctx *rados.IOContext, name Name, readOnly bool) (*image, error) {
	cname := C.CString(name.Image)
	defer C.free(unsafe.Pointer(cname))
	im := &image{name: name, readOnly: readOnly}
	cio := C.rados_ioctx_t(ioctx.Pointer())
	var ret C.int
	if readOnly {
		ret = C.rbd_open_read_only(cio, cname, &im.img, nil)
	} else {
		ret = C.rbd_open(cio, cname, &im.img, nil)
	}
	if ret < 0 {
		return nil, fmt.Errorf("rbd %s: open: %w", name, errno(ret))
	}
	var size C.uint64_t
	if ret := C.rbd_get_size(im.img, &size); ret < 0 {
		C.rbd_close(im.img)
		return nil, fmt.Errorf("rbd %s: size: %w", name, errno(ret))
	}
	im.size = int64(size)
	fd, err := C.eventfd(0, C.EFD_NONBLOCK|C.EFD_CLOEXEC)
	if fd < 0 {
		C.rbd_close(im.img)
		return nil, fmt.Errorf("rbd %s: eventfd: %w", name, err)
	}
	// A non-blocking descriptor makes an *os.File that waits in Go's poller,
	// and whose Close wakes a pending Read.
	im.events = os.NewFile(uintptr(fd), "rbd-events")
	if ret := C.rbd_set_image_notification(im.img, fd, C.EVENT_TYPE_EVENTFD); ret < 0 {
		im.events.Close()
		C.rbd_close(im.img)
		return nil, fmt.Errorf("rbd %s: completion notification: %w", name, errno(ret))
	}
	im.reqs.New = func() any { return &request{done: make(chan int64, 1)} }
	im.poller.Add(1)
	go im.poll()
	return im, nil
}

// poll delivers completions until the eventfd is closed.
func (im *image) poll() {
	defer im.poller.Done()
	var count [8]byte
	var comps [pollBatch]C.rbd_completion_t
	for {
		if _, err := im.events.Read(count[:]); err != nil {
			// Closed: Close has waited for every request already.
			return
		}
		for {
			n := int(C.rbd_poll_io_events(im.img, &comps[0], pollBatch))
			for _, c := range comps[:max(n, 0)] {
				h := cgo.Handle(C.netsan_aio_handle(c))
				ret := int64(C.rbd_aio_get_return_value(c))
				C.rbd_aio_release(c)
				h.Value().(*request).done <- ret
				h.Delete()
			}
			if n < pollBatch {
				break
			}
		}
	}
}

// submit starts one aio call through start, with buf (may be empty) pinned,
// and waits for its result.
func (im *image) submit(buf []byte, start func(C.rbd_completion_t) C.int) (int64, error) {
	r := im.reqs.Get().(*request)
	defer im.reqs.Put(r)
	h := cgo.NewHandle(r)
	var comp C.rbd_completion_t
	if ret := C.netsan_aio_completion(C.uintptr_t(h), &comp); ret < 0 {
		h.Delete()
		return 0, errno(ret)
	}
	if len(buf) > 0 {
		r.pin.Pin(&buf[0])
	}
	if ret := start(comp); ret < 0 {
		// Not submitted: librbd will not complete it.
		r.pin.Unpin()
		C.rbd_aio_release(comp)
		h.Delete()
		return 0, errno(ret)
	}
	ret := <-r.done
	r.pin.Unpin()
	if ret < 0 {
		return 0, errno(C.int(ret))
	}
	return ret, nil
}

func (im *image) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := im.submit(p, func(c C.rbd_completion_t) C.int {
		return C.rbd_aio_read(im.img, C.uint64_t(off), C.size_t(len(p)), (*C.char)(unsafe.Pointer(&p[0])), c)
	})
	if err != nil {
		return 0, fmt.Errorf("rbd %s: read %d at %d: %w", im.name, len(p), off, err)
	}
	if int(n) < len(p) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (im *image) WriteAt(p []byte, off int64) (int, error) {
	if im.readOnly {
		return 0, fmt.Errorf("rbd %s: write: %w", im.name, syscall.EROFS)
	}
	if len(p) == 0 {
		return 0, nil
	}
	// A write's completion is 0 on success: librbd writes all or fails.
	if _, err := im.submit(p, func(c C.rbd_completion_t) C.int {
		return C.rbd_aio_write(im.img, C.uint64_t(off), C.size_t(len(p)), (*C.char)(unsafe.Pointer(&p[0])), c)
	}); err != nil {
		return 0, fmt.Errorf("rbd %s: write %d at %d: %w", im.name, len(p), off, err)
	}
	return len(p), nil
}

// Sync returns once every completed write is on the OSDs: librbd's
// writeback cache, where enabled, is flushed.
func (im *image) Sync() error {
	if _, err := im.submit(nil, func(c C.rbd_completion_t) C.int {
		return C.rbd_aio_flush(im.img, c)
	}); err != nil {
		return fmt.Errorf("rbd %s: flush: %w", im.name, err)
	}
	return nil
}

// Unmap deallocates the range and makes it read as zeros. It is librbd's
// write-zeroes, not its discard: a discard skips what is smaller than
// rbd_discard_granularity_bytes (64 KiB) or an object's edge, and the SCSI
// initiator was promised zeros there (LBPRZ). Whole objects inside the range
// are still removed, so the space returns to the cluster.
func (im *image) Unmap(off, length int64) error {
	if im.readOnly {
		return fmt.Errorf("rbd %s: unmap: %w", im.name, syscall.EROFS)
	}
	if _, err := im.submit(nil, func(c C.rbd_completion_t) C.int {
		return C.rbd_aio_write_zeroes(im.img, C.uint64_t(off), C.size_t(length), c, 0, 0)
	}); err != nil {
		return fmt.Errorf("rbd %s: unmap %d at %d: %w", im.name, length, off, err)
	}
	return nil
}

// Allocated implements backstore.Mapper (GET LBA STATUS): it makes an RBD
// LUN thin-provisioned to the initiator, as the image is.
func (im *image) Allocated(off, length int64) (bool, int64, error) {
	var e C.struct_netsan_extent
	if ret := C.netsan_first_extent(im.img, C.uint64_t(off), C.uint64_t(length), &e); ret < 0 {
		return false, 0, fmt.Errorf("rbd %s: allocation at %d: %w", im.name, off, errno(ret))
	}
	start, n := int64(e.start), int64(e.len)
	switch {
	case e.found == 0:
		return false, length, nil
	case start > off:
		return false, start - off, nil
	default:
		return true, min(start+n, off+length) - off, nil
	}
}

func (im *image) Size() int64 { return im.size }

// Close stops the poller and closes the image (librbd flushes it). No
// request may be in flight: the LU closes its store only when idle.
func (im *image) Close() error {
	err := im.events.Close()
	im.poller.Wait()
	if ret := C.rbd_close(im.img); ret < 0 && err == nil {
		err = errno(ret)
	}
	if err != nil {
		return fmt.Errorf("rbd %s: close: %w", im.name, err)
	}
	return nil
}

// errno turns librbd's negative return into the errno it names.
func errno(ret C.int) error {
	if ret >= 0 {
		return nil
	}
	return syscall.Errno(-ret)
}
