// Package e2e boots real machines — QEMU guests with SeaBIOS + iPXE or OVMF —
// from netsan inside throwaway network namespaces, and checks on each
// guest's serial console that it came up from its own root LUN.
//
// The tests need root, qemu-system-x86, ovmf, ipxe-qemu, and what
// lab/mkimage.sh needs to build the golden image; they skip when any is
// missing. Guests run under software emulation, so each boot takes tens of
// seconds and is bounded by bootTimeout.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// bootTimeout bounds one boot from QEMU start to the guest's marker. A TCG
// boot takes 25–35 s alone; two cores shared by parallel guests slow it down.
const bootTimeout = 3 * time.Minute

// env is what TestMain found or built once for all tests.
var env struct {
	skip    string // why the whole suite cannot run here
	golden  string // golden image path
	netsan  string // netsan binary path
	nsErr   error  // why netsan could not be built
	tmpRoot string
}

func TestMain(m *testing.M) {
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	if err := lab.Available(); err != nil {
		env.skip = err.Error()
		return m.Run()
	}
	if err := lab.QEMUAvailable(); err != nil {
		env.skip = err.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "netsan-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	env.tmpRoot = dir

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if env.golden, err = lab.GoldenImage(ctx); err != nil {
		env.skip = "golden image: " + err.Error()
		return m.Run()
	}
	root, err := lab.RepoRoot()
	if err != nil {
		env.skip = err.Error()
		return m.Run()
	}
	env.netsan = filepath.Join(dir, "netsan")
	build := exec.CommandContext(ctx, "go", "build", "-o", env.netsan, "./cmd/netsan")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		env.nsErr = fmt.Errorf("go build ./cmd/netsan: %w: %s", err, out)
	}
	return m.Run()
}

// needLab skips the test when the machine cannot run guests.
func needLab(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// needNetsan also needs the netsan binary; NETSAN_E2E=1 turns "not built"
// into a failure instead of a skip.
func needNetsan(t *testing.T) {
	t.Helper()
	needLab(t)
	if os.Getenv("NETSAN_E2E") != "1" {
		t.Skip("NETSAN_E2E != 1: netsan end-to-end boots not enabled")
	}
	if env.nsErr != nil {
		t.Fatal(env.nsErr)
	}
}

// newLab makes a lab for t and removes it when t ends; on failure it prints
// every log and serial console the lab wrote.
func newLab(t *testing.T) *lab.Lab {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.New(ctx, dir, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
		if t.Failed() {
			dumpDir(t, dir)
		}
	})
	return l
}

func dumpDir(t *testing.T, dir string) {
	t.Helper()
	for _, pat := range []string{"*.log", "*.serial"} {
		files, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if len(b) > 64<<10 {
				b = b[len(b)-64<<10:]
			}
			t.Logf("==== %s\n%s", filepath.Base(f), b)
		}
	}
}

// testContext bounds one test step by d, and by the test binary's own
// deadline (go test -timeout) less a margin, so that a slow machine ends
// in a test failure with cleanups run rather than a panic that leaks
// QEMU processes and namespaces.
func testContext(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	deadline := time.Now().Add(d)
	if td, ok := t.Deadline(); ok && td.Add(-30*time.Second).Before(deadline) {
		deadline = td.Add(-30 * time.Second)
	}
	return context.WithDeadline(context.Background(), deadline)
}
