// Package dhcpd is netsan's DHCPv4 server: fixed addresses for inventory
// hosts and a lease pool for the rest (authoritative mode), or boot
// information only beside the LAN's own server (proxy mode), and in both the
// PXE/iPXE/Raspberry Pi boot decision of SPEC.md.
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// PXEPort is the proxyDHCP boot-server port (PXE spec 2.1).
const PXEPort = 4011

// workersPerSocket bounds the requests handled at once on one socket. A
// worker never waits for the lease store: an ACK that needs a save is handed
// to the commit loop (see commits), and the worker reads the next datagram.
const workersPerSocket = 16

// receiveBuffer is what Listen asks of each socket's receive buffer: room
// for the DISCOVERs and REQUESTs of a thousand machines powered on at once,
// and their retransmits, while the workers catch up. The kernel charges a
// datagram its buffer (1 to 4 KiB whatever the DHCP message's size), so its
// default (net.core.rmem_default, 208 KiB, which dnsmasq keeps) holds about a
// hundred: a 1,000-node boot storm lost 2,502 of them there.
const receiveBuffer = 4 << 20

// Server is the DHCP service. Build it with New, run it with Serve.
type Server struct {
	log     *zap.Logger
	cfg     atomic.Pointer[config]
	leases  *leaseTable
	metrics *metrics
	unknown unknowns // machines that asked to boot, not in the inventory
	events  *timeline.Recorder
	commits commits // replies waiting for the lease store

	mu    sync.Mutex
	socks []*socket // opened by Listen
	// served is closed once Serve has its sockets or has failed to open
	// them.
	served chan struct{}
}

// socket is one listening UDP socket; pxe marks the proxyDHCP port.
type socket struct {
	pc  *ipv4.PacketConn
	raw net.PacketConn
	pxe bool
}

// Option is a setting of New beyond the inventory.
type Option func(*options)

type options struct {
	leases LeaseStore
	events *timeline.Recorder
}

// WithLeaseStore keeps the leases in store instead of the journal in
// server.data_dir: gateways that take over from one another share a store
// in Ceph. A nil store is the journal.
func WithLeaseStore(store LeaseStore) Option {
	return func(o *options) { o.leases = store }
}

// WithEvents records each boot client's discover, and the ack or nak of
// its request, in events, for /status to tell its boot.
func WithEvents(events *timeline.Recorder) Option {
	return func(o *options) { o.events = events }
}

// New builds a server for inv and loads the leases: from server.data_dir's
// lease journal, or the store an option gives. It opens no socket: Listen (or
// Serve) does.
func New(inv *inventory.Inventory, log *zap.Logger, opts ...Option) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c, err := newConfig(inv)
	if err != nil {
		return nil, err
	}
	if o.leases == nil {
		j, err := openLeaseJournal(inv.Server.DataDir, log.Named("dhcp"))
		if err != nil {
			return nil, fmt.Errorf("dhcp: lease store: %w", err)
		}
		o.leases = j
	}
	ls, err := openLeaseTable(inv.Server.DataDir, o.leases)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	s := &Server{log: log.Named("dhcp"), leases: ls, metrics: newMetrics(), events: o.events, served: make(chan struct{}),
		commits: commits{wake: make(chan struct{}, 1)}}
	s.cfg.Store(c)
	s.logConfig(c)
	if !c.listen.IP.IsUnspecified() && c.listen.IP != nil {
		// Linux delivers a broadcast DISCOVER only to sockets bound to the
		// wildcard address; dhcp.interface is the way to confine netsan.
		s.log.Warn("dhcp.listen names an address: broadcast requests will not arrive; listen on 0.0.0.0 and set dhcp.interface",
			zap.String("listen", c.listen.String()))
	}
	return s, nil
}

func (s *Server) logConfig(c *config) {
	mode := inventory.ModeAuthoritative
	if c.proxy {
		mode = inventory.ModeProxy
	}
	loaders := make([]string, 0, len(c.loaders))
	for a, f := range c.loaders {
		loaders = append(loaders, fmt.Sprintf("%d=%s", a, f))
	}
	sort.Strings(loaders)
	pool := "static-only"
	if c.pool.first.IsValid() {
		pool = c.pool.first.String() + "-" + c.pool.last.String()
	}
	s.log.Info("config", zap.String("mode", mode), zap.String("pool", pool),
		zap.Int("hosts", len(c.inv.Hosts)), zap.Strings("loaders", loaders))
}

// Reload applies a new inventory: hosts, options, pool and lease time take
// effect for the next request; leases are kept. The listening address,
// interface, mode and data_dir need a restart (a warning says so).
func (s *Server) Reload(inv *inventory.Inventory) error {
	c, err := newConfig(inv)
	if err != nil {
		return err
	}
	old := s.cfg.Load()
	if old.listen.String() != c.listen.String() || old.inv.DHCP.Interface != inv.DHCP.Interface ||
		old.proxy != c.proxy || old.inv.Server.DataDir != inv.Server.DataDir {
		s.log.Warn("listen, interface, mode or data_dir changed: takes effect at restart")
	}
	s.cfg.Store(c)
	s.logConfig(c)
	return nil
}

// Leases returns every lease known, by address (for /status).
func (s *Server) Leases() []Lease { return s.leases.list() }

// ErrNotAssigning is MACOf's answer in proxy mode: the LAN's own DHCP
// server hands out the addresses, so netsan's state says nothing of them.
var ErrNotAssigning = errors.New("proxy mode: netsan assigns no addresses")

// MACOf returns the MAC netsan gave ip to: the client holding an active
// lease of it, else the inventory host whose fixed address it is (a fixed
// address is never leased to another MAC).
func (s *Server) MACOf(ip netip.Addr) (net.HardwareAddr, error) {
	c := s.cfg.Load()
	if c.proxy {
		return nil, ErrNotAssigning
	}
	ip = ip.Unmap()
	if l, held := s.leases.holder(ip, time.Now()); held {
		if l.State == StateDeclined {
			return nil, fmt.Errorf("dhcp: %s was declined: another machine answers ARP for it", ip)
		}
		return net.ParseMAC(l.MAC)
	}
	for i := range c.inv.Hosts {
		if h := &c.inv.Hosts[i]; h.IP.IsValid() && h.IP.Addr == ip {
			return h.MAC.HardwareAddr, nil
		}
	}
	return nil, fmt.Errorf("dhcp: %s: no lease, no host's fixed address", ip)
}

// Listen opens the sockets: the configured address, and in proxy mode also
// the PXE port 4011 on the same address. Serve calls it if it has not been.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.socks != nil {
		return nil
	}
	c := s.cfg.Load()
	addrs := []*net.UDPAddr{c.listen}
	if c.proxy {
		addrs = append(addrs, &net.UDPAddr{IP: c.listen.IP, Port: PXEPort})
	}
	var socks []*socket
	for i, a := range addrs {
		so, err := s.open(c.inv.DHCP.Interface, a)
		if err != nil {
			for _, so := range socks {
				so.raw.Close()
			}
			return err
		}
		so.pxe = i == 1
		socks = append(socks, so)
	}
	s.socks = socks
	return nil
}

// open opens one listening socket, with a receive buffer for a storm.
func (s *Server) open(iface string, a *net.UDPAddr) (*socket, error) {
	conn, err := server4.NewIPv4UDPConn(iface, a)
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen %s: %w", a, err)
	}
	size, err := setReceiveBuffer(conn, receiveBuffer)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcp: %s: receive buffer: %w", a, err)
	}
	// The kernel reports twice what was asked: its bookkeeping is in it.
	if size < 2*receiveBuffer {
		s.log.Warn("receive buffer smaller than asked: a boot storm may lose requests; raise net.core.rmem_max or give netsan CAP_NET_ADMIN",
			zap.Stringer("listen", a), zap.Int("bytes", size), zap.Int("asked", 2*receiveBuffer))
	} else {
		s.log.Info("receive buffer", zap.Stringer("listen", a), zap.Int("bytes", size))
	}
	pc := ipv4.NewPacketConn(conn)
	// The arrival interface lets a broadcast reply leave through it,
	// whatever the routing table says about 255.255.255.255.
	if err := pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcp: %s: IP_PKTINFO: %w", a, err)
	}
	return &socket{pc: pc, raw: conn}, nil
}

// listenOnce is Serve's Listen, which lets ListenAddrs answer.
func (s *Server) listenOnce() error {
	defer close(s.served)
	return s.Listen()
}

// ListenAddrs blocks until Serve has its sockets and returns their
// addresses; nil if Serve could not open them.
func (s *Server) ListenAddrs() []net.Addr {
	<-s.served
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, so := range s.socks {
		out = append(out, so.raw.LocalAddr())
	}
	return out
}

// Serve answers requests until ctx is cancelled, then waits for requests in
// flight and saves the leases.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.listenOnce(); err != nil {
		return err
	}
	s.mu.Lock()
	socks := s.socks
	s.mu.Unlock()
	s.log.Info("serving", s.serving(socks)...)
	g, gctx := errgroup.WithContext(ctx)
	for _, so := range socks {
		for range workersPerSocket {
			g.Go(func() error { return s.readLoop(gctx, so) })
		}
	}
	g.Go(func() error { s.commitLoop(gctx); return nil })
	g.Go(func() error { s.leases.run(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		for _, so := range socks {
			so.raw.Close()
		}
		return nil
	})
	err := g.Wait()
	if serr := s.leases.sync(); serr != nil {
		s.log.Error("lease store", zap.Error(serr))
	}
	if ctx.Err() != nil {
		s.log.Info("stopped", append(s.serving(socks), zap.Int("leases", s.leases.active(time.Now())))...)
		return nil
	}
	return err
}

// serving says what Serve answers on: the mode, the sockets and the interface.
func (s *Server) serving(socks []*socket) []zap.Field {
	c := s.cfg.Load()
	mode := inventory.ModeAuthoritative
	if c.proxy {
		mode = inventory.ModeProxy
	}
	addrs := make([]string, len(socks))
	for i, so := range socks {
		addrs[i] = so.raw.LocalAddr().String()
	}
	return []zap.Field{zap.String("mode", mode), zap.Strings("listen", addrs), zap.String("interface", c.inv.DHCP.Interface)}
}

func (s *Server) readLoop(ctx context.Context, so *socket) error {
	buf := make([]byte, 1500)
	for {
		n, cm, peer, err := so.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcp: read: %w", err)
		}
		ifIndex := 0
		if cm != nil {
			ifIndex = cm.IfIndex
		}
		s.serveOne(so, buf[:n], peer, ifIndex)
	}
}

// serveOne handles one datagram; a panic drops only this request. A reply
// that depends on a change to the lease store goes to the commit loop; any
// other is sent at once.
func (s *Server) serveOne(so *socket, b []byte, peer net.Addr, ifIndex int) {
	defer s.survive()
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.log.Debug("bad packet", zap.Stringer("from", peer), zap.Error(err))
		return
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	c := s.cfg.Load()
	resp, x := s.decide(c, req, so.pxe, time.Now())
	r := decided{so: so, cfg: c, req: req, resp: resp, x: x, peer: peer, ifIndex: ifIndex}
	if !x.persist {
		s.send(r)
		return
	}
	if !s.commits.add(r) {
		// The store has not kept up with maxPending replies: the client
		// asks again, and its lease is saved with the next sync.
		s.log.Warn("lease store: too many replies waiting for it, reply dropped", zap.Stringer("mac", req.ClientHWAddr))
	}
}

// survive, deferred, turns a panic while handling one request into a log
// line: the other requests go on.
func (s *Server) survive() {
	if r := recover(); r != nil {
		s.log.Error("request panicked", zap.Any("panic", r), zap.Stack("stack"))
	}
}

// decided is a request decided and its reply on the way out.
type decided struct {
	so      *socket
	cfg     *config
	req     *dhcpv4.DHCPv4
	resp    *dhcpv4.DHCPv4
	x       *exchange
	peer    net.Addr
	ifIndex int
}

// send logs a decided request, records it, and sends its reply if it has one.
func (s *Server) send(r decided) {
	req, x := r.req, r.x
	s.logDecision(req, x)
	s.events.Record(x.event(req))
	if !x.send || r.resp == nil {
		return
	}
	dst, bcast := replyDest(r.cfg, req, r.resp, r.peer, r.so.pxe)
	var cm *ipv4.ControlMessage
	if bcast && r.ifIndex != 0 {
		cm = &ipv4.ControlMessage{IfIndex: r.ifIndex}
	}
	if _, err := r.so.pc.WriteTo(r.resp.ToBytes(), cm, dst); err != nil {
		s.log.Warn("send", zap.Stringer("to", dst), zap.Error(err), zap.Stringer("mac", req.ClientHWAddr))
		return
	}
	s.metrics.count(x)
}

// maxPending bounds the replies waiting for the lease store (a store that
// hangs must not grow the queue with every retransmitted REQUEST).
const maxPending = 4096

// commits holds the replies whose lease changes must be durable before they
// leave. The commit loop takes them all, saves once, and sends them: however
// many ACKs a storm brings, they share one write and one fdatasync, and no
// worker waits for it, so DISCOVERs are answered meanwhile.
type commits struct {
	mu      sync.Mutex
	pending []decided
	wake    chan struct{} // capacity 1: something is pending
}

// add queues r; false when maxPending replies are already waiting.
func (c *commits) add(r decided) bool {
	c.mu.Lock()
	full := len(c.pending) >= maxPending
	if !full {
		c.pending = append(c.pending, r)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return !full
}

// take returns what is pending and empties the queue.
func (c *commits) take() []decided {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.pending
	c.pending = nil
	return batch
}

// commitLoop saves the lease store and then sends the replies that waited
// for it, until ctx ends. Replies still waiting then are not sent (their
// clients ask again); their leases are saved by Serve's last sync.
func (s *Server) commitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.commits.wake:
		}
		batch := s.commits.take()
		if len(batch) == 0 {
			continue
		}
		if err := s.leases.sync(); err != nil {
			// Never ACK what is not saved: a restart would forget it.
			s.log.Error("lease store: replies withheld", zap.Error(err), zap.Int("replies", len(batch)))
			continue
		}
		for _, r := range batch {
			func() {
				defer s.survive()
				s.send(r)
			}()
		}
	}
}

// setReceiveBuffer asks for an n-byte receive buffer on conn and returns
// the size the kernel reports. SO_RCVBUFFORCE, for a process with
// CAP_NET_ADMIN, passes the net.core.rmem_max cap that SO_RCVBUF is held to.
func setReceiveBuffer(conn *net.UDPConn, n int) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var size int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n); serr != nil {
				return
			}
		}
		size, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil {
		return 0, err
	}
	return size, serr
}

// decide runs the handler chain for one request. It touches the lease store
// and the table of unknown machines but neither the disk nor the network.
func (s *Server) decide(c *config, req *dhcpv4.DHCPv4, pxePort bool, now time.Time) (*dhcpv4.DHCPv4, *exchange) {
	x := &exchange{cfg: c, leases: s.leases, now: now, pxePort: pxePort, kind: KindOther}
	resp, err := dhcpv4.NewReplyFromRequest(req)
	if err != nil {
		x.ignore(err.Error())
		return nil, x
	}
	for _, h := range chain {
		if h(x, req, resp) {
			break
		}
	}
	x.finish(req, resp)
	s.unknown.note(x, req)
	return resp, x
}

// replyDest applies RFC 2131 4.1: through the relay when there is one; NAKs
// and replies to clients with no address yet broadcast (they cannot answer
// ARP); renewing clients unicast to ciaddr. Requests to the PXE port are
// answered where they came from.
func replyDest(c *config, req, resp *dhcpv4.DHCPv4, peer net.Addr, pxePort bool) (*net.UDPAddr, bool) {
	if pxePort {
		if u, ok := peer.(*net.UDPAddr); ok && !u.IP.IsUnspecified() {
			return u, false
		}
	}
	if gi := ip4(req.GatewayIPAddr); gi.IsValid() {
		return &net.UDPAddr{IP: gi.AsSlice(), Port: c.listen.Port}, false
	}
	cp := c.clientPort()
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: net.IPv4bcast, Port: cp}, true
	}
	if ci := ip4(req.ClientIPAddr); ci.IsValid() {
		return &net.UDPAddr{IP: ci.AsSlice(), Port: cp}, false
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: cp}, true
}

// logDecision writes the one line per request that lets a boot be followed.
func (s *Server) logDecision(req *dhcpv4.DHCPv4, x *exchange) {
	fields := []zap.Field{
		zap.Stringer("request", req.MessageType()),
		zap.String("host", x.hostName()),
		zap.Stringer("mac", req.ClientHWAddr),
		zap.String("ip", addrString(x.ip)),
		zap.String("kind", string(x.kind)),
		zap.Uint16("arch", uint16(x.arch)),
	}
	if x.file != "" {
		fields = append(fields, zap.String("file", x.file))
	}
	if x.reason != "" {
		fields = append(fields, zap.String("reason", x.reason))
	}
	s.log.Log(x.level, string(x.op), fields...)
}

// event is the request as a step of its machine's boot: a discover, and the
// ack or nak of a request that is not a renewal (a lease renewed every
// half lease time is no news); no key for anything else.
func (x *exchange) event(req *dhcpv4.DHCPv4) (mac string, step timeline.Step, detail string) {
	mac = req.ClientHWAddr.String()
	renewal := !req.ClientIPAddr.IsUnspecified() && !x.pxePort
	switch {
	case req.MessageType() == dhcpv4.MessageTypeDiscover:
		detail = fmt.Sprintf("%s, %s", x.kind, x.arch)
		if x.op != actOffer {
			detail += ": no offer, " + x.reason
		}
		return mac, timeline.Discover, detail
	case x.op == actAck && !renewal:
		detail = addrString(x.ip)
		if x.file != "" && detail != "" {
			detail += ", "
		}
		detail += x.file
		return mac, timeline.Ack, detail
	case x.op == actNak:
		return mac, timeline.Nak, x.reason
	}
	return "", "", ""
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
