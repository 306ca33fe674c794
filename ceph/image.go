//go:build ceph

package ceph

/*
#cgo LDFLAGS: -lrbd
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <rbd/librbd.h>

// The operations netsan_aio starts.
enum { NETSAN_READ, NETSAN_WRITE, NETSAN_FLUSH, NETSAN_ZERO };

// netsan_aio starts one aio call, all in one crossing from Go: the
// completion is made, carrying slot (the image's request number, an
// integer, never dereferenced), and released again if the call fails.
static int netsan_aio(rbd_image_t img, int op, uint64_t off, size_t len, char *buf, uintptr_t slot) {
	rbd_completion_t c;
	int r = rbd_aio_create_completion((void *)slot, NULL, &c);
	if (r < 0)
		return r;
	switch (op) {
	case NETSAN_READ:
		r = rbd_aio_read(img, off, len, buf, c);
		break;
	case NETSAN_WRITE:
		r = rbd_aio_write(img, off, len, buf, c);
		break;
	case NETSAN_FLUSH:
		r = rbd_aio_flush(img, c);
		break;
	case NETSAN_ZERO:
		r = rbd_aio_write_zeroes(img, off, len, c, 0, 0);
		break;
	default:
		r = -EINVAL;
	}
	if (r < 0)
		rbd_aio_release(c); // not submitted: librbd will not complete it
	return r;
}

// done is one finished request: its slot and librbd's return value.
struct netsan_done {
	uintptr_t slot;
	int64_t ret;
};

#define NETSAN_POLL_BATCH 64

// netsan_poll collects up to NETSAN_POLL_BATCH completed requests, releasing
// their completions, all in one crossing from Go.
static int netsan_poll(rbd_image_t img, struct netsan_done *done) {
	rbd_completion_t comps[NETSAN_POLL_BATCH];
	int n = rbd_poll_io_events(img, comps, NETSAN_POLL_BATCH);
	for (int i = 0; i < n; i++) {
		done[i].slot = (uintptr_t)rbd_aio_get_arg(comps[i]);
		done[i].ret = rbd_aio_get_return_value(comps[i]);
		rbd_aio_release(comps[i]);
	}
	return n;
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
//
// To Go's scheduler a call into C is a system call: its monitor thread
// wakes for it and, if the call lasts while goroutines wait, hands the
// processor to another thread, context switches that are dear in a VM. So
// a request is one call into C to submit it, and a batch of completions
// one more to collect them.
type image struct {
	name     Name
	img      C.rbd_image_t
	size     int64
	readOnly bool

	events *os.File // the eventfd librbd signals
	poller sync.WaitGroup

	// A request in flight is known to librbd by its slot, an index into
	// slots: a plain integer goes through C without a cgo.Handle's map.
	mu    sync.Mutex
	slots []*request // every request made, by number
	free  []uintptr  // slots not in flight
}

// request is one aio call in flight. The buffer it reads into or writes
// from is pinned until librbd is done with it.
type request struct {
	done chan int64 // librbd's return value
	pin  runtime.Pinner
}

// op is what netsan_aio starts.
type op C.int

const (
	opRead  op = C.NETSAN_READ
	opWrite op = C.NETSAN_WRITE
	opFlush op = C.NETSAN_FLUSH
	opZero  op = C.NETSAN_ZERO
)

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
	im.poller.Add(1)
	go im.poll()
	return im, nil
}

// poll delivers completions until the eventfd is closed.
func (im *image) poll() {
	defer im.poller.Done()
	var count [8]byte
	var done [C.NETSAN_POLL_BATCH]C.struct_netsan_done
	var reqs [C.NETSAN_POLL_BATCH]*request
	for {
		if _, err := im.events.Read(count[:]); err != nil {
			// Closed: Close has waited for every request already.
			return
		}
		for {
			n := max(int(C.netsan_poll(im.img, &done[0])), 0)
			im.mu.Lock()
			for i, d := range done[:n] {
				reqs[i] = im.slots[d.slot]
			}
			im.mu.Unlock()
			for i, d := range done[:n] {
				reqs[i].done <- int64(d.ret)
			}
			if n < C.NETSAN_POLL_BATCH {
				break
			}
		}
	}
}

// get takes a free request slot, making one if all are in flight.
func (im *image) get() (uintptr, *request) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if n := len(im.free); n > 0 {
		slot := im.free[n-1]
		im.free = im.free[:n-1]
		return slot, im.slots[slot]
	}
	r := &request{done: make(chan int64, 1)}
	im.slots = append(im.slots, r)
	return uintptr(len(im.slots) - 1), r
}

func (im *image) put(slot uintptr) {
	im.mu.Lock()
	im.free = append(im.free, slot)
	im.mu.Unlock()
}

// submit starts one aio call of op over buf (may be empty: then length
// bytes at off) with buf pinned, and waits for its result.
func (im *image) submit(o op, off int64, buf []byte, length int64) (int64, error) {
	slot, r := im.get()
	defer im.put(slot)
	var p *C.char
	if len(buf) > 0 {
		r.pin.Pin(&buf[0])
		p, length = (*C.char)(unsafe.Pointer(&buf[0])), int64(len(buf))
	}
	if ret := C.netsan_aio(im.img, C.int(o), C.uint64_t(off), C.size_t(length), p, C.uintptr_t(slot)); ret < 0 {
		r.pin.Unpin()
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
	n, err := im.submit(opRead, off, p, 0)
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
	if _, err := im.submit(opWrite, off, p, 0); err != nil {
		return 0, fmt.Errorf("rbd %s: write %d at %d: %w", im.name, len(p), off, err)
	}
	return len(p), nil
}

// Sync returns once every completed write is on the OSDs: librbd's
// writeback cache, where enabled, is flushed.
func (im *image) Sync() error {
	if _, err := im.submit(opFlush, 0, nil, 0); err != nil {
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
	if _, err := im.submit(opZero, off, nil, length); err != nil {
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
