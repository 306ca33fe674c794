//go:build ceph

package iscsi

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/iscsi/backstore"
)

// rbdDisk is oneDisk over a new RBD image of size bytes in a cluster of
// its own, opened through Config.OpenStore as cmd/netsan opens it.
func rbdDisk(t *testing.T, size int64) (Config, *cephtest.Cluster, *ceph.Cluster) {
	t.Helper()
	tc := cephtest.Start(t, cephtest.Options{})
	c, err := ceph.Connect(ceph.Config{Conf: tc.Conf, Pool: tc.Pool}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	tc.MustRbd(t, "create", "--size", fmt.Sprintf("%dB", size), "rbd/lun")
	cfg := oneDisk(0)
	cfg.Targets[0].ACL = nil
	cfg.Targets[0].LUNs[0].Path = ceph.BackingPrefix + "rbd/lun"
	cfg.OpenStore = func(l LUN) (backstore.Store, error) {
		return ceph.OpenBacking(c, l.Path, l.Size, l.ReadOnly)
	}
	return cfg, tc, c
}

// TestConformanceRBD runs libiscsi's whole conformance suite over a LUN
// that is an RBD image: zero failures, as on a file.
func TestConformanceRBD(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	cfg, _, _ := rbdDisk(t, 64<<20)
	r := runTestCU(t, cfg, os.Getenv("NETSAN_CU_TEST"))
	t.Logf("iscsi-test-cu over RBD: %d tests, %d ran, %d passed, %d failed, %d [SKIPPED] lines", r.total, r.ran, r.passed, r.failed, r.skips)
	if r.ran == 0 || r.failed > 0 || r.passed != r.ran {
		t.Errorf("iscsi-test-cu over RBD: %d failures:\n%s", r.failed, strings.Join(failures(r.output), "\n"))
	}
}

// TestQemuImgRoundTripRBD copies a random image onto an RBD LUN with QEMU's
// iSCSI driver and back; the RBD image itself (rbd export) holds the bytes.
func TestQemuImgRoundTripRBD(t *testing.T) {
	need(t, "qemu-img")
	const size = 64 << 20
	cfg, tc, _ := rbdDisk(t, size)
	ts := startServer(t, cfg)
	data := qemuImgRoundTrip(t, ts, size)
	export := filepath.Join(t.TempDir(), "export.raw")
	tc.MustRbd(t, "export", "--no-progress", "rbd/lun", export)
	if got, _ := os.ReadFile(export); !bytes.Equal(got, data) {
		t.Fatal("rbd export of the LUN's image differs from what was written through iSCSI")
	}
}

// TestOSDStallRBD stops the cluster's only OSD (SIGSTOP) for 20 s while
// QEMU's iSCSI driver writes to an RBD LUN, then resumes it. The writes
// wait (or fail and say so): none is lost, and every write qemu-io reports
// done reads back with its own pattern. Meanwhile a session on a LUN that
// is a file is served as usual.
func TestOSDStallRBD(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s stall")
	}
	need(t, "qemu-io")
	const writes, block = 200, 64 << 10
	cfg, tc, _ := rbdDisk(t, writes*block)
	const fileTarget = testBase + ":file"
	cfg.Targets = append(cfg.Targets, Target{IQN: fileTarget, LUNs: []LUN{{Path: "file.img", Size: 8 << 20}}})
	ts := startServer(t, cfg)
	url := ts.url("", testTarget, 0)
	args := []string{"-f", "raw"}
	// 20 ms between writes spreads them over the stall: some before, some
	// in flight while the OSD is stopped, the rest after.
	for i := range writes {
		args = append(args, "-c", fmt.Sprintf("write -P %d %d %d", 1+i%250, i*block, block), "-c", "sleep 20")
	}
	out := make(chan string, 1)
	start := time.Now()
	go func() {
		o, _ := run(t, 3*time.Minute, nil, "qemu-io", append(args, url)...)
		out <- o
	}()
	time.Sleep(2 * time.Second)
	osd := tc.OSD.Process
	if err := tc.FreezeOSD(); err != nil {
		t.Fatal(err)
	}
	// Another session, on the file LUN, during the stall: a write and a
	// read, each within seconds.
	time.Sleep(5 * time.Second)
	other := time.Now()
	mustRun(t, 10*time.Second, nil, "qemu-io", "-f", "raw", "-c", "write -P 7 0 64k", "-c", "read -P 7 0 64k", ts.url("", fileTarget, 0))
	t.Logf("the file LUN answered in %s while the OSD was stopped", time.Since(other).Round(time.Millisecond))
	time.Sleep(15*time.Second - time.Since(other))
	if err := osd.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	o := <-out
	done := strings.Count(o, "wrote ")
	t.Logf("qemu-io: %d of %d writes acknowledged, in %s", done, writes, time.Since(start).Round(time.Second))
	if time.Since(start) < 20*time.Second {
		t.Fatalf("the writes did not wait for the stopped OSD: done in %s", time.Since(start))
	}
	if done == 0 {
		t.Fatalf("no write acknowledged after the OSD came back:\n%s", tail(o, 2000))
	}
	// Read back every acknowledged write (wrote N/N bytes at offset OFF).
	args = []string{"-f", "raw"}
	for _, line := range strings.Split(o, "\n") {
		var n, total, off int
		if _, err := fmt.Sscanf(line, "wrote %d/%d bytes at offset %d", &n, &total, &off); err == nil {
			args = append(args, "-c", fmt.Sprintf("read -P %d %d %d", 1+(off/block)%250, off, n))
		}
	}
	// An OSD woken from a stop can take a while to serve again: reads that
	// fail with an I/O error (not a wrong pattern) are tried again.
	var check string
	for try := 0; ; try++ {
		check, _ = run(t, 2*time.Minute, nil, "qemu-io", append(args, url)...)
		if strings.Count(check, "read ") == done || strings.Contains(check, "Pattern verification failed") || try == 3 {
			break
		}
		t.Logf("reading back: %d of %d reads done; trying again", strings.Count(check, "read "), done)
		time.Sleep(15 * time.Second)
	}
	if bad := strings.Count(check, "Pattern verification failed"); bad > 0 || strings.Count(check, "read ") != done {
		t.Fatalf("%d acknowledged writes read back wrong (%d reads done of %d):\n%s", bad, strings.Count(check, "read "), done, tail(check, 2000))
	}
}
