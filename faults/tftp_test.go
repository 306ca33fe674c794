package faults

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// TFTP opcodes (RFC 1350).
const (
	tftpRRQ   = 1
	tftpDATA  = 3
	tftpACK   = 4
	tftpERROR = 5
)

func rrq(name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, tftpRRQ)
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, "octet"...)
	return append(b, 0)
}

// tftpError is an ERROR packet a client received.
type tftpError struct {
	code uint16
	msg  string
}

func (e *tftpError) Error() string { return fmt.Sprintf("TFTP error %d: %s", e.code, e.msg) }

// tftpGet fetches name with 512-byte blocks, acknowledging each: a
// well-behaved client that repeats its last packet when unanswered.
func tftpGet(server, name string) ([]byte, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	srv, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	// last is what to repeat when the answer does not come: the RRQ (lost
	// in a burst that overflowed the server's socket), later the last ACK.
	last, to := rrq(name), net.Addr(srv)
	var out []byte
	buf := make([]byte, 1024)
	for want := uint16(1); ; want++ {
		var n int
		var from net.Addr
		for try := 0; ; try++ {
			if _, err := c.WriteTo(last, to); err != nil {
				return out, err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err = c.ReadFrom(buf)
			if err == nil || !isTimeout(err) || try == 20 {
				break
			}
		}
		if err != nil {
			return out, fmt.Errorf("block %d: %w", want, err)
		}
		if n < 4 {
			return out, fmt.Errorf("short packet of %d bytes", n)
		}
		switch binary.BigEndian.Uint16(buf) {
		case tftpERROR:
			return out, &tftpError{binary.BigEndian.Uint16(buf[2:]), strings.TrimRight(string(buf[4:n]), "\x00")}
		case tftpDATA:
			if blk := binary.BigEndian.Uint16(buf[2:]); blk != want {
				return out, fmt.Errorf("block %d, want %d", blk, want)
			}
			out = append(out, buf[4:n]...)
			last = binary.BigEndian.AppendUint16(nil, tftpACK)
			last = binary.BigEndian.AppendUint16(last, want)
			to = from
			if n-4 < 512 {
				_, err := c.WriteTo(last, to)
				return out, err
			}
		default:
			return out, fmt.Errorf("opcode %d", binary.BigEndian.Uint16(buf))
		}
	}
}

// TestTFTPRequestStorm: 1,100 clients ask for a 1 MiB file at once and
// never acknowledge, holding every transfer open; then 300 well-behaved
// clients fetch 100 different names at once (files, per-host scripts,
// missing names, escapes). The number of transfers is bounded (the rest
// get "busy"), every abandoned transfer ends by itself, goroutines and
// descriptors come back to their baseline, and curl fetches a file.
func TestTFTPRequestStorm(t *testing.T) {
	t.Parallel()
	netsantest.NeedTools(t, "curl")
	dir := t.TempDir()
	root := filepath.Join(dir, "tftp")
	ipxe := filepath.Join(dir, "ipxe")
	files, tree := map[string][]byte{}, map[string]string{} // by base name, by path under dir
	add := func(path string, size int) {
		b := make([]byte, size)
		rand.Read(b)
		files[filepath.Base(path)], tree[path] = b, string(b)
	}
	add("tftp/big.bin", 1<<20)
	add("ipxe/undionly.kpxe", 70_000)
	for i := range 40 {
		add(fmt.Sprintf("tftp/f%02d.bin", i), 100+i*97)
	}
	inventorytest.WriteFiles(t, dir, tree)
	httpPort, tftpPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "udp")
	path := writeInventory(t, dir, fmt.Sprintf(`
[server]
address = "127.0.0.1"
data_dir = "data"
[tftp]
listen = "127.0.0.1:%d"
root = %q
ipxe_dir = %q
[http]
listen = "127.0.0.1:%d"
[iscsi]
enabled = false
base_iqn = %q
[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
boot = "menu"
`, tftpPort, root, ipxe, httpPort, testBase))
	n := startNetsan(t, path, "", fmt.Sprintf("http://127.0.0.1:%d", httpPort))
	server := fmt.Sprintf("127.0.0.1:%d", tftpPort)
	if got, err := tftpGet(server, "f01.bin"); err != nil || !bytes.Equal(got, files["f01.bin"]) {
		t.Fatalf("first fetch: %v", err)
	}
	base := n.baseline()

	// 1,100 requests that are never acknowledged.
	const hold, bound = 1100, 1024
	held := holdTransfers(t, server, "big.bin", hold)
	u := n.usage()
	m := n.mustMetrics()
	t.Logf("%d unacknowledged requests: %d DATA, %d busy, %d other; active gauge %v; {%v}",
		hold, held.data, held.busy, held.other, m["netsan_tftp_transfers_active"], u)
	if held.data > bound || held.data+held.busy != hold || held.busy == 0 {
		t.Fatalf("bound of %d transfers: %d DATA, %d busy, %d unanswered", bound, held.data, held.busy, held.other)
	}
	if m["netsan_tftp_transfers_active"] > bound {
		t.Fatalf("%v transfers active, bound %d", m["netsan_tftp_transfers_active"], bound)
	}
	held.release()

	// The abandoned transfers time out by themselves (pin/tftp: 5 tries of 5 s).
	netsantest.WaitFor(t, "abandoned transfers to end", 90*time.Second, func() bool {
		m, err := n.metrics()
		return err == nil && m["netsan_tftp_transfers_active"] == 0
	})

	// 300 well-behaved clients, 100 names between them, all at once.
	cases := []tftpCase{
		{"big.bin", files["big.bin"]}, {"undionly.kpxe", files["undionly.kpxe"]},
		{"boot/52-54-00-00-00-01.ipxe", []byte("#!ipxe")},
		{"../../etc/passwd", nil}, {"/etc/passwd", nil}, {"boot/../../x", nil},
	}
	for i := range 40 {
		name := fmt.Sprintf("f%02d.bin", i)
		cases = append(cases, tftpCase{name, files[name]})
	}
	for i := len(cases); i < 100; i++ {
		cases = append(cases, tftpCase{fmt.Sprintf("missing-%02d.bin", i), nil})
	}
	const clients = 300
	var wg sync.WaitGroup
	var ok, refused, bad atomic.Int32
	for i := range clients {
		wg.Go(func() {
			c := cases[i%len(cases)]
			switch err := c.check(server); {
			case err != nil:
				t.Error(err)
				bad.Add(1)
			case c.want == nil:
				refused.Add(1)
			default:
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d concurrent clients: %d transfers complete and correct, %d refused as they should be, %d wrong",
		clients, ok.Load(), refused.Load(), bad.Load())

	after := n.settle(base, 45*time.Second)
	t.Logf("base {%v}; after {%v}", base, after)
	out, err := run(30*time.Second, nil, "curl", "-sS", "--max-time", "20", "-o", "-", fmt.Sprintf("tftp://%s/f07.bin", server))
	if err != nil || out != string(files["f07.bin"]) {
		t.Fatalf("curl tftp:// after the storm: %v (%d bytes)", err, len(out))
	}
	if !n.alive() {
		t.Fatal("netsan exited")
	}
}

// heldTransfers are clients that asked for a file and never acknowledge
// its first block, and what each was answered.
type heldTransfers struct {
	socks             []net.PacketConn
	data, busy, other int32
}

// holdTransfers has n clients ask server for name at once. Like a real
// client, each repeats its RRQ while unanswered (a burst of them overflows
// the server socket's receive buffer), up to 20 times, until it gets DATA,
// which it never acknowledges, or a "busy" ERROR.
func holdTransfers(t *testing.T, server, name string, n int) *heldTransfers {
	t.Helper()
	h := &heldTransfers{}
	t.Cleanup(h.release)
	srv, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.socks = append(h.socks, c)
	}
	var data, busy, other atomic.Int32
	var wg sync.WaitGroup
	for _, c := range h.socks {
		wg.Go(func() {
			buf := make([]byte, 1024)
			for range 20 {
				if _, err := c.WriteTo(rrq(name), srv); err != nil {
					break
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				n, _, err := c.ReadFrom(buf)
				switch {
				case isTimeout(err):
					continue
				case err != nil || n < 4:
				case binary.BigEndian.Uint16(buf) == tftpDATA:
					data.Add(1)
					return
				case binary.BigEndian.Uint16(buf) == tftpERROR && strings.Contains(string(buf[4:n]), "busy"):
					busy.Add(1)
					return
				}
				break
			}
			other.Add(1)
		})
	}
	wg.Wait()
	h.data, h.busy, h.other = data.Load(), busy.Load(), other.Load()
	return h
}

// release closes the clients' sockets: the server's transfers to them are
// abandoned.
func (h *heldTransfers) release() {
	for _, c := range h.socks {
		c.Close()
	}
	h.socks = nil
}

// tftpCase is a name a well-behaved client asks for and what it must get:
// the file's bytes, a script starting with want ("#!ipxe") for a name
// under boot/, or, want nil, an ERROR packet: any for a name that leaves
// the root, File not found (code 1) for any other.
type tftpCase struct {
	name string
	want []byte
}

// check fetches c.name from server and says how the answer is wrong.
func (c tftpCase) check(server string) error {
	got, err := tftpGet(server, c.name)
	var te *tftpError
	switch {
	case c.want == nil && (strings.Contains(c.name, "..") || strings.HasPrefix(c.name, "/")):
		if !errors.As(err, &te) {
			return fmt.Errorf("%s: %v, want an ERROR packet", c.name, err)
		}
	case c.want == nil:
		if !errors.As(err, &te) || te.code != 1 {
			return fmt.Errorf("%s: %v, want File not found", c.name, err)
		}
	case strings.HasPrefix(c.name, "boot/"):
		if err != nil || !bytes.HasPrefix(got, c.want) {
			return fmt.Errorf("%s: %v %q", c.name, err, got)
		}
	case err != nil || !bytes.Equal(got, c.want):
		return fmt.Errorf("%s: %v, %d of %d bytes", c.name, err, len(got), len(c.want))
	}
	return nil
}
