package iscsi

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
)

// memChildEnv makes the test binary the target of TestSessionMemory: the
// value is "<dir>,<targets>".
const memChildEnv = "NETSAN_ISCSI_MEMORY_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(memChildEnv); v != "" {
		os.Exit(serveForMemory(v))
	}
	os.Exit(m.Run())
}

// memTargets is a boot storm's configuration: a target per host, each with
// its own root and its own initiator.
func memTargets(dir string, n int) Config {
	cfg := Config{Listen: []string{"127.0.0.1:0"}, MaxSessions: 2 * n}
	for i := range n {
		cfg.Targets = append(cfg.Targets, Target{
			IQN:  fmt.Sprintf("iqn.2026-11.test.mem:host%d", i),
			LUNs: []LUN{{Number: 0, Path: filepath.Join(dir, fmt.Sprintf("root%d.img", i)), Size: 64 << 20}},
			ACL:  []ACL{{Initiator: fmt.Sprintf("iqn.2026-11.test.mem:init%d", i)}},
		})
	}
	return cfg
}

// serveForMemory serves memTargets and, for each line "mem" on stdin,
// prints the heap it holds live and its goroutines' stacks, after a
// collection, and the largest live heap a collection found since the last
// line: "<live> <stacks> <peak live>".
func serveForMemory(v string) int {
	dir, ns, _ := strings.Cut(v, ",")
	n, _ := strconv.Atoi(ns)
	srv, err := New(memTargets(dir, n), zap.NewNop())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	fmt.Println(srv.ListenAddrs()[0])

	var peak atomic.Uint64
	go func() {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for ctx.Err() == nil {
			metrics.Read(s)
			if live := s[0].Value.Uint64(); live > peak.Load() {
				peak.Store(live)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(ms.HeapAlloc, ms.StackInuse, peak.Swap(0))
	}
	return 0
}

// TestSessionMemory logs in 200 sessions, each to a target of its own as a
// boot storm's nodes do, has them read as a boot does (128 KiB sequential
// runs, 4 KiB random reads, a 64 KiB write or two) all at once, and weighs
// the target's live heap and stacks per session: logged in, once its reads
// are done, and the largest live heap while they ran. Buffers are lent
// only while a command needs them, so that a thousand sessions fit in well
// under 512 MiB.
func TestSessionMemory(t *testing.T) {
	const sessions = 200
	if testing.Short() {
		t.Skip("200 sessions skipped in -short mode")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", memChildEnv, dir, sessions))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatal("the target said nothing")
	}
	addr := lines.Text()
	// measure returns the child's live heap plus stacks, and its peak
	// live heap since the last call.
	measure := func() (held, peak uint64) {
		t.Helper()
		fmt.Fprintln(stdin, "mem")
		if !lines.Scan() {
			t.Fatal("the target stopped answering")
		}
		var live, stacks uint64
		if _, err := fmt.Sscan(lines.Text(), &live, &stacks, &peak); err != nil {
			t.Fatalf("%q: %v", lines.Text(), err)
		}
		return live + stacks, peak
	}
	base, _ := measure()

	ins := make([]*iscsitest.Initiator, sessions)
	t.Cleanup(func() {
		for _, in := range ins {
			if in != nil {
				in.Close()
			}
		}
	})
	var logins errgroup.Group
	logins.SetLimit(16)
	for i := range sessions {
		logins.Go(func() error {
			in, err := iscsitest.Dial(addr)
			if err != nil {
				return err
			}
			ins[i] = in
			_, err = in.Login([6]byte{0x80, 0, 0, 0, byte(i >> 8), byte(i)}, 0, iscsitest.NormalKeys(
				fmt.Sprintf("iqn.2026-11.test.mem:init%d", i), fmt.Sprintf("iqn.2026-11.test.mem:host%d", i),
				login.KV{Key: "MaxRecvDataSegmentLength", Value: "262144"}, login.KV{Key: "ImmediateData", Value: "Yes"},
				login.KV{Key: "MaxBurstLength", Value: "262144"})...)
			in.MaxSendSegment, in.FirstBurst = 8192, 65536
			if err != nil {
				return fmt.Errorf("session %d: login: %w", i, err)
			}
			_, err = in.CommandPastUA(0, iscsitest.TUR(), nil, 0)
			return err
		})
	}
	if err := logins.Wait(); err != nil {
		t.Fatal(err)
	}
	loggedIn, _ := measure()

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, sessions)
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = bootReads(in, i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	held, peak := measure()
	perLogin := (int64(loggedIn) - int64(base)) / sessions
	perHeld := (int64(held) - int64(base)) / sessions
	perPeak := (int64(peak) - int64(base)) / sessions
	t.Logf("%d sessions, reads in %s: per session %d KiB logged in, %d KiB after its reads, %d KiB at the peak live heap",
		sessions, time.Since(start).Round(time.Millisecond), perLogin>>10, perHeld>>10, perPeak>>10)
	// Before buffers were lent only while needed, a session held 131 KiB
	// logged in, 417 KiB after its reads, and the peak was 361 KiB a
	// session: a 64 KiB read buffer and a 34 KiB reply queue each, and each
	// LU's own pool of read buffers. Now a session in flight may hold a 128
	// KiB read buffer at most, whence the bounds after its reads.
	if perLogin > 64<<10 {
		t.Errorf("a logged-in session holds %d KiB, want at most 64 KiB", perLogin>>10)
	}
	if perHeld > 160<<10 {
		t.Errorf("a session that has done its reads holds %d KiB, want at most 160 KiB", perHeld>>10)
	}
	if perPeak > 160<<10 {
		t.Errorf("the live heap peaked at %d KiB a session during the reads, want at most 160 KiB", perPeak>>10)
	}
}

// bootReads is one node's boot on session in: reads of its root, mostly
// 128 KiB sequential, some 4 KiB at random places, and a few 64 KiB writes
// each followed by a SYNCHRONIZE CACHE, one command at a time.
func bootReads(in *iscsitest.Initiator, seed int) error {
	const blocks = (64 << 20) / 512
	lba := uint32(seed * 997 % (blocks / 2))
	for i := range 24 {
		var cdb []byte
		var out []byte
		var readLen uint32
		switch {
		case i%12 == 5:
			cdb, out = iscsitest.Write10(lba, 128), make([]byte, 64<<10)
		case i%3 == 2:
			cdb, readLen = iscsitest.Read10(uint32((seed*7919+i*104729)%blocks)&^7, 8), 4<<10
		default:
			cdb, readLen = iscsitest.Read10(lba, 256), 128<<10
			lba += 256
		}
		r, err := in.Command(0, cdb, out, readLen)
		if err == nil && r.Status != 0 {
			err = fmt.Errorf("status %#x", r.Status)
		}
		if err == nil && out != nil {
			r, err = in.Command(0, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0)
		}
		if err != nil {
			return fmt.Errorf("command %d (%#x): %w", i, cdb[0], err)
		}
	}
	return nil
}
