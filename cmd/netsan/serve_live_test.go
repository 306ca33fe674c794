package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T, network string) int {
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

// syncBuffer collects a child's stderr while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startChild starts a netsan process owned by the test: killed at cleanup,
// its log shown when the test failed. exited yields Wait's result once.
func startChild(t *testing.T, cmd *exec.Cmd) (log *syncBuffer, exited chan error) {
	t.Helper()
	log = &syncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("netsan log:\n%s", log.String())
		}
	})
	return log, exited
}

// TestServeLive runs the real binary on loopback: every service answers, an
// edit adds a host that iSCSI and HTTP serve at once, a broken edit changes
// nothing, and SIGTERM stops it cleanly.
func TestServeLive(t *testing.T) {
	if _, err := exec.LookPath("iscsi-inq"); err != nil {
		t.Skip("iscsi-inq (libiscsi-bin) not installed")
	}
	dir := t.TempDir()
	bin := netsanBinary(t)
	httpPort, iscsiPort := freePort(t, "tcp"), freePort(t, "tcp")
	inv := fmt.Sprintf(`
[server]
address = "127.0.0.1"
data_dir = "data"
[tftp]
listen = "127.0.0.1:%d"
[http]
listen = "127.0.0.1:%d"
[iscsi]
listen = ["127.0.0.1:%d"]
base_iqn = "iqn.2026-11.example.test"
[[image]]
name = "golden"
path = "golden/g.img"
[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
root = { image = "roots/node1.img", from = "golden", size = "16MiB" }
`, freePort(t, "udp"), httpPort, iscsiPort)
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, inv)

	golden := bytes.Repeat([]byte("netsan golden image block\n"), 40000)
	if err := os.MkdirAll(filepath.Join(dir, "data/golden"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data/golden/g.img"), golden, 0o444); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "serve", "-c", path, "--log-format", "json")
	stderr, exited := startChild(t, cmd)

	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	get := func(p string) (int, string) {
		resp, err := http.Get(base + p)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "http up", func() bool { code, _ := get("/status"); return code == 200 })

	inq := func(host string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		iqn := "iqn.2026-11.example.test:" + host
		url := fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", iscsiPort, iqn)
		out, err := exec.CommandContext(ctx, "iscsi-inq", "-i", iqn, url).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), "DIRECT_ACCESS") {
			return fmt.Errorf("unexpected inquiry: %s", out)
		}
		return nil
	}
	if err := inq("node1"); err != nil {
		t.Fatalf("node1 inquiry: %v", err)
	}
	// node1's root was cloned from the golden image before the target opened it.
	root, err := os.ReadFile(filepath.Join(dir, "data/roots/node1.img"))
	if err != nil || len(root) != 16<<20 || !bytes.Equal(root[:len(golden)], golden) {
		t.Fatalf("node1's root is not a 16 MiB clone of the golden image (%d bytes, %v)", len(root), err)
	}
	if code, body := get("/boot/52-54-00-00-00-02.ipxe"); code != 200 || strings.Contains(body, "node2") {
		t.Fatalf("unknown MAC before the edit: %d %q", code, body)
	}
	if inq("node2") == nil {
		t.Fatal("node2 logged in before it was in the inventory")
	}

	// Good edit: node2 appears in iSCSI and HTTP without a restart.
	writeFile(t, path, inv+"[[host]]\nname = \"node2\"\nmac = \"52:54:00:00:00:02\"\nroot = { image = \"roots/node2.img\", size = \"16MiB\" }\n")
	waitFor(t, "node2's script", func() bool { _, body := get("/boot/52-54-00-00-00-02.ipxe"); return strings.Contains(body, "node2") })
	if err := inq("node2"); err != nil {
		t.Fatalf("node2 inquiry after reload: %v", err)
	}

	// Broken edit: refused with its position, node2 still served.
	writeFile(t, path, inv+"[[host]]\nname = \"node2\"\nmac = \"52:54:00:00:00:02\"\nroot = { image = \"roots/node2.img\", size = \"lots\" }\n")
	waitFor(t, "the refusal", func() bool { return strings.Contains(stderr.String(), "reload refused") })
	if !strings.Contains(stderr.String(), path+":22:37") {
		t.Errorf("refusal does not name %s:22:37", path)
	}
	if err := inq("node2"); err != nil {
		t.Fatalf("node2 lost after a refused edit: %v", err)
	}

	// SIGTERM: a clean exit, well before the test's own deadline.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for Cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("netsan did not stop within 30 s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), "netsan stopped") {
		t.Error("no 'netsan stopped' line")
	}
	if _, err := os.Stat(filepath.Join(dir, "data/roots/node2.img")); err != nil {
		t.Errorf("node2's image: %v", err)
	}
}
