// Package tftpd is netsan's read-only TFTP server (RFC 1350, with the
// blksize and tsize options of RFC 2347/2348/2349). It is thin: every name
// is resolved by bootmenu, which also enforces confinement; this package
// moves the bytes, refuses writes, logs one line per transfer and counts.
package tftpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// Server serves tftp.root, ipxe_dir and the generated boot files.
type Server struct {
	// Conn, when set before Serve, is the socket to serve on instead of
	// binding tftp.listen; make it with Listen (tests bind 127.0.0.1:0).
	Conn net.PacketConn
	// Timeout is how long a transfer waits for one acknowledgement before
	// retransmitting (pin/tftp's default, 5 s, when zero).
	Timeout time.Duration
	// MaxTransfers bounds the transfers running at once (1024 when zero);
	// a request beyond it gets an ERROR packet, and its client retries.
	MaxTransfers int
	// Events, when set, is told of each file sent to a known machine, for
	// /status to tell its boot.
	Events *timeline.Recorder

	// Service holds the resolver and logger, and is the Server's Reload,
	// SetMACFinder and ListenAddrs.
	bootmenu.Service
	metrics  *metrics
	active   atomic.Int64 // transfers running
	stopping atomic.Bool  // Serve's context is done: running transfers are cut
	cut      atomic.Int64 // transfers cut at shutdown
}

// New returns a Server for inv; Serve starts it.
func New(inv *inventory.Inventory, log *zap.Logger) (*Server, error) {
	s := &Server{metrics: newMetrics()}
	var err error
	s.Service, err = bootmenu.NewService("tftp", inv, log,
		func(inv *inventory.Inventory) string { return inv.TFTP.Listen }, func() bool { return s.Conn != nil })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Serve answers requests until ctx is cancelled, then cuts the transfers
// still running: each at its next block, or, waiting on a silent client,
// when its acknowledgement times out (Timeout) instead of after every
// retransmission. Each cut transfer is logged.
func (s *Server) Serve(ctx context.Context) error {
	conn := s.Conn
	if conn == nil {
		c, err := Listen(s.Listen())
		if err != nil {
			s.Bound(nil)
			return err
		}
		conn = c
	}
	s.Bound(conn.LocalAddr())
	srv := tftp.NewServer(s.read, s.write)
	srv.SetHook(s.metrics)
	srv.SetBackoff(s.backoff)
	if s.Timeout > 0 {
		srv.SetTimeout(s.Timeout)
	}
	s.Log.Info("serving", s.serving(conn)...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	select {
	case <-ctx.Done():
		s.stopping.Store(true)
		srv.Shutdown() // closes conn, waits for the transfers
		<-done
		s.Log.Info("stopped", append(s.serving(conn), zap.Int64("cut", s.cut.Load()))...)
		return nil
	case err := <-done:
		conn.Close()
		return fmt.Errorf("tftp: %w", err)
	}
}

// serving says what Serve answers on and from.
func (s *Server) serving(conn net.PacketConn) []zap.Field {
	inv := s.Resolver.Inventory()
	return []zap.Field{zap.Stringer("addr", conn.LocalAddr()), zap.String("root", inv.TFTP.Root), zap.String("ipxe_dir", inv.TFTP.IPXEDir)}
}

// Listen binds a UDP socket for Serve. It asks at once for each datagram's
// destination address and interface (IP_PKTINFO): pin/tftp answers from that
// address and allows blocks up to that interface's MTU, and a request
// queued before the option is set would be held to 512-byte blocks.
func Listen(addr string) (net.PacketConn, error) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: listen %s: %w", addr, err)
	}
	udp := c.(*net.UDPConn)
	if a := udp.LocalAddr().(*net.UDPAddr); a.IP.To4() != nil {
		err = ipv4.NewPacketConn(udp).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
	} else {
		err = ipv6.NewPacketConn(udp).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("tftp: %s: packet info: %w", addr, err)
	}
	return c, nil
}

// cutTransfer is the panic that ends a transfer waiting on a silent client
// at shutdown; transfer recovers it.
type cutTransfer struct{}

// backoff is pin/tftp's pause before it sends an unacknowledged datagram
// again: up to a second, as its own default. At shutdown it cuts the
// transfer instead. pin/tftp offers no other way into a transfer that waits
// for an acknowledgement (Shutdown waits for it, up to retries × Timeout,
// about 30 s), so it unwinds the transfer by a panic that only transfer
// recovers.
func (s *Server) backoff(int) time.Duration {
	if s.stopping.Load() {
		panic(cutTransfer{})
	}
	return rand.N(time.Second)
}

// transferReader is the content of one transfer as pin/tftp reads it: it
// counts what was handed over and ends the transfer at shutdown.
type transferReader struct {
	r        io.Reader
	n        int64
	stopping *atomic.Bool
}

func (t *transferReader) Read(p []byte) (int, error) {
	if t.stopping.Load() {
		return 0, errCut
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	return n, err
}

// transfer sends f through rf. At shutdown it returns errCut with the
// bytes handed over so far: between blocks through transferReader, while
// waiting on the client through backoff's panic.
func (s *Server) transfer(rf io.ReaderFrom, f io.Reader) (n int64, err error) {
	// Reading ahead saves a read(2) per block; 64 KiB keeps a storm of
	// MaxTransfers stalled clients to 64 MiB of buffers.
	tr := &transferReader{r: bufio.NewReaderSize(f, 64<<10), stopping: &s.stopping}
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(cutTransfer); !ok {
				panic(p) // a bug: read's recover logs it
			}
			n, err = tr.n, errCut
		}
	}()
	return rf.ReadFrom(tr)
}

// Errors as TFTP clients see them in the ERROR packet, beside those of
// bootmenu.Refuse.
var (
	errWriteRefused = errors.New("netsan's TFTP server is read-only")
	errInternal     = errors.New("server error")
	errBusy         = errors.New("server busy, try again")
	errCut          = errors.New("server shutting down")
)

// read is pin/tftp's read handler: resolve the name, send the content.
func (s *Server) read(filename string, rf io.ReaderFrom) (err error) {
	start := time.Now()
	var remote, local netip.Addr
	ot, _ := rf.(tftp.OutgoingTransfer)
	if ot != nil {
		ra := ot.RemoteAddr()
		remote = ra.AddrPort().Addr().Unmap()
	}
	if pi, ok := rf.(tftp.RequestPacketInfo); ok {
		local, _ = netip.AddrFromSlice(pi.LocalIP())
		local = local.Unmap()
	}
	log := s.Log.With(bootmenu.RequestFields("read", filename, remote)...)
	defer func() {
		// A bug in one transfer must not take the server, and every other
		// machine's boot, down with it.
		if p := recover(); p != nil {
			log.Error("panic in transfer", zap.Any("panic", p), zap.Stack("stack"))
			s.metrics.Request("", "", "error")
			err = errInternal
		}
	}()

	limit := int64(s.MaxTransfers)
	if limit <= 0 {
		limit = 1024
	}
	if n := s.active.Add(1); n > limit {
		s.active.Add(-1)
		s.metrics.Request("", "", "busy")
		log.Warn("read refused: too many transfers", zap.Int64("limit", limit))
		return errBusy
	}
	s.metrics.active.Inc()
	defer func() {
		s.active.Add(-1)
		s.metrics.active.Dec()
	}()

	// A TFTP name has no current directory: a leading "/" is the root, as
	// tftp-hpa -s and dnsmasq take it, and GRUB asks that way
	// ("/grub/grub.cfg"). One only, as over HTTP.
	f, err := s.Resolver.Resolve(bootmenu.Client{IP: remote, Local: local}, strings.TrimPrefix(filename, "/"))
	if err != nil {
		r := bootmenu.Refuse(err)
		s.metrics.Request("", "", r.Result)
		log.Log(r.Level, "read refused", zap.String("result", r.Result), zap.Error(err))
		return errors.New(r.Message)
	}
	defer f.Close()
	log = log.With(f.Fields()...)
	if ot != nil {
		ot.SetSize(f.Size()) // answered only when the client asked for tsize
	}
	n, err := s.transfer(rf, f)
	s.metrics.Sent(f.Kind, f.Host, n)
	if errors.Is(err, errCut) {
		s.cut.Add(1)
		s.metrics.Request(f.Kind, f.Host, "cut")
		log.Warn("transfer cut at shutdown", zap.Int64("bytes", n), zap.Int64("size", f.Size()),
			zap.Duration("elapsed", time.Since(start)))
		return err
	}
	if err != nil {
		s.metrics.Request(f.Kind, f.Host, "aborted")
		log.Warn("transfer failed", zap.Int64("bytes", n), zap.Int64("size", f.Size()),
			zap.Duration("elapsed", time.Since(start)), zap.Error(err))
		return err
	}
	s.metrics.Request(f.Kind, f.Host, "ok")
	log.Info("sent", zap.Int64("bytes", n), zap.Duration("elapsed", time.Since(start)))
	s.Events.Record(f.Event("tftp", filename))
	return nil
}

// write refuses every write request with an ERROR packet and a log line.
func (s *Server) write(filename string, wt io.WriterTo) error {
	var ip netip.Addr
	if in, ok := wt.(tftp.IncomingTransfer); ok {
		ra := in.RemoteAddr()
		ip = ra.AddrPort().Addr().Unmap()
	}
	s.metrics.Request("", "", "write_refused")
	s.Log.Warn("write refused", bootmenu.RequestFields("write", filename, ip)...)
	return errWriteRefused
}
