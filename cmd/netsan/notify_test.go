package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
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

// sdMsg is one datagram to the notify socket and when it came.
type sdMsg struct {
	text string
	at   time.Time
}

// notifySocket listens where NOTIFY_SOCKET will point, as systemd does, and
// passes on each datagram.
func notifySocket(t *testing.T) (path string, msgs <-chan sdMsg) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sdMsg, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- sdMsg{string(buf[:n]), time.Now()}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return path, ch
}

// next is the next message with line in it; it fails t when none comes
// within d, and returns the messages before it.
func next(t *testing.T, msgs <-chan sdMsg, line string, d time.Duration) (msg sdMsg, before []string) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-msgs:
			if hasLine(m.text, line) {
				return m, before
			}
			before = append(before, m.text)
		case <-deadline:
			t.Fatalf("no %s within %s; got %q", line, d, before)
			return sdMsg{}, nil
		}
	}
}

func hasLine(msg, line string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// udpBound says whether a socket is bound to 127.0.0.1:port (from
// /proc/net/udp, which lists local addresses as hex, 0100007F:0045).
func udpBound(t *testing.T, port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, fmt.Appendf(nil, " 0100007F:%04X ", port))
}

// tftpAnswers sends a read request for a file that does not exist and says
// whether any answer (an ERROR packet) comes back.
func tftpAnswers(port int) error {
	// Unconnected: the answer comes from another port (the transfer's TID).
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.WriteTo([]byte("\x00\x01no-such-file\x00octet\x00"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		return err
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		return err
	}
	if n < 4 || buf[1] != 5 {
		return fmt.Errorf("answer % x, want an ERROR packet", buf[:n])
	}
	return nil
}

// TestServeNotify runs serve as systemd runs a Type=notify unit with a
// watchdog: READY=1 comes once every port answers — the moment it comes,
// HTTP and iSCSI accept connections, TFTP answers and the DHCP socket is
// bound, though the start first clones a root from a golden image —
// WATCHDOG=1 comes every half WATCHDOG_USEC, SIGHUP gives RELOADING=1 then
// READY=1, and SIGTERM STOPPING=1.
func TestServeNotify(t *testing.T) {
	dir := t.TempDir()
	bin := netsantest.Binary(t)
	httpPort, iscsiPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "tcp")
	tftpPort, dhcpPort := netsantest.FreePort(t, "udp"), netsantest.FreePort(t, "udp")
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, inventorytest.Loopback("data", httpPort, iscsiPort, "iqn.2026-11.example.test")+fmt.Sprintf(`
[tftp]
listen = "127.0.0.1:%d"
[dhcp]
listen = "127.0.0.1:%d"
subnet = "127.0.0.0/24"
range  = ["127.0.0.100", "127.0.0.199"]
[[image]]
name = "golden"
path = "golden/g.img"
`, tftpPort, dhcpPort)+nodeHost(1, `{ image = "roots/node1.img", from = "golden" }`))
	// A golden image with data to copy: the root is cloned before any
	// service starts, which puts time between the start and the ports.
	golden := filepath.Join(dir, "data/golden/g.img")
	netsantest.Disk(t, golden, 64<<20, func(w io.WriterAt) error {
		_, err := w.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<20), 0)
		return err
	})

	sock, msgs := notifySocket(t)
	cmd := exec.Command(bin, "serve", "-c", path, "--log-format", "json")
	const watchdog = 400 * time.Millisecond
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))
	p := netsantest.Start(t, cmd, netsantest.NewLog(t, "netsan"))

	readyMsg, before := next(t, msgs, "READY=1", 60*time.Second)
	ready := readyMsg.text
	// The ports answer now, not a moment later.
	var problems []string
	for _, port := range []int{httpPort, iscsiPort} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		c.Close()
	}
	if err := tftpAnswers(tftpPort); err != nil {
		problems = append(problems, "tftp: "+err.Error())
	}
	if !udpBound(t, dhcpPort) {
		problems = append(problems, fmt.Sprintf("dhcp: nothing bound to 127.0.0.1:%d", dhcpPort))
	}
	if problems != nil {
		t.Errorf("at READY=1: %s", strings.Join(problems, "; "))
	}
	if _, err := os.Stat(filepath.Join(dir, "data/roots/node1.img")); err != nil {
		t.Errorf("READY=1 before the root was cloned: %v", err)
	}
	for _, m := range before {
		if !hasLine(m, "WATCHDOG=1") {
			t.Errorf("before READY=1: %q", m)
		}
	}
	for _, want := range []string{fmt.Sprintf("http 127.0.0.1:%d", httpPort), fmt.Sprintf("iscsi 127.0.0.1:%d", iscsiPort),
		fmt.Sprintf("tftp 127.0.0.1:%d", tftpPort), fmt.Sprintf("dhcp 127.0.0.1:%d", dhcpPort)} {
		if !strings.Contains(ready, want) {
			t.Errorf("READY's STATUS lacks %q: %q", want, ready)
		}
	}

	// The watchdog: a ping every half WATCHDOG_USEC, as they come.
	var pings []time.Time
	for len(pings) < 6 {
		m, _ := next(t, msgs, "WATCHDOG=1", 2*watchdog)
		pings = append(pings, m.at)
	}
	if took := pings[5].Sub(pings[1]); took < 4*watchdog/2*8/10 || took > 4*watchdog {
		t.Errorf("4 watchdog intervals took %s, want about %s", took, 4*watchdog/2)
	}

	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading, _ := next(t, msgs, "RELOADING=1", 20*time.Second)
	if !strings.Contains(reloading.text, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading.text)
	}
	if again, _ := next(t, msgs, "READY=1", 20*time.Second); again.text != ready {
		t.Errorf("after the reload %q, want %q again", again.text, ready)
	}

	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next(t, msgs, "STOPPING=1", 20*time.Second)
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("netsan did not stop within 30 s of SIGTERM")
	}
}

// TestUnitFile: dist/netsan.service is a Type=notify unit with a watchdog,
// checks the inventory before it starts and before each reload, reloads
// with SIGHUP, and systemd-analyze verify finds nothing to say of it.
func TestUnitFile(t *testing.T) {
	b, err := os.ReadFile("../../dist/netsan.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	keys := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	const check = "/usr/local/bin/netsan check -c /etc/netsan/netsan.toml"
	for key, want := range map[string][]string{
		"Type":            {"notify"},
		"NotifyAccess":    {"main"},
		"ExecStartPre":    {check},
		"ExecStart":       {"/usr/local/bin/netsan serve -c /etc/netsan/netsan.toml"},
		"ExecReload":      {check, "/bin/kill -HUP $MAINPID"},
		"WatchdogSec":     {"30s"},
		"TimeoutStartSec": {"30min"},
	} {
		if fmt.Sprint(keys[key]) != fmt.Sprint(want) {
			t.Errorf("%s = %q, want %q", key, keys[key], want)
		}
	}
	if err := netsantest.Installed("systemd-analyze"); err != nil {
		t.Skipf("%v: the unit is not verified", err)
	}
	// verify wants the programs to exist: the built binary stands in.
	path := filepath.Join(t.TempDir(), "netsan.service")
	writeFile(t, path, strings.ReplaceAll(unit, "/usr/local/bin/netsan", netsantest.Binary(t)))
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
