package faults

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	for _, d := range []string{root, ipxe} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{}
	write := func(dir, name string, size int) {
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	write(root, "big.bin", 1<<20)
	write(ipxe, "undionly.kpxe", 70_000)
	for i := range 40 {
		write(root, fmt.Sprintf("f%02d.bin", i), 100+i*97)
	}
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
	var socks []net.PacketConn
	t.Cleanup(func() {
		for _, c := range socks {
			c.Close()
		}
	})
	srv, _ := net.ResolveUDPAddr("udp", server)
	for range hold {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, c)
	}
	// Like a real client, each repeats its RRQ while unanswered: a burst of
	// 1,100 datagrams overflows the server socket's receive buffer.
	var data, busy, other atomic.Int32
	var wg sync.WaitGroup
	for _, c := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1024)
			for range 20 {
				if _, err := c.WriteTo(rrq("big.bin"), srv); err != nil {
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
		}()
	}
	wg.Wait()
	held := n.usage()
	m := n.mustMetrics()
	t.Logf("%d unacknowledged requests: %d DATA, %d busy, %d other; active gauge %v; {%v}",
		hold, data.Load(), busy.Load(), other.Load(), m["netsan_tftp_transfers_active"], held)
	if data.Load() > bound || data.Load()+busy.Load() != hold || busy.Load() == 0 {
		t.Fatalf("bound of %d transfers: %d DATA, %d busy, %d unanswered", bound, data.Load(), busy.Load(), other.Load())
	}
	if m["netsan_tftp_transfers_active"] > bound {
		t.Fatalf("%v transfers active, bound %d", m["netsan_tftp_transfers_active"], bound)
	}
	for _, c := range socks {
		c.Close()
	}

	// The abandoned transfers time out by themselves (pin/tftp: 5 tries of 5 s).
	netsantest.WaitFor(t, "abandoned transfers to end", 90*time.Second, func() bool {
		m, err := n.metrics()
		return err == nil && m["netsan_tftp_transfers_active"] == 0
	})

	// 300 well-behaved clients, 100 names between them, all at once.
	names := []string{"big.bin", "undionly.kpxe", "boot/52-54-00-00-00-01.ipxe", "../../etc/passwd", "/etc/passwd", "boot/../../x"}
	for i := range 40 {
		names = append(names, fmt.Sprintf("f%02d.bin", i))
	}
	for i := len(names); i < 100; i++ {
		names = append(names, fmt.Sprintf("missing-%02d.bin", i))
	}
	const clients = 300
	var bad atomic.Int32
	var ok, refused atomic.Int32
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := names[i%len(names)]
			got, err := tftpGet(server, name)
			want, exists := files[filepath.Base(name)]
			var te *tftpError
			switch {
			case strings.Contains(name, "..") || strings.HasPrefix(name, "/"):
				if !errors.As(err, &te) {
					t.Errorf("%s: %v, want an ERROR packet", name, err)
					bad.Add(1)
				}
				refused.Add(1)
			case name == "boot/52-54-00-00-00-01.ipxe":
				if err != nil || !strings.HasPrefix(string(got), "#!ipxe") {
					t.Errorf("%s: %v %q", name, err, got)
					bad.Add(1)
				}
				ok.Add(1)
			case exists && !strings.Contains(name, "/"):
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %v, %d of %d bytes", name, err, len(got), len(want))
					bad.Add(1)
				}
				ok.Add(1)
			default:
				if !errors.As(err, &te) || te.code != 1 {
					t.Errorf("%s: %v, want File not found", name, err)
					bad.Add(1)
				}
				refused.Add(1)
			}
		}()
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
