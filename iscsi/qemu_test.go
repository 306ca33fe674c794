package iscsi

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestQemuImgRoundTrip copies a random image onto a LUN with QEMU's iSCSI
// driver and back again.
func TestQemuImgRoundTrip(t *testing.T) {
	need(t, "qemu-img")
	// No ACL: QEMU's URL form logs in with its default initiator name.
	cfg := oneDisk(64 << 20)
	cfg.Targets[0].ACL = nil
	ts := startServer(t, cfg)
	data := qemuImgRoundTrip(t, ts, 64<<20)
	// The backing file holds the same bytes.
	if got, err := os.ReadFile(filepath.Join(ts.dir, "disk0.img")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("backing image differs from what was written (%v)", err)
	}
}

// qemuImgRoundTrip copies size random bytes onto LUN 0 of testTarget with
// QEMU's iSCSI driver (qemu-img convert) and back, fails the test unless
// they read back the same, and returns them: the caller looks for them in
// the LUN's backing store.
func qemuImgRoundTrip(t *testing.T, ts *testServer, size int) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	url := ts.url("", testTarget, 0)
	mustRun(t, 2*time.Minute, nil, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, url)
	back := filepath.Join(dir, "back.raw")
	mustRun(t, 2*time.Minute, nil, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%s read back differs from what was written (%v)", url, err)
	}
	return data
}

// TestConcurrentWriters runs two QEMU initiators writing disjoint halves of
// one LUN at once, then checks both halves.
func TestConcurrentWriters(t *testing.T) {
	need(t, "qemu-io")
	const size = 32 << 20
	ts := startServer(t, oneDisk(size, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit}))
	image := func(init string) string {
		return "driver=iscsi,transport=tcp,portal=" + ts.addr + ",target=" + testTarget + ",lun=0,initiator-name=" + init
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	outs := make([]string, 2)
	for i, init := range []string{testInitiator, otherInit} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Many 64 KiB writes, each its own command, interleaved with the
			// other initiator's.
			args := []string{"--image-opts", image(init)}
			for off := i * size / 2; off < (i+1)*size/2; off += 1 << 20 {
				args = append(args, "-c", fmt.Sprintf("aio_write -P 0x%x %d 65536", 0xa0+i, off))
				args = append(args, "-c", fmt.Sprintf("aio_write -P 0x%x %d 983040", 0xa0+i, off+65536))
			}
			args = append(args, "-c", "aio_flush")
			outs[i], errs[i] = run(t, 2*time.Minute, nil, "qemu-io", args...)
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil || bytes.Contains([]byte(outs[i]), []byte("error")) {
			t.Fatalf("writer %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	for i := range 2 {
		out := mustRun(t, time.Minute, nil, "qemu-io", "--image-opts", image(testInitiator),
			"-c", fmt.Sprintf("read -P 0x%x %d %d", 0xa0+i, i*size/2, size/2))
		if bytes.Contains([]byte(out), []byte("Pattern verification failed")) {
			t.Errorf("half %d lost writes:\n%s", i, out)
		}
	}
	img, err := os.ReadFile(filepath.Join(ts.dir, "disk0.img"))
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range img {
		if want := byte(0xa0 + i/(size/2)); b != want {
			t.Fatalf("byte %d of the image is %#x, want %#x", i, b, want)
		}
	}
}

// metric returns the value of one of the Server's metrics for a label pair.
func metric(t *testing.T, s *Server, name, target, initiator string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() {
		s.Collect(ch)
		close(ch)
	}()
	var v float64 = -1
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range pb.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if !strings.Contains(m.Desc().String(), `"`+name+`"`) || labels["target"] != target || labels["initiator"] != initiator {
			continue
		}
		switch {
		case pb.Counter != nil:
			v = pb.Counter.GetValue()
		case pb.Gauge != nil:
			v = pb.Gauge.GetValue()
		}
	}
	return v
}

func TestMetrics(t *testing.T) {
	need(t, "qemu-io")
	ts := startServer(t, oneDisk(8<<20))
	image := "driver=iscsi,transport=tcp,portal=" + ts.addr + ",target=" + testTarget + ",lun=0,initiator-name=" + testInitiator
	mustRun(t, time.Minute, nil, "qemu-io", "--image-opts", image, "-c", "write -P 0x5a 0 1M", "-c", "read -P 0x5a 0 512k")
	if got := metric(t, ts.Server, "netsan_iscsi_write_bytes_total", testTarget, testInitiator); got < 1<<20 {
		t.Errorf("write bytes %v, want at least 1 MiB", got)
	}
	if got := metric(t, ts.Server, "netsan_iscsi_read_bytes_total", testTarget, testInitiator); got < 512<<10 {
		t.Errorf("read bytes %v, want at least 512 KiB", got)
	}
	if got := metric(t, ts.Server, "netsan_iscsi_sessions", testTarget, testInitiator); got != 0 {
		t.Errorf("sessions after qemu-io left: %v", got)
	}
	ri := dial(t, ts.addr)
	ri.loginOK()
	if got := metric(t, ts.Server, "netsan_iscsi_sessions", testTarget, testInitiator); got != 1 {
		t.Errorf("sessions with one logged in: %v", got)
	}
	ss := ts.Sessions()
	if len(ss) != 1 || ss[0].Target != testTarget || ss[0].Initiator != testInitiator || ss[0].ISID != "800000000001" {
		t.Errorf("Sessions() = %+v", ss)
	}
}
