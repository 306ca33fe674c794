package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// TestServeLive runs the real binary on loopback: every service answers, an
// edit adds a host that iSCSI and HTTP serve at once, a broken edit changes
// nothing, and SIGTERM stops it cleanly.
func TestServeLive(t *testing.T) {
	netsantest.NeedTools(t, "iscsi-inq")
	dir := t.TempDir()
	bin := netsantest.Binary(t)
	httpPort, iscsiPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "tcp")
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
`, netsantest.FreePort(t, "udp"), httpPort, iscsiPort) + nodeHost(1, `{ image = "roots/node1.img", from = "golden", size = "16MiB" }`)
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, inv)

	golden := bytes.Repeat([]byte("netsan golden image block\n"), 40000)
	if err := os.MkdirAll(filepath.Join(dir, "data/golden"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data/golden/g.img"), golden, 0o444); err != nil {
		t.Fatal(err)
	}

	log := netsantest.NewLog(t, "netsan")
	p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)

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
	netsantest.WaitFor(t, "http up", 20*time.Second, func() bool { code, _ := get("/status"); return code == 200 })

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
	writeFile(t, path, inv+nodeHost(2, `{ image = "roots/node2.img", size = "16MiB" }`))
	netsantest.WaitFor(t, "node2's script", 20*time.Second, func() bool { _, body := get("/boot/52-54-00-00-00-02.ipxe"); return strings.Contains(body, "node2") })
	if err := inq("node2"); err != nil {
		t.Fatalf("node2 inquiry after reload: %v", err)
	}

	// Broken edit: refused with its position, node2 still served.
	writeFile(t, path, inv+nodeHost(2, `{ image = "roots/node2.img", size = "lots" }`))
	netsantest.WaitFor(t, "the refusal", 20*time.Second, func() bool { return strings.Contains(log.String(), "reload refused") })
	if !strings.Contains(log.String(), path+":22:37") {
		t.Errorf("refusal does not name %s:22:37", path)
	}
	if err := inq("node2"); err != nil {
		t.Fatalf("node2 lost after a refused edit: %v", err)
	}

	// SIGTERM: a clean exit, well before the test's own deadline.
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("netsan did not stop within 30 s of SIGTERM")
	}
	if !strings.Contains(log.String(), "netsan stopped") {
		t.Error("no 'netsan stopped' line")
	}
	if _, err := os.Stat(filepath.Join(dir, "data/roots/node2.img")); err != nil {
		t.Errorf("node2's image: %v", err)
	}
}

// TestImageResetLive resets a host's root while QEMU holds an iSCSI session
// on it: refused without --force; with it the session is logged out, the
// root is a fresh clone again and the target serves the new file.
func TestImageResetLive(t *testing.T) {
	netsantest.NeedTools(t, "qemu-io", "iscsi-inq")
	bin := netsantest.Binary(t)
	dir := t.TempDir()
	httpPort, iscsiPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "tcp")
	const iqn = "iqn.2026-11.example.test:node1"
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, inventorytest.Loopback("data", httpPort, iscsiPort, "iqn.2026-11.example.test")+
		"[[image]]\nname = \"golden\"\npath = \"golden/g.img\"\n"+nodeHost(1, `{ image = "roots/node1.img", from = "golden" }`))
	golden := bytes.Repeat([]byte{0x5a}, 1<<20)
	if err := os.MkdirAll(filepath.Join(dir, "data/golden"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data/golden/g.img"), golden, 0o444); err != nil {
		t.Fatal(err)
	}
	netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), netsantest.NewLog(t, "netsan"))
	url := fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", iscsiPort, iqn)
	netsantest.WaitFor(t, "iSCSI up", 20*time.Second, func() bool { return exec.Command("iscsi-inq", "-i", iqn, url).Run() == nil })

	// A live session that dirties the root: qemu-io writes, then waits for
	// more commands on its stdin.
	opts := fmt.Sprintf("driver=iscsi,transport=tcp,portal=127.0.0.1:%d,target=%s,lun=0,initiator-name=%s", iscsiPort, iqn, iqn)
	liveWrite(t, nil, opts, "write -f -P 0x11 0 64k")
	root := filepath.Join(dir, "data/roots/node1.img")
	if b, _ := os.ReadFile(root); len(b) < 1 || b[0] != 0x11 {
		t.Fatal("the write did not reach the root image")
	}

	reset := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(append([]string{"image", "reset", "--yes", "-c", path}, args...), &out, &out)
		return code, out.String()
	}
	if code, out := reset("node1"); code == 0 || !strings.Contains(out, "127.0.0.1:") {
		t.Fatalf("reset with a live session: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(root); b[0] != 0x11 {
		t.Fatal("a refused reset changed the root")
	}
	if code, out := reset("--force", "node1"); code != 0 {
		t.Fatalf("reset --force: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(root); !bytes.Equal(b, golden) {
		t.Fatal("after reset --force the root is not the golden image")
	}
	// The target serves the new file: a fresh session reads the golden bytes.
	out, err := exec.Command("qemu-io", "--image-opts", opts, "-c", "read -P 0x5a 0 64k").CombinedOutput()
	if err != nil || strings.Contains(string(out), "Pattern verification failed") {
		t.Fatalf("read after reset: %v\n%s", err, out)
	}
}

// liveWrite runs qemu-io on the LUN opts names, has it write (cmd, 64 KiB)
// and leaves it logged in, waiting for more commands, until the test ends:
// a live session. in, when set, is what runs it ("ip netns exec NS").
func liveWrite(t *testing.T, in []string, opts, cmd string) {
	t.Helper()
	args := append(in, "qemu-io", "--image-opts", opts)
	qio := exec.Command(args[0], args[1:]...)
	stdin, err := qio.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var qout netsantest.LogBuffer
	qio.Stdout, qio.Stderr = &qout, &qout
	if err := qio.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = qio.Process.Kill(); _ = qio.Wait() })
	if _, err := io.WriteString(stdin, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	netsantest.WaitFor(t, "qemu-io's write", 20*time.Second, func() bool { return strings.Contains(qout.String(), "wrote 65536/65536") })
}

// TestServeLogsSignals: the real binary logs which signal arrived, at INFO:
// SIGHUP reloads, SIGTERM and SIGINT stop it.
func TestServeLogsSignals(t *testing.T) {
	bin := netsantest.Binary(t)
	for _, stopSig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		path := loopbackInventory(t, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", netsantest.FreePort(t, "tcp")))
		log := netsantest.NewLog(t, "netsan")
		p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)
		netsantest.WaitFor(t, "netsan starting", 20*time.Second, func() bool { return strings.Contains(log.String(), "netsan starting") })

		if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		netsantest.WaitFor(t, "the SIGHUP line", 20*time.Second, func() bool { return signalLogged(log.String(), "SIGHUP", "reload") })
		if err := p.Cmd.Process.Signal(stopSig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("netsan did not stop within 20 s of %s", stopSig)
		}
		name := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT"}[stopSig]
		if !signalLogged(log.String(), name, "stop") {
			t.Errorf("no INFO \"signal received\" line with signal %s, op stop:\n%s", name, log)
		}
	}
}

// TestServeStopsDespiteStalledTFTP: SIGTERM while a TFTP client has
// stopped acknowledging does not wait out pin/tftp's retransmissions
// (about 30 s): netsan exits within a few seconds and logs the transfer
// it cut.
func TestServeStopsDespiteStalledTFTP(t *testing.T) {
	bin := netsantest.Binary(t)
	port := netsantest.FreePort(t, "udp")
	path := loopbackInventory(t, fmt.Sprintf("[tftp]\nlisten = \"127.0.0.1:%d\"\nroot = \"tftp\"\n", port))
	root := filepath.Join(filepath.Dir(path), "tftp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "big.img"), strings.Repeat("netsan", 20000))
	log := netsantest.NewLog(t, "netsan")
	p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)
	netsantest.WaitFor(t, "netsan starting", 20*time.Second, func() bool { return strings.Contains(log.String(), "netsan starting") })

	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	rrq := []byte("\x00\x01big.img\x00octet\x00")
	buf := make([]byte, 1024)
	// The first block says the transfer runs; it is never acknowledged.
	netsantest.WaitFor(t, "the first block of big.img", 20*time.Second, func() bool {
		c.WriteTo(rrq, server)
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := c.ReadFrom(buf)
		return err == nil && n > 4 && buf[0] == 0 && buf[1] == 3
	})
	begin := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("netsan still running 15 s after SIGTERM with a stalled TFTP transfer:\n%s", log)
	}
	t.Logf("netsan exited %s after SIGTERM", time.Since(begin).Round(time.Millisecond))
	if err := p.Err(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(log.String(), `"msg":"transfer cut at shutdown"`) || !strings.Contains(log.String(), `"file":"big.img"`) {
		t.Errorf("no WARN naming the cut transfer of big.img:\n%s", log)
	}
}

// signalLogged reports whether log (JSON lines) has the INFO line that says
// signal arrived and what netsan does about it.
func signalLogged(log, signal, op string) bool {
	for _, line := range strings.Split(log, "\n") {
		var l struct{ Level, Msg, Signal, Op string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "info" && l.Msg == "signal received" && l.Signal == signal && l.Op == op {
			return true
		}
	}
	return false
}

// loopbackInventory writes an inventory for a server on 127.0.0.1 with its
// data in the file's directory, the sections given in body, and returns its path.
func loopbackInventory(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netsan.toml")
	writeFile(t, path, "[server]\naddress = \"127.0.0.1\"\ndata_dir = \"data\"\n"+body)
	return path
}

// nodeHost is the [[host]] stanza of host nodeN, MAC 52:54:00:00:00:NN,
// with root.
func nodeHost(n int, root string) string {
	return fmt.Sprintf("[[host]]\nname = \"node%d\"\nmac = \"52:54:00:00:00:%02x\"\nroot = %s\n", n, n, root)
}

// TestServeWarnsIPXEDir: serve names a missing ipxe_dir and the loaders it
// lacks in a WARN at start.
func TestServeWarnsIPXEDir(t *testing.T) {
	bin := netsantest.Binary(t)
	path := loopbackInventory(t, fmt.Sprintf("[tftp]\nlisten = \"127.0.0.1:%d\"\nipxe_dir = \"no-ipxe-here\"\n", netsantest.FreePort(t, "udp")))
	ipxe := filepath.Join(filepath.Dir(path), "no-ipxe-here")
	log := netsantest.NewLog(t, "netsan")
	p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)
	netsantest.WaitFor(t, "the ipxe_dir warning", 20*time.Second, func() bool {
		return strings.Contains(log.String(), `"level":"warn","ts"`) && strings.Contains(log.String(), `"msg":"ipxe_dir does not exist: PXE clients of these architectures get no iPXE loader","ipxe_dir":"`+ipxe+`","missing":["undionly.kpxe (x86 BIOS)","ipxe.efi or snponly.efi (x86-64 UEFI)"]`)
	})
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
}
