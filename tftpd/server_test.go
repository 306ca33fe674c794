package tftpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

const ipxeDir = inventorytest.IPXEDir

type fixture struct {
	dir, root string
	port      int
	srv       *Server
}

// hosts is a PC booting from SAN and a Pi with CHAP.
func hosts(t testing.TB) string { return inventorytest.Hosts(t, "node1", "pi1") }

// start serves a fresh tree on 127.0.0.1 at an ephemeral port.
func start(t testing.TB, log *zap.Logger) *fixture {
	t.Helper()
	return startWith(t, log, nil)
}

// startWith is start with setup, when not nil, setting the Server's fields
// before Serve.
func startWith(t testing.TB, log *zap.Logger, setup func(*Server)) *fixture {
	t.Helper()
	fx := newFixture(t, log, setup)
	netsantest.Serve(t, 30*time.Second, fx.srv.Serve)
	return fx
}

// newFixture is startWith without the Serve.
func newFixture(t testing.TB, log *zap.Logger, setup func(*Server)) *fixture {
	t.Helper()
	inv, dir := inventorytest.InstalledBootFiles(t, hosts(t))
	fx := &fixture{dir: dir, root: inv.TFTP.Root}
	srv, err := New(inv, log)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Conn = conn
	if setup != nil {
		setup(srv)
	}
	fx.srv = srv
	fx.port = conn.LocalAddr().(*net.UDPAddr).Port
	return fx
}

// loaders lists the regular files at the top of ipxe_dir.
func loaders(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(ipxeDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		// Debian's ipxe.efi and the NIC ROMs are symlinks (to /boot and qemu/).
		if st, err := os.Stat(filepath.Join(ipxeDir, e.Name())); err == nil && st.Mode().IsRegular() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no loaders in " + ipxeDir)
	}
	return names
}

func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Every loader, fetched by tftp-hpa's client (no options: 512-byte blocks),
// atftp with and without blksize, and curl with blksize 1468, arrives
// byte-identical.
func TestLoadersRealClients(t *testing.T) {
	netsantest.NeedTools(t, "tftp", "atftp", "curl")
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	port := fmt.Sprint(fx.port)
	out := t.TempDir()
	clients := map[string]func(name, local string) []string{
		"tftp-hpa": func(name, local string) []string {
			return []string{"tftp", "-m", "binary", "127.0.0.1", port, "-c", "get", name, local}
		},
		"atftp": func(name, local string) []string {
			return []string{"atftp", "-g", "-r", name, "-l", local, "127.0.0.1", port}
		},
		"atftp-blksize": func(name, local string) []string {
			return []string{"atftp", "--option", "blksize 1428", "--option", "tsize 0", "-g", "-r", name, "-l", local, "127.0.0.1", port}
		},
		"curl-blksize": func(name, local string) []string {
			return []string{"curl", "-sS", "--fail", "--tftp-blksize", "1468", "-o", local, "tftp://127.0.0.1:" + port + "/" + name}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var fetched int
	for client, argv := range clients {
		for _, name := range loaders(t) {
			want, err := os.ReadFile(filepath.Join(ipxeDir, name))
			if err != nil {
				t.Fatal(err)
			}
			local := filepath.Join(out, client+"-"+name)
			a := argv(name, local)
			msg, err := run(ctx, out, a[0], a[1:]...)
			got, rerr := os.ReadFile(local)
			if err != nil || rerr != nil || !bytes.Equal(got, want) {
				t.Errorf("%s %s: exit %v, read %v, %d bytes of %d, equal %v: %s",
					client, name, err, rerr, len(got), len(want), bytes.Equal(got, want), msg)
				continue
			}
			fetched++
		}
	}
	t.Logf("%d fetches byte-identical", fetched)
	if v := settled(t, fx.srv, "netsan_tftp_requests_total", map[string]string{"kind": "loader", "result": "ok"}, float64(fetched)); v != float64(fetched) {
		t.Errorf("netsan_tftp_requests_total{kind=loader,result=ok} = %v, want %d", v, fetched)
	}
}

func request(opcode uint16, name string, opts ...string) []byte {
	p := binary.BigEndian.AppendUint16(nil, opcode)
	for _, s := range append([]string{name, "octet"}, opts...) {
		p = append(append(p, s...), 0)
	}
	return p
}

// ask sends a read request for name from a fresh socket, closed when t
// ends, and returns the socket for the transfer's replies.
func ask(t *testing.T, port int, name string) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.WriteTo(request(1, name), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	return c
}

// sendRaw sends one request from an unconnected socket and returns the first reply.
func sendRaw(t *testing.T, port int, packet []byte) (opcode uint16, body []byte) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteTo(packet, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if op := binary.BigEndian.Uint16(buf); op != 5 {
		// Say goodbye so the server's transfer does not wait out its retries.
		e := append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 5), 0), "done\x00"...)
		c.WriteTo(e, from)
	}
	return binary.BigEndian.Uint16(buf), append([]byte(nil), buf[2:n]...)
}

func TestRefusals(t *testing.T) {
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
	for _, name := range []string{
		"../secret.txt", "/etc/passwd", "out", "missing", `..\secret.txt`, "hello.txt/../../secret.txt",
	} {
		op, body := sendRaw(t, fx.port, request(1, name))
		if op != 5 {
			t.Errorf("RRQ %q: opcode %d, want ERROR (5)", name, op)
			continue
		}
		msg := string(bytes.TrimRight(body[2:], "\x00"))
		if strings.Contains(msg, "outside") || strings.Contains(msg, fx.dir) {
			t.Errorf("RRQ %q: error message leaks: %q", name, msg)
		}
		t.Logf("RRQ %q: ERROR %d %q", name, binary.BigEndian.Uint16(body), msg)
	}
	// Write requests are refused and create nothing.
	op, body := sendRaw(t, fx.port, request(2, "new.txt"))
	if op != 5 {
		t.Errorf("WRQ: opcode %d, want ERROR (5): %q", op, body)
	}
	if _, err := os.Stat(filepath.Join(fx.root, "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WRQ created a file: %v", err)
	}
	if v := counter(t, fx.srv, "netsan_tftp_requests_total", map[string]string{"result": "write_refused"}); v != 1 {
		t.Errorf("write_refused = %v, want 1", v)
	}
	// "/etc/passwd" is root/etc/passwd: not found, not refused.
	if v := counter(t, fx.srv, "netsan_tftp_requests_total", map[string]string{"result": "refused"}); v != 4 {
		t.Errorf("refused = %v, want 4", v)
	}

	// The same through real clients.
	netsantest.NeedTools(t, "tftp", "curl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	out, _ := run(ctx, dir, "tftp", "127.0.0.1", fmt.Sprint(fx.port), "-c", "get", "../secret.txt", "x")
	if !strings.Contains(out, "Error code") {
		t.Errorf("tftp-hpa get ../secret.txt: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "x")); err == nil && len(b) > 0 {
		t.Errorf("tftp-hpa got %q", b)
	}
	os.WriteFile(filepath.Join(dir, "up.txt"), []byte("upload"), 0o644)
	out, _ = run(ctx, dir, "tftp", "127.0.0.1", fmt.Sprint(fx.port), "-c", "put", "up.txt")
	if !strings.Contains(out, "Error code") || !strings.Contains(out, "read-only") {
		t.Errorf("tftp-hpa put: %q", out)
	}
	for _, u := range []string{"/../secret.txt", "/out", "//etc/passwd"} {
		out, err := run(ctx, dir, "curl", "-sS", "--path-as-is", "-o", "-", fmt.Sprintf("tftp://127.0.0.1:%d%s", fx.port, u))
		if err == nil || strings.Contains(out, "outside the root") {
			t.Errorf("curl %s: %v %q", u, err, out)
		}
	}
}

// A name with a leading "/" is under the root, as GRUB asks for its
// "/grub/grub.cfg"; two slashes are refused, as over HTTP.
func TestRootRelativeName(t *testing.T) {
	fx := start(t, zap.NewNop())
	c := ask(t, fx.port, "/hello.txt")
	buf := make([]byte, 600)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if op := binary.BigEndian.Uint16(buf); op != 3 || string(buf[4:n]) != "hello from root\n" {
		t.Errorf("RRQ /hello.txt: opcode %d %q, want DATA (3) of hello.txt", op, buf[4:n])
	}
	c.WriteTo([]byte{0, 4, buf[2], buf[3]}, from)
	if op, body := sendRaw(t, fx.port, request(1, "//hello.txt")); op != 5 {
		t.Errorf("RRQ //hello.txt: opcode %d %q, want ERROR (5)", op, body)
	}
}

// blksize and tsize are answered in the OACK (RFC 2347/2348/2349).
func TestOptions(t *testing.T) {
	fx := start(t, zap.NewNop())
	st, err := os.Stat(filepath.Join(ipxeDir, "undionly.kpxe"))
	if err != nil {
		t.Fatal(err)
	}
	op, body := sendRaw(t, fx.port, request(1, "undionly.kpxe", "blksize", "1468", "tsize", "0"))
	if op != 6 {
		t.Fatalf("opcode %d, want OACK (6): %q", op, body)
	}
	opts := map[string]string{}
	f := bytes.Split(bytes.TrimRight(body, "\x00"), []byte{0})
	for i := 0; i+1 < len(f); i += 2 {
		opts[string(f[i])] = string(f[i+1])
	}
	if opts["blksize"] != "1468" || opts["tsize"] != fmt.Sprint(st.Size()) {
		t.Errorf("OACK %v, want blksize 1468 tsize %d", opts, st.Size())
	}
	// Generated content has its size too.
	op, body = sendRaw(t, fx.port, request(1, "boot/52-54-00-00-00-01.ipxe", "tsize", "0"))
	if op != 6 || !bytes.HasPrefix(body, []byte("tsize\x00")) || bytes.HasPrefix(body, []byte("tsize\x000")) {
		t.Errorf("script OACK: %d %q", op, body)
	}
}

// Reload changes what a name means at once.
func TestReload(t *testing.T) {
	netsantest.NeedTools(t, "curl")
	fx := start(t, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := fmt.Sprintf("tftp://127.0.0.1:%d/boot/52-54-00-00-00-01.ipxe", fx.port)
	out, err := run(ctx, "", "curl", "-sS", "--fail", url)
	if err != nil || !strings.HasPrefix(out, "#!ipxe\n") || !strings.Contains(out, "node1") {
		t.Fatalf("before: %v %q", err, out)
	}
	if err := fx.srv.Reload(inventorytest.BootFiles(t, fx.dir, ipxeDir, strings.Replace(hosts(t), `name = "node1"`, `name = "node9"`, 1))); err != nil {
		t.Fatal(err)
	}
	out, err = run(ctx, "", "curl", "-sS", "--fail", url)
	if err != nil || !strings.Contains(out, "node9") || strings.Contains(out, "node1") {
		t.Errorf("after: %v %q", err, out)
	}
}

// 50 clients fetch a 16 MiB file at once; each gets it whole.
func TestManyClients(t *testing.T) {
	netsantest.NeedTools(t, "curl")
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(filepath.Join(fx.root, "big.img"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ok := netsantest.FetchAll(t, 50, big, func(local string) error {
		msg, err := run(ctx, filepath.Dir(local), "curl", "-sS", "--fail", "--tftp-blksize", "1468", "-o", local,
			fmt.Sprintf("tftp://127.0.0.1:%d/big.img", fx.port))
		if err != nil {
			return fmt.Errorf("curl: %v: %s", err, msg)
		}
		return nil
	})
	if v := settled(t, fx.srv, "netsan_tftp_sent_bytes_total", map[string]string{"kind": "file"}, float64(ok*len(big))); v != float64(ok*len(big)) {
		t.Errorf("netsan_tftp_sent_bytes_total{kind=file} = %v, want %d", v, ok*len(big))
	}
}

// settled reads a counter until it equals want, for at most 5 s: a client
// has its last block before the server's transfer returns and counts it.
func settled(t testing.TB, c prometheus.Collector, name string, labels map[string]string, want float64) float64 {
	t.Helper()
	var v float64
	for range 500 {
		if v = counter(t, c, name, labels); v == want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return v
}

// counter sums the samples of a counter (or gauge) family whose labels include want.
func counter(t testing.TB, c prometheus.Collector, name string, want map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, mf := range netsantest.Gather(t, c) {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if matches(m, want) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.Label {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// A missing file is logged at Info (clients probe optional names on every
// boot: shim its fallback and MOK manager, GRUB its per-machine config), a
// name outside the root at Warn.
func TestRefusalLevels(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	fx := start(t, zap.New(core))
	for _, name := range []string{"fbx64.efi", "../secret.txt"} {
		if op, _ := sendRaw(t, fx.port, request(1, name)); op != 5 {
			t.Fatalf("RRQ %q: opcode %d, want ERROR (5)", name, op)
		}
	}
	want := map[string]zapcore.Level{"not_found": zap.InfoLevel, "refused": zap.WarnLevel}
	for _, e := range logs.FilterMessage("read refused").All() {
		result, _ := e.ContextMap()["result"].(string)
		if lvl, ok := want[result]; !ok || e.Level != lvl {
			t.Errorf("%q logged at %v, want %v", result, e.Level, want[result])
		}
		delete(want, result)
	}
	if len(want) != 0 {
		t.Errorf("no log line for %v", want)
	}
}

// A client that asks for a file and then stops acknowledging does not hold
// shutdown for the ~30 s of pin/tftp's retransmissions (6 × the 5 s
// Timeout): Serve returns within a Timeout of the cancel, and the log names
// the cut transfer. A transfer still acknowledged is cut at its next block,
// and its client told why.
func TestShutdownCutsStalledTransfer(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	fx := newFixture(t, zap.New(core), nil)
	if err := os.WriteFile(filepath.Join(fx.root, "big.img"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- fx.srv.Serve(ctx) }()

	// A slow but live client: an ACK every 10 ms, 2,048 blocks.
	slow := ask(t, fx.port, "big.img")
	blocks, told := make(chan uint16, 4096), make(chan string, 1)
	go func() {
		defer close(blocks)
		slow.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 1024)
		for {
			n, from, err := slow.ReadFrom(buf)
			if err != nil {
				return
			}
			switch binary.BigEndian.Uint16(buf) {
			case 3:
				blocks <- binary.BigEndian.Uint16(buf[2:])
				time.Sleep(10 * time.Millisecond)
				slow.WriteTo(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 4), binary.BigEndian.Uint16(buf[2:])), from)
			case 5:
				told <- string(bytes.TrimRight(buf[4:n], "\x00"))
				return
			}
		}
	}()
	for range 5 {
		if _, ok := <-blocks; !ok {
			t.Fatal("the slow client's transfer did not start")
		}
	}

	c := ask(t, fx.port, "hello.txt")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	if n, _, err := c.ReadFrom(buf); err != nil || binary.BigEndian.Uint16(buf) != 3 {
		t.Fatalf("first block: %v %q", err, buf[:n])
	}
	// No ACK: the server waits and retransmits.
	begin := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still waiting on the stalled transfer 20 s after cancel")
	}
	took := time.Since(begin)
	t.Logf("Serve returned %s after cancel", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("Serve returned %s after cancel, want within 10 s", took)
	}
	select {
	case msg := <-told:
		if msg != "server shutting down" {
			t.Errorf("the slow client was told %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Error("the slow client got no ERROR at shutdown")
	}
	cut := logs.FilterMessage("transfer cut at shutdown").All()
	if len(cut) != 2 {
		t.Fatalf("%d \"transfer cut at shutdown\" lines, want 2: %v", len(cut), logs.All())
	}
	for _, e := range cut {
		f := e.ContextMap()
		sent, _ := f["bytes"].(int64)
		switch {
		case e.Level != zap.WarnLevel || f["ip"] != "127.0.0.1":
			t.Errorf("cut logged as %s %v, want WARN with ip 127.0.0.1", e.Level, f)
		case f["file"] == "hello.txt" && sent != int64(len("hello from root\n")):
			t.Errorf("stalled transfer cut after %d bytes, want %d", sent, len("hello from root\n"))
		case f["file"] == "big.img" && (sent < 5*512 || sent >= 1<<20):
			t.Errorf("slow transfer cut after %d bytes, want some of its 1 MiB", sent)
		case f["file"] != "hello.txt" && f["file"] != "big.img":
			t.Errorf("cut logged for %v", f["file"])
		}
	}
	if v := counter(t, fx.srv, "netsan_tftp_requests_total", map[string]string{"result": "cut"}); v != 2 {
		t.Errorf("requests with result cut = %v, want 2", v)
	}
}

// Serve says when it stops, and what it was serving, in one INFO line.
func TestStoppedLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	fx := newFixture(t, zap.New(core), nil)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- fx.srv.Serve(ctx) }()
	if op, body := sendRaw(t, fx.port, request(1, "hello.txt")); op != 3 {
		t.Fatalf("opcode %d %q, want DATA", op, body)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	stops := logs.FilterMessage("stopped").All()
	if len(stops) != 1 {
		t.Fatalf("%d \"stopped\" lines, want 1: %v", len(stops), logs.All())
	}
	f := stops[0].ContextMap()
	if stops[0].Level != zap.InfoLevel || f["addr"] != fmt.Sprintf("127.0.0.1:%d", fx.port) || f["root"] != fx.root || f["cut"] != int64(0) {
		t.Errorf("stop logged as %s %v, want INFO with addr 127.0.0.1:%d, root %s, 0 cut", stops[0].Level, f, fx.port, fx.root)
	}
}

// Beyond MaxTransfers a request gets an ERROR at once; the slot frees when
// a transfer ends.
func TestMaxTransfers(t *testing.T) {
	fx := startWith(t, zap.NewNop(), func(s *Server) { s.MaxTransfers = 1 })
	c := ask(t, fx.port, "hello.txt")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	n, tid, err := c.ReadFrom(buf)
	if err != nil || binary.BigEndian.Uint16(buf) != 3 || string(buf[4:n]) != "hello from root\n" {
		t.Fatalf("first transfer: %v %q", err, buf[:n])
	}
	// Its last block is unacknowledged: the transfer holds the only slot.
	op, body := sendRaw(t, fx.port, request(1, "hello.txt"))
	if op != 5 || !bytes.Contains(body, []byte("busy")) {
		t.Errorf("second transfer: opcode %d %q, want ERROR busy", op, body)
	}
	ack := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 4), 1)
	if _, err := c.WriteTo(ack, tid); err != nil {
		t.Fatal(err)
	}
	if v := settled(t, fx.srv, "netsan_tftp_transfers_active", nil, 0); v != 0 {
		t.Fatalf("first transfer not done: %v active", v)
	}
	if op, body := sendRaw(t, fx.port, request(1, "hello.txt")); op != 3 {
		t.Errorf("after the first ended: opcode %d %q, want DATA", op, body)
	}
	if v := counter(t, fx.srv, "netsan_tftp_requests_total", map[string]string{"result": "busy"}); v != 1 {
		t.Errorf("busy = %v, want 1", v)
	}
}

// A Raspberry Pi's requests carry its serial: its own files first, then the
// shared ones, and a generated cmdline.txt that logs in to its root target
// (with its CHAP secret: only to the machine the MACFinder says is the Pi).
func TestPiPrefix(t *testing.T) {
	netsantest.NeedTools(t, "atftp")
	asked := make(chan [2]netip.Addr, 4)
	fx := startWith(t, zap.NewNop(), func(s *Server) {
		s.SetMACFinder(macFinder(func(ip, local netip.Addr) (net.HardwareAddr, error) {
			asked <- [2]netip.Addr{ip, local}
			return net.ParseMAC("dc:a6:32:00:00:01")
		}))
	})
	if err := os.MkdirAll(filepath.Join(fx.root, "9ffefde1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fx.root, "9ffefde1", "config.txt"), []byte("pi1 config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	for name, want := range map[string]string{
		"9ffefde1/config.txt": "pi1 config\n",
		"9ffefde1/hello.txt":  "hello from root\n",
	} {
		local := filepath.Join(dir, "out")
		msg, err := run(ctx, dir, "atftp", "--option", "blksize 1468", "-g", "-r", name, "-l", local, "127.0.0.1", fmt.Sprint(fx.port))
		got, _ := os.ReadFile(local)
		if err != nil || string(got) != want {
			t.Errorf("%s: %v %q, want %q: %s", name, err, got, want, msg)
		}
	}
	local := filepath.Join(dir, "cmdline.txt")
	msg, err := run(ctx, dir, "atftp", "-g", "-r", "9ffefde1/cmdline.txt", "-l", local, "127.0.0.1", fmt.Sprint(fx.port))
	got, _ := os.ReadFile(local)
	for _, w := range []string{"iscsi_target_name=iqn.2026-11.example.lab:pi1 ", "iscsi_target_ip=198.18.0.1 ",
		"iscsi_target_port=3260 ", "iscsi_username=pi1 iscsi_password=pi1-root-secret-c0ffee "} {
		if err != nil || !strings.Contains(string(got), w) {
			t.Errorf("cmdline.txt: %v %q lacks %q: %s", err, got, w, msg)
		}
	}
	select {
	case a := <-asked:
		if a[0].String() != "127.0.0.1" || a[1].String() != "127.0.0.1" {
			t.Errorf("MACFinder asked about %s, arrived at %s; want 127.0.0.1 at 127.0.0.1", a[0], a[1])
		}
	default:
		t.Error("the MACFinder was not asked who wants cmdline.txt")
	}
}

// macFinder is a bootmenu.MACFinder from a func.
type macFinder func(ip, local netip.Addr) (net.HardwareAddr, error)

func (f macFinder) MACOf(ip, local netip.Addr) (net.HardwareAddr, error) { return f(ip, local) }

// Without a MACFinder a file with a secret goes to nobody.
func TestSecretWithoutMACFinder(t *testing.T) {
	netsantest.NeedTools(t, "atftp")
	fx := start(t, zap.NewNop())
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	local := filepath.Join(dir, "cmdline.txt")
	msg, err := run(ctx, dir, "atftp", "-g", "-r", "9ffefde1/cmdline.txt", "-l", local, "127.0.0.1", fmt.Sprint(fx.port))
	got, _ := os.ReadFile(local)
	if err == nil || strings.Contains(string(got), "secret") || !strings.Contains(msg, "access violation") {
		t.Errorf("cmdline.txt with a CHAP secret, no MACFinder: %v %q: %s", err, got, msg)
	}
}
