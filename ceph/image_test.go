//go:build ceph

package ceph

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/iscsi/backstore"
)

func connect(t testing.TB) (*cephtest.Cluster, *Cluster) {
	t.Helper()
	tc := cephtest.Start(t, cephtest.Options{})
	return tc, client(t, tc)
}

// client is one more client of tc, closed when t ends.
func client(t testing.TB, tc *cephtest.Cluster) *Cluster {
	t.Helper()
	c, err := Connect(Config{Conf: tc.Conf, Pool: tc.Pool}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// newImage starts a cluster with one new image of size (rbd's units) in
// pool rbd, open for writing.
func newImage(t *testing.T, name, size string) (*cephtest.Cluster, *Cluster, backstore.Store) {
	t.Helper()
	tc, c := connect(t)
	tc.MustRbd(t, "create", "--size", size, "rbd/"+name)
	return tc, c, open(t, c, name, false)
}

func open(t testing.TB, c *Cluster, name string, readOnly bool) backstore.Store {
	t.Helper()
	s, err := c.OpenImage(Name{Pool: "rbd", Image: name}, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestImageIO writes a pattern at queue depth 32 (every request its own
// aio), reads it back, discards part of it, and reopens the image to see
// that everything acknowledged is there.
func TestImageIO(t *testing.T) {
	_, c, s := newImage(t, "io", "64M")
	if got := s.Size(); got != 64<<20 {
		t.Fatalf("Size = %d, want %d", got, 64<<20)
	}
	const block, blocks, depth = 64 << 10, 256, 32
	want := make([]byte, block*blocks)
	rand.NewChaCha8([32]byte{1}).Read(want)

	var wg sync.WaitGroup
	errs := make(chan error, blocks)
	next := make(chan int, blocks)
	for i := range blocks {
		next <- i
	}
	close(next)
	for range depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := s.WriteAt(want[i*block:(i+1)*block], int64(i*block)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Requests are numbered for librbd from a table, and the numbers are
	// reused: no more of them than were ever in flight at once.
	if n := len(s.(*image).slots); n > depth {
		t.Errorf("%d request slots after %d writes at depth %d", n, blocks, depth)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read back differs from what was written")
	}

	// Discard 8 MiB in the middle: zeros there, the rest kept.
	if err := s.Unmap(4<<20, 8<<20); err != nil {
		t.Fatal(err)
	}
	copy(want[4<<20:12<<20], make([]byte, 8<<20))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, c, "io", true)
	defer s.Close()
	clear(got)
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("after discard and reopen: contents differ")
	}
	if _, err := s.WriteAt(got[:512], 0); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to a read-only image: %v, want EROFS", err)
	}
}

// TestUnmapPartial: UNMAP of single 512-byte blocks, far smaller than an
// RBD object or librbd's discard granularity, reads back as zeros (LBPRZ),
// and GET LBA STATUS's view follows.
func TestUnmapPartial(t *testing.T) {
	_, _, s := newImage(t, "partial", "16M")
	defer s.Close()
	data := bytes.Repeat([]byte{0xa5}, 64<<10)
	if _, err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	m, ok := s.(backstore.Mapper)
	if !ok {
		t.Fatal("the RBD store is not a backstore.Mapper: no thin provisioning for RBD LUNs")
	}
	if mapped, n, err := m.Allocated(0, 16<<20); err != nil || !mapped || n < 64<<10 {
		t.Fatalf("Allocated(0) after a 64 KiB write = %v, %d, %v", mapped, n, err)
	}
	if mapped, n, err := m.Allocated(8<<20, 8<<20); err != nil || mapped || n != 8<<20 {
		t.Fatalf("Allocated(8 MiB) of a never written half = %v, %d, %v; want unmapped, 8 MiB", mapped, n, err)
	}
	for _, off := range []int64{512, 4096 + 1024, 60 << 10} {
		if err := s.Unmap(off, 512); err != nil {
			t.Fatal(err)
		}
		copy(data[off:off+512], make([]byte, 512))
	}
	got := make([]byte, len(data))
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		for i := range got {
			if got[i] != data[i] {
				t.Fatalf("after unmapping 512-byte blocks: byte %d is %#x, want %#x", i, got[i], data[i])
			}
		}
	}
}

// TestImageMissing: opening an image that does not exist is ENOENT, named.
func TestImageMissing(t *testing.T) {
	_, c := connect(t)
	_, err := c.OpenImage(Name{Pool: "rbd", Image: "nope"}, false)
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("open missing image: %v, want ENOENT", err)
	}
}

// TestConnectNoCluster: monitors that do not answer are an error within the
// timeout, not a hang.
func TestConnectNoCluster(t *testing.T) {
	conf := t.TempDir() + "/ceph.conf"
	// Port 9 (discard) on loopback: nothing listens there.
	writeFile(t, conf, "[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n")
	start := time.Now()
	_, err := Connect(Config{Conf: conf}, 3*time.Second)
	if err == nil {
		t.Fatal("Connect to a cluster that is not there succeeded")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("Connect took %s with a 3 s timeout", d)
	}
	t.Logf("no cluster: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
}

func writeFile(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestClientOptions: the options netsan's client runs with.
func TestClientOptions(t *testing.T) {
	_, c := connect(t)
	for opt, want := range map[string]string{
		// No write-back cache, so a write is on the OSDs when WriteAt
		// returns and a crash of netsan loses no acknowledged write.
		// (Whether a cached write reaches the OSDs within the time another
		// client takes to look is a race, so the setting itself is what is
		// checked.)
		"rbd_cache": "false",
		// librbd starts a request in the thread that calls it, not through
		// a dispatch thread of its own (one thread wake-up per request
		// fewer; BenchmarkImageRead and bench/rbd measure what it costs).
		"rbd_non_blocking_aio": "false",
	} {
		got, err := c.conn.GetConfigOption(opt)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s, want %s", opt, got, want)
		}
	}
}
