package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// The writer test's shape: netsan is killed once block killAt is
// acknowledged and started again downFor later, and the writer writes
// writerBlocks blocks in all.
const (
	writerBlocks = 120
	killAt       = 30
	downFor      = 4 * time.Second
)

// TestWriterTargetRestart: a diskless guest writes numbered blocks with
// fsync through its boot session, which open-iscsi's iscsid has adopted;
// netsan is killed with SIGKILL mid-writes and started again on the same
// address a few seconds later, which is what a failover to another gateway
// looks like to the initiator. The writer must only stall: no failed write,
// no I/O error in the guest's kernel log, and afterwards the file system is
// clean and every acknowledged block reads back.
func TestWriterTargetRestart(t *testing.T) {
	needNetsan(t)
	golden := filepath.Join(t.TempDir(), "writer-golden.img")
	if err := lab.WriterImage(env.golden, golden, writerBlocks); err != nil {
		t.Fatal(err)
	}
	h := sanHost(t, 9)
	s := serveGolden(t, golden, []lab.NetsanHost{h}, nil, nil)
	ctx, cancel := testContext(t, bootTimeout+3*time.Minute)
	defer cancel()
	w := startWriter(t, ctx, s.Lab, h.Host, killAt)
	defer w.Stop()

	killed := time.Now()
	if err := s.netsan.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.netsan.Done()
	t.Logf("netsan killed after block %d was acknowledged, %v after QEMU started", killAt, w.Elapsed())
	select {
	case <-time.After(downFor):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	var err error
	if s.netsan, err = s.StartNetsan(ctx, env.netsan, s.inv); err != nil {
		t.Fatal(err)
	}
	down := time.Since(killed)
	t.Logf("netsan serving again %v after the kill", down.Round(100*time.Millisecond))

	run := finishWriter(t, ctx, w, writerBlocks, 1)
	gap, after := run.Stall()
	t.Logf("writer: longest stall %v (before block %d); netsan was down %v",
		gap.Round(10*time.Millisecond), after, down.Round(100*time.Millisecond))
	// No write completed while netsan was down.
	if gap < downFor {
		t.Errorf("longest stall %v, shorter than the %v netsan was down", gap, downFor)
	}

	// Read back with netsan stopped, from the root image as it stored it.
	if err := s.netsan.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	verifyWriter(t, s.roots[h.Name], run)
}

// startWriter boots h, whose root was made with lab.WriterImage, from l and
// waits until its writer has acknowledged block n.
func startWriter(t *testing.T, ctx context.Context, l *lab.Lab, h lab.Host, n int) *lab.Writer {
	t.Helper()
	w, err := l.StartWriter(ctx, machine(h, lab.BIOS))
	if err != nil {
		t.Fatal(err)
	}
	line, err := w.WaitLine(ctx, lab.MarkerBoot)
	if err != nil {
		w.Stop()
		t.Fatal(err)
	}
	checkMarker(t, line, h, "bios")
	for _, want := range []string{"phase=iscsid", "phase=start"} {
		line, err := w.WaitLine(ctx, lab.MarkerWriter+" "+want)
		if err != nil {
			w.Stop()
			t.Fatal(err)
		}
		t.Logf("%s after %v", line, w.Elapsed())
	}
	if err := w.WaitAck(ctx, n); err != nil {
		w.Stop()
		t.Fatal(err)
	}
	return w
}

// finishWriter waits for the writer to finish and checks its run: every
// block acknowledged, no failed write, no I/O error in the guest's kernel
// log, and at least failures iSCSI connection errors there: each target
// failure must have been felt, or it tested nothing.
func finishWriter(t *testing.T, ctx context.Context, w *lab.Writer, blocks, failures int) lab.WriterRun {
	t.Helper()
	run, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// iscsid's own account: the adoption, then the reconnects.
	for _, l := range strings.Split(w.Console(), "\n") {
		if strings.HasPrefix(l, "iscsid: ") {
			t.Logf("guest %s", strings.TrimSpace(l))
		}
	}
	for _, l := range run.ConnErrors() {
		t.Logf("guest kernel: %s", l)
	}
	t.Logf("writer: %d blocks acknowledged", len(run.Acks))
	if run.Failed != "" {
		t.Errorf("the writer saw a failure: %s", run.Failed)
	}
	if len(run.Acks) != blocks {
		t.Errorf("%d blocks acknowledged, want %d", len(run.Acks), blocks)
	}
	if bad := run.IOErrors(); len(bad) > 0 {
		t.Errorf("I/O errors in the guest's kernel log:\n%s", strings.Join(bad, "\n"))
	}
	if n := len(run.ConnErrors()); n < failures {
		t.Errorf("%d iSCSI connection errors in the guest's kernel log, want one for each of %d target failures: one went unnoticed", n, failures)
	}
	return run
}

// verifyWriter checks the writer's run against its root image, read once
// nothing serves it.
func verifyWriter(t *testing.T, image string, run lab.WriterRun) {
	t.Helper()
	root, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := lab.VerifyWriter(ctx, root, run); err != nil {
		t.Error(err)
	}
}
