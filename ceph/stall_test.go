//go:build ceph

package ceph

import (
	"bytes"
	"encoding/binary"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestOSDStall stops the only OSD (SIGSTOP) for 20 s while 8 writers
// write, then resumes it. Writes in flight wait or fail, none is lost: every
// write acknowledged, before, during or after the stall, reads back.
func TestOSDStall(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s stall")
	}
	tc, _, s := newImage(t, "stall", "64M")
	defer s.Close()

	const writers, block = 8, 4096
	var (
		mu     sync.Mutex
		acked  = map[int64][]byte{} // offset → what was acknowledged there last
		writes int                  // acknowledged writes, all offsets
		failed int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(0); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				// Each writer its own 1 MiB, cycling through 256 blocks.
				off := int64(w)<<20 + int64(seq%256)*block
				buf := make([]byte, block)
				binary.BigEndian.PutUint64(buf, uint64(w))
				binary.BigEndian.PutUint64(buf[8:], seq)
				if _, err := s.WriteAt(buf, off); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					t.Logf("writer %d: %v", w, err)
					continue
				}
				mu.Lock()
				acked[off] = buf
				writes++
				mu.Unlock()
			}
		}()
	}
	osd := tc.OSD.Process
	time.Sleep(2 * time.Second)
	if err := tc.FreezeOSD(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := writes
	mu.Unlock()
	time.Sleep(20 * time.Second)
	if err := osd.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	// An OSD woken from a stop can take a while to serve again (ops it held
	// time out on the client after OpTimeout): what must hold is that once
	// it answers, nothing acknowledged is missing.
	answers := retrying(t, 2*time.Minute)
	answers("flush", func() error { return s.Sync() })
	t.Logf("%d writes acknowledged before the stall, %d in all (%d blocks), %d failed", before, writes, len(acked), failed)
	// Writes go on after the stall: more than were in flight at SIGSTOP.
	if writes <= before+writers {
		t.Fatalf("no write completed after the OSD came back")
	}
	got := make([]byte, block)
	for off, want := range acked {
		answers("read back", func() error { _, err := s.ReadAt(got, off); return err })
		if !bytes.Equal(got, want) {
			t.Fatalf("block at %d: writer %d seq %d, acknowledged writer %d seq %d",
				off, binary.BigEndian.Uint64(got), binary.BigEndian.Uint64(got[8:]),
				binary.BigEndian.Uint64(want), binary.BigEndian.Uint64(want[8:]))
		}
	}
}

// TestClusterAway: an OSD gone longer than OpTimeout fails the I/O waiting
// on it with an error, rather than holding it forever, and I/O works again
// once the OSD is back.
func TestClusterAway(t *testing.T) {
	if testing.Short() {
		t.Skip("an OpTimeout-long outage")
	}
	tc, _, s := newImage(t, "away", "16M")
	defer s.Close()
	buf := bytes.Repeat([]byte{1}, 4096)
	if _, err := s.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	osd := tc.OSD.Process
	if err := tc.FreezeOSD(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := s.WriteAt(buf, 4096)
	waited := time.Since(start)
	if err := osd.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("write with the OSD away: %v after %s", err, waited.Round(time.Second))
	if err == nil {
		t.Fatalf("a write with the OSD stopped succeeded after %s", waited)
	}
	if waited > OpTimeout+15*time.Second {
		t.Errorf("the failed write took %s, OpTimeout is %s", waited, OpTimeout)
	}
	// Back: a write and a read succeed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = s.WriteAt(buf, 8192)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("after the OSD came back: %v", err)
	}
	got := make([]byte, 4096)
	if _, err := s.ReadAt(got, 8192); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("read after the OSD came back: %v", err)
	}
}

// retrying returns a function that runs op until it succeeds, a second
// apart, all its calls together bounded by within; it fails t on the last
// error when the time is up.
func retrying(t *testing.T, within time.Duration) func(what string, op func() error) {
	deadline := time.Now().Add(within)
	return func(what string, op func() error) {
		t.Helper()
		for {
			err := op()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v (the cluster did not answer within %s)", what, err, within)
			}
			t.Logf("%s: %v; trying again", what, err)
			time.Sleep(time.Second)
		}
	}
}
