//go:build ceph

package ceph

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkImageRead reads 4 KiB blocks at random offsets at queue depth 32
// through the store, as an iSCSI LU does, and reports `rbd bench` at the
// same size, depth and pattern on a twin image as the cluster's ceiling:
// the store alone, without the iSCSI layer, against librbd's own client.
//
//	go test -tags ceph,pacific -run '^$' -bench ImageRead -benchtime 60000x ./ceph/
func BenchmarkImageRead(b *testing.B) {
	const size, block, depth = 256 << 20, 4096, 32
	tc, c := connect(b)
	for _, img := range []string{"bench", "ceiling"} {
		tc.MustRbd(b, "create", "--size", strconv.Itoa(size>>20), "rbd/"+img)
		tc.MustRbd(b, "bench", "--io-type", "write", "--io-size", "4M", "--io-threads", "4",
			"--io-total", strconv.Itoa(size), "--io-pattern", "seq", "rbd/"+img)
	}
	s := open(b, c, "bench", false)
	defer s.Close()

	b.ResetTimer()
	start, cpu := time.Now(), usage(syscall.RUSAGE_SELF)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for g := range depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, block)
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				mu.Lock()
				if next == b.N {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				if _, err := s.ReadAt(buf, r.Int64N(size/block)*block); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	ops := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(ops, "ops/s")
	cpu.since(b, "", usage(syscall.RUSAGE_SELF), b.N)
	if b.N < 1000 {
		return // the probe run: too short to compare
	}

	cpu = usage(syscall.RUSAGE_CHILDREN)
	out := tc.MustRbd(b, "bench", "--io-type", "read", "--io-size", strconv.Itoa(block), "--io-threads", strconv.Itoa(depth),
		"--io-total", strconv.Itoa(min(size, b.N*block)), "--io-pattern", "rand", "rbd/ceiling")
	m := regexp.MustCompile(`elapsed:\s+\S+\s+ops:\s+\d+\s+ops/sec:\s+([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("rbd bench printed no total: %s", out)
	}
	ceiling, _ := strconv.ParseFloat(m[1], 64)
	cpu.since(b, "rbd-bench-", usage(syscall.RUSAGE_CHILDREN), min(size/block, b.N))
	b.ReportMetric(ceiling, "rbd-bench-ops/s")
	b.ReportMetric(ops/ceiling, "of-rbd-bench")
}

// rusage is what a process (RUSAGE_SELF: every thread, librbd's too) or
// its children that have exited used: CPU time, and how often its threads
// gave up the CPU (each a trip through the scheduler, costly in a VM).
type rusage struct {
	cpu      time.Duration
	switches int64
}

func usage(who int) rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return rusage{}
	}
	return rusage{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw}
}

// since reports the CPU time and context switches per operation from u
// to now over ops operations.
func (u rusage) since(b *testing.B, prefix string, now rusage, ops int) {
	b.ReportMetric(float64((now.cpu-u.cpu).Microseconds())/float64(ops), prefix+"cpu-µs/op")
	b.ReportMetric(float64(now.switches-u.switches)/float64(ops), prefix+"switches/op")
}
