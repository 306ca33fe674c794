// Package netsantest provides helpers for tests that run the netsan binary
// or one of its services: one build of the binary per test process, free
// loopback ports, child processes that the test owns and whose log it shows
// when it fails, and a service's Serve run until the test ends.
package netsantest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The binary is built once per test process and shared by its tests; only
// Main removes it.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

// Binary returns the path of a netsan binary built from this module's
// cmd/netsan with the test's own build tags (Ceph support or not),
// building it on the first call. Its directory is readable by
// every user, so a test may run it under another uid.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "netsan-bin-")
		if build.err == nil {
			build.err = os.Chmod(build.dir, 0o755)
		}
		if build.err == nil {
			build.bin = filepath.Join(build.dir, "netsan")
			// By import path, so it works from any package directory of the module.
			build.out, build.err = exec.Command("go", "build", "-tags", buildTags, "-o", build.bin, "github.com/netsan/netsan/cmd/netsan").CombinedOutput()
		}
	})
	if build.err != nil {
		t.Fatalf("go build ./cmd/netsan: %v\n%s", build.err, build.out)
	}
	return build.bin
}

// Main runs the tests, removes the binary Binary built, if any, and exits
// with the tests' status. A package whose tests call Binary calls it from
// TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago; network
// is "tcp" or "udp".
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// LogBuffer collects a child's output while the test reads it. The zero
// value is ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// shownTail is how much of a log a failed test prints: the end is where
// the failure is, and a whole long run's log would bury it.
const shownTail = 8 << 10

// NewLog returns an empty LogBuffer whose last 8 KiB t logs, labelled with
// name, at cleanup when t has failed. Create it before the processes that
// write to it, so that they are killed before it is shown.
func NewLog(t testing.TB, name string) *LogBuffer {
	l := &LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			s := l.String()
			if len(s) > shownTail {
				s = s[len(s)-shownTail:]
			}
			t.Logf("%s log (last %d KiB):\n%s", name, shownTail>>10, s)
		}
	})
	return l
}

// Process is a child process owned by a test.
type Process struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts cmd with its stdout and stderr going to log, and kills it
// at t's cleanup.
func Start(t testing.TB, cmd *exec.Cmd, log *LogBuffer) *Process {
	t.Helper()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Kill(t) })
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what Wait returned; valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Kill sends SIGKILL (no flush, no logout) and waits, at most 20 s, for the
// exit. A process that has already exited is left as it is.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s (pid %d) did not die after SIGKILL", filepath.Base(p.Cmd.Path), p.Cmd.Process.Pid)
	}
}

// WaitFor polls cond every 50 ms until it holds, for at most within.
func WaitFor(t TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Serve runs serve (a service's Serve method) until stop, or else t's
// cleanup, cancels its context; then it fails t when serve returns an
// error or does not return within the given time. A test calls stop to
// end the service before the test ends (a gateway that goes away).
func Serve(t testing.TB, within time.Duration, serve func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(within):
			t.Errorf("Serve did not return %s after cancel", within)
		}
	})
	t.Cleanup(stop)
	return stop
}

// FetchAll has n clients fetch at once, each into a file of its own that
// fetch writes, and checks that each got want whole. It reports every
// client that did not and returns how many did.
func FetchAll(t testing.TB, n int, want []byte, fetch func(local string) error) int {
	t.Helper()
	dir := t.TempDir()
	sum := sha256.Sum256(want)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			local := filepath.Join(dir, fmt.Sprintf("client-%d", i))
			defer os.Remove(local)
			if err := fetch(local); err != nil {
				errs[i] = err
				return
			}
			b, err := os.ReadFile(local)
			if err != nil {
				errs[i] = err
				return
			}
			if got := sha256.Sum256(b); got != sum {
				errs[i] = fmt.Errorf("%d bytes, sha256 %x, want %x", len(b), got, sum)
			}
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		} else {
			ok++
		}
	}
	t.Logf("%d of %d clients got the %d-byte file whole", ok, n, len(want))
	return ok
}

// Gather registers c in a fresh pedantic registry, which checks the
// collector's consistency, and returns what it gathers.
func Gather(t testing.TB, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
