package dhcpd

// IPv6 router advertisements that say "no IPv6 configuration here". iPXE,
// once DHCPv4 is done, sends router solicitations for about 15 s (at +0,
// 0.25, 0.8, 1.8, 3.9 and 7.9 s) and waits for an advertisement before it
// goes on; on a LAN with no IPv6 router that is a quarter of a PC's boot.
// An advertisement with router lifetime 0, M and O clear and no prefix ends
// the wait and configures nothing (RFC 4861 §4.2, §6.3.4): no host takes
// netsan for a router or an address from it.
//
// netsan only answers solicitations; it sends no periodic advertisements,
// since a host that never solicits has nothing to wait for. A real router
// on the LAN wins: netsan hears its advertisements and stays silent while
// the last one is fresh.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netsan/netsan/inventory"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

const (
	// maxAnswerDelay bounds the random delay before an answer. RFC 4861
	// §6.2.6 asks for one of up to MAX_RA_DELAY_TIME (0.5 s) so that
	// routers answering the same solicitation do not collide; netsan is
	// the only answerer it expects and the point is to end a wait, so it
	// keeps to the short end of that range.
	maxAnswerDelay = 20 * time.Millisecond
	// minDelayBetweenRAs is RFC 4861's MIN_DELAY_BETWEEN_RAS: multicast
	// advertisements are sent at most this often.
	minDelayBetweenRAs = 3 * time.Second
	// maxRouterHold is how long an advertisement that configures hosts
	// without naming a router (a prefix, M or O with router lifetime 0)
	// keeps netsan silent, and the cap on a prefix's lifetime: RFC 4861's
	// largest default router lifetime (3 × MaxRtrAdvInterval), within which
	// a router advertises again.
	maxRouterHold = 30 * time.Minute
	// reopenDelay is the wait before netsan tries the interface again when
	// it could not listen there (no IPv6 yet, its link-local address still
	// in duplicate address detection, the interface not there yet): short,
	// since a bridge gets its carrier, and so its address, only when its
	// first port does, which may be the machine about to boot.
	reopenDelay = time.Second
	// linkCheckInterval is how often a listener that hears nothing checks
	// that its interface is still the one it bound to: a socket bound to
	// an interface that was deleted (a bridge torn down and made again,
	// a USB NIC replugged) is never told, and would stay deaf to the new one.
	linkCheckInterval = 2 * time.Second
	// maxPendingAnswers bounds the answers waiting for their delay, so a
	// flood of solicitations costs a bounded number of timers.
	maxPendingAnswers = 256
)

var (
	allNodes   = netip.MustParseAddr("ff02::1")
	allRouters = netip.MustParseAddr("ff02::2")
)

// RA answers IPv6 router solicitations on the DHCP interface (dhcp.ipv6_ra).
// Build it with NewRA and run it with Serve beside the DHCP server.
type RA struct {
	log     *zap.Logger
	cfg     atomic.Pointer[raConfig]
	changed chan struct{} // Reload changed what Serve listens on
	metrics raMetrics
	routers routerWatch
}

// raConfig is what the responder needs of the inventory.
type raConfig struct {
	on     bool
	iface  string     // dhcp.interface; "" for the interface holding server
	server netip.Addr // server.address
}

func newRAConfig(inv *inventory.Inventory) raConfig {
	return raConfig{on: inv.DHCP.AnswersRS(), iface: inv.DHCP.Interface, server: inv.Server.Address.Addr}
}

// NewRA builds the responder for inv. It opens nothing: Serve does, when
// the inventory turns it on.
func NewRA(inv *inventory.Inventory, log *zap.Logger) *RA {
	if log == nil {
		log = zap.NewNop()
	}
	r := &RA{log: log.Named("ra"), changed: make(chan struct{}, 1), metrics: newRAMetrics()}
	c := newRAConfig(inv)
	r.cfg.Store(&c)
	return r
}

// Reload applies dhcp.ipv6_ra, dhcp.interface and server.address at once:
// Serve starts, stops or moves its listener.
func (r *RA) Reload(inv *inventory.Inventory) error {
	c := newRAConfig(inv)
	if old := r.cfg.Swap(&c); *old != c {
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

// Serve answers solicitations until ctx ends. It never fails: a LAN where
// netsan cannot listen for IPv6 (no IPv6 on the interface, no link-local
// address yet) gets a warning and a retry, and DHCP goes on.
func (r *RA) Serve(ctx context.Context) error {
	var problem string // the last failure logged, so a retry does not repeat it
	for ctx.Err() == nil {
		c := *r.cfg.Load()
		if !c.on {
			select {
			case <-ctx.Done():
			case <-r.changed:
			}
			continue
		}
		l, err := r.open(c)
		if err == nil {
			problem = ""
			err = r.serveLink(ctx, l)
		}
		if err == nil || ctx.Err() != nil {
			continue // ctx ended, or a reload: read the configuration again
		}
		if err.Error() != problem {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				// The usual start: a bridge without a port up yet, or
				// duplicate address detection still running.
				r.log.Info("waiting for the interface's link-local address to answer IPv6 router solicitations", zap.Error(err))
			} else {
				r.log.Warn("not answering IPv6 router solicitations; trying again", zap.Error(err))
			}
			problem = err.Error()
		}
		select {
		case <-ctx.Done():
		case <-r.changed:
		case <-time.After(reopenDelay):
		}
	}
	return nil
}

// raLink is the listener on one interface.
type raLink struct {
	ifi *net.Interface
	ll  netip.Addr // the interface's link-local address, the source of every RA
	pc  *icmp.PacketConn
	p   *ipv6.PacketConn
	ra  []byte // the advertisement, the same for every answer

	mu      sync.Mutex
	pending map[*time.Timer]bool
	pace    pacer
	wg      sync.WaitGroup // answers being sent
}

// open listens on the configured interface from its link-local address.
// Binding to that address (with its zone) ties the socket to the interface,
// and fails while duplicate address detection still holds the address.
func (r *RA) open(c raConfig) (*raLink, error) {
	ifi, err := c.link()
	if err != nil {
		return nil, err
	}
	ll, err := linkLocal(ifi)
	if err != nil {
		return nil, err
	}
	// The zone by index, not name: the net package caches names for up to a
	// minute, so an interface made again under its old name would resolve to
	// the old, gone index.
	pc, err := icmp.ListenPacket("ip6:ipv6-icmp", ll.String()+"%"+strconv.Itoa(ifi.Index))
	if err != nil {
		return nil, fmt.Errorf("%s: listen for ICMPv6 on %s: %w", ifi.Name, ll, err)
	}
	p := pc.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	// Neighbor Discovery is sent and accepted only with hop limit 255,
	// which no router forwards (RFC 4861 §6.1); netsan's own multicasts
	// need not come back to it.
	if err := errors.Join(p.SetICMPFilter(&f), p.SetControlMessage(ipv6.FlagHopLimit, true),
		p.SetHopLimit(255), p.SetMulticastHopLimit(255), p.SetMulticastLoopback(false),
		p.SetMulticastInterface(ifi), p.JoinGroup(ifi, &net.IPAddr{IP: allRouters.AsSlice()})); err != nil {
		pc.Close()
		return nil, fmt.Errorf("%s: ICMPv6 socket: %w", ifi.Name, err)
	}
	ra, err := advertisement(ifi.HardwareAddr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &raLink{ifi: ifi, ll: ll, pc: pc, p: p, ra: ra, pending: map[*time.Timer]bool{}}, nil
}

// link is the interface the responder listens on: dhcp.interface, else
// the one holding server.address.
func (c raConfig) link() (*net.Interface, error) {
	if c.iface != "" {
		ifi, err := net.InterfaceByName(c.iface)
		if err != nil {
			return nil, fmt.Errorf("dhcp.interface %s: %w", c.iface, err)
		}
		return ifi, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(c.server.AsSlice()) {
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no interface holds server.address %s (set dhcp.interface)", c.server)
}

// linkLocal is ifi's IPv6 link-local address.
func linkLocal(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && !ip.Is4In6() && ip.IsLinkLocalUnicast() {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv6 link-local address (is IPv6 off there? sysctl net.ipv6.conf.%s.disable_ipv6=0)", ifi.Name, ifi.Name)
}

// serveLink reads solicitations and advertisements on l until ctx ends or
// Reload changes the configuration; then it stops the answers still
// waiting and closes l.
func (r *RA) serveLink(ctx context.Context, l *raLink) error {
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Go(func() {
		select {
		case <-ctx.Done():
		case <-r.changed:
		case <-stop:
		}
		l.pc.Close()
	})
	defer func() {
		close(stop)
		watcher.Wait()
		l.mu.Lock()
		for t := range l.pending {
			if t.Stop() {
				l.wg.Done()
			}
		}
		clear(l.pending)
		l.mu.Unlock()
		l.wg.Wait()
		r.log.Info("stopped answering router solicitations", zap.String("interface", l.ifi.Name))
	}()
	r.log.Info("answering IPv6 router solicitations with \"no IPv6 configuration here\"",
		zap.String("interface", l.ifi.Name), zap.Stringer("from", l.ll))
	// One solicitation of its own, so that a router on the LAN makes
	// itself known now rather than at its next periodic advertisement.
	if rs, err := solicitation(l.ifi.HardwareAddr); err == nil {
		if _, err := l.p.WriteTo(rs, nil, &net.IPAddr{IP: allRouters.AsSlice(), Zone: strconv.Itoa(l.ifi.Index)}); err != nil {
			r.log.Debug("router solicitation", zap.Error(err))
		}
	}
	buf := make([]byte, 1500)
	for {
		l.pc.SetReadDeadline(time.Now().Add(linkCheckInterval))
		n, cm, src, err := l.p.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return nil // ctx ended or a reload
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Checked here, not in the watcher: this goroutine is the one
			// in the listener's network namespace.
			if err := l.current(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: read: %w", l.ifi.Name, err)
		}
		from, ok := ipAddr(src)
		if !ok || cm == nil || cm.HopLimit != 255 || from == l.ll {
			continue // forwarded from off the link, or our own
		}
		m, err := icmp.ParseMessage(ipv6.ICMPTypeRouterSolicitation.Protocol(), buf[:n])
		if err != nil || m.Code != 0 {
			continue
		}
		body, ok := m.Body.(*icmp.RawBody)
		if !ok {
			continue
		}
		switch m.Type {
		case ipv6.ICMPTypeRouterSolicitation:
			r.solicited(l, from, body.Data)
		case ipv6.ICMPTypeRouterAdvertisement:
			r.heard(l, from, body.Data)
		}
	}
}

// current reports whether l's interface is still there under the index
// and name it had, holding the link-local address l is bound to.
func (l *raLink) current() error {
	ifi, err := net.InterfaceByIndex(l.ifi.Index)
	if err != nil || ifi.Name != l.ifi.Name {
		return fmt.Errorf("%s: the interface went away (index %d)", l.ifi.Name, l.ifi.Index)
	}
	if ll, err := linkLocal(ifi); err != nil || ll != l.ll {
		return fmt.Errorf("%s: link-local address %s went away", l.ifi.Name, l.ll)
	}
	return nil
}

func ipAddr(a net.Addr) (netip.Addr, bool) {
	ia, ok := a.(*net.IPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ia.IP)
	return ip, ok
}

// solicited answers a router solicitation (data: the message after its
// checksum): to the solicitor when it has an address, else to all nodes,
// paced as RFC 4861 §6.2.6 asks; not at all while another router's
// advertisement is fresh.
func (r *RA) solicited(l *raLink, from netip.Addr, data []byte) {
	if len(data) < 4 || !validOptions(data[4:]) {
		return
	}
	unspecified := from.IsUnspecified()
	if unspecified && hasOption(data[4:], optSourceLinkLayer) {
		return // RFC 4861 §6.1.1
	}
	r.metrics.solicitations.Inc()
	now := time.Now()
	if r.routers.ended(now) {
		r.log.Info("no IPv6 router's advertisement is fresh any more: answering router solicitations again",
			zap.String("interface", l.ifi.Name))
	}
	if rt, ok := r.routers.present(now); ok {
		r.log.Debug("solicitation left to the LAN's router", zap.Stringer("from", from), zap.Stringer("router", rt))
		return
	}
	to := from
	if unspecified {
		to = allNodes
	}
	l.schedule(now, to, rand.N(maxAnswerDelay), func() { r.advertise(l, to) })
}

// schedule runs send after jitter, or for a multicast answer when the
// pacer allows; it drops the answer when one already due covers it or too
// many wait.
func (l *raLink) schedule(now time.Time, to netip.Addr, jitter time.Duration, send func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= maxPendingAnswers {
		return
	}
	delay := jitter
	if to.IsMulticast() {
		d, ok := l.pace.schedule(now, jitter)
		if !ok {
			return
		}
		delay = d
	}
	l.wg.Add(1)
	var t *time.Timer
	// The timer cannot fire its function before l.mu is released, so t
	// is set when the function deletes it.
	t = time.AfterFunc(delay, func() {
		defer l.wg.Done()
		l.mu.Lock()
		delete(l.pending, t)
		l.mu.Unlock()
		send()
	})
	l.pending[t] = true
}

// advertise sends the advertisement to to, unless a router has spoken up
// since the solicitation.
func (r *RA) advertise(l *raLink, to netip.Addr) {
	_, quiet := r.routers.present(time.Now())
	if !quiet {
		_, err := l.p.WriteTo(l.ra, nil, &net.IPAddr{IP: to.AsSlice(), Zone: strconv.Itoa(l.ifi.Index)})
		switch {
		case errors.Is(err, net.ErrClosed):
			quiet = true
		case err != nil:
			r.log.Warn("router advertisement", zap.Stringer("to", to), zap.String("interface", l.ifi.Name), zap.Error(err))
			quiet = true
		default:
			r.metrics.sent.Inc()
			r.log.Debug("router advertisement", zap.Stringer("to", to), zap.String("interface", l.ifi.Name))
		}
	}
	if to.IsMulticast() {
		l.mu.Lock()
		l.pace.done(time.Now(), !quiet)
		l.mu.Unlock()
	}
}

// heard notes another router's advertisement (data: the message after its
// checksum). One that configures hosts silences netsan while it is fresh;
// one that no longer does, from the router netsan is silent for, ends that.
func (r *RA) heard(l *raLink, from netip.Addr, data []byte) {
	if !from.IsLinkLocalUnicast() { // RFC 4861 §6.1.2
		return
	}
	a, ok := parseAdvertisement(data)
	if !ok {
		return
	}
	now := time.Now()
	if !a.configures() {
		if r.routers.leave(from, now) {
			r.log.Info("the LAN's IPv6 router withdrew: answering router solicitations again",
				zap.Stringer("router", from), zap.String("interface", l.ifi.Name))
		}
		return
	}
	if r.routers.heard(from, now, now.Add(a.hold())) {
		r.log.Warn("an IPv6 router advertises on the LAN: not answering router solicitations while its advertisement is fresh",
			zap.Stringer("router", from), zap.String("interface", l.ifi.Name),
			zap.Duration("router_lifetime", a.lifetime), zap.Bool("managed", a.managed), zap.Bool("other", a.other),
			zap.Stringers("prefixes", a.prefixes))
	}
}

// routerWatch remembers the router netsan is silent for and until when
// its advertisement is fresh.
type routerWatch struct {
	mu     sync.Mutex
	router netip.Addr
	until  time.Time
	told   bool // the silence was logged, its end not yet
}

// heard records an advertisement from router, fresh until until; true when
// it starts a silence (the one log line of it). The router netsan is silent
// for is taken at its word; another extends the silence only.
func (w *routerWatch) heard(router netip.Addr, now, until time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	start := !now.Before(w.until)
	if start || router == w.router || until.After(w.until) {
		w.router, w.until = router, until
	}
	w.told = true
	return start
}

// leave ends the silence when router is the one netsan is silent for;
// true if it did.
func (w *routerWatch) leave(router netip.Addr, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if router != w.router || !now.Before(w.until) {
		return false
	}
	w.until, w.told = time.Time{}, false
	return true
}

// present returns the router netsan is silent for at now, if any.
func (w *routerWatch) present(now time.Time) (netip.Addr, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.router, now.Before(w.until)
}

// ended is true once after a silence ran out: netsan says it answers again.
func (w *routerWatch) ended(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.told && !now.Before(w.until) {
		w.told = false
		return true
	}
	return false
}

// pacer keeps multicast advertisements MIN_DELAY_BETWEEN_RAS apart and
// folds the solicitations that arrive while one is due into it (RFC 4861
// §6.2.6).
type pacer struct {
	last time.Time // the last multicast sent
	due  bool      // one is scheduled
}

// schedule is the delay after now of the multicast answer to a
// solicitation, given its random jitter; false when one already due answers
// it.
func (p *pacer) schedule(now time.Time, jitter time.Duration) (time.Duration, bool) {
	if p.due {
		return 0, false
	}
	p.due = true
	if !p.last.IsZero() && now.Sub(p.last) < minDelayBetweenRAs {
		return p.last.Add(minDelayBetweenRAs + jitter).Sub(now), true
	}
	return jitter, true
}

// done ends the due answer, sent at now or not sent at all.
func (p *pacer) done(now time.Time, sent bool) {
	p.due = false
	if sent {
		p.last = now
	}
}

// Neighbor Discovery option types (RFC 4861 §4.6).
const (
	optSourceLinkLayer = 1
	optPrefix          = 3
)

// advertisement is netsan's router advertisement: no hop limit, no flags,
// router lifetime 0, no reachable or retransmit time, and the interface's
// link-layer address (RFC 4861 §4.2).
func advertisement(mac net.HardwareAddr) ([]byte, error) {
	data := append(make([]byte, 12), sourceLinkLayer(mac)...)
	return (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: data}}).Marshal(nil)
}

// solicitation is a router solicitation from mac (RFC 4861 §4.1).
func solicitation(mac net.HardwareAddr) ([]byte, error) {
	data := append(make([]byte, 4), sourceLinkLayer(mac)...)
	return (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: data}}).Marshal(nil)
}

// sourceLinkLayer is the source link-layer address option for an Ethernet
// address; none for an interface without one. The checksum is left to the
// kernel, which fills it in on every ICMPv6 raw socket.
func sourceLinkLayer(mac net.HardwareAddr) []byte {
	if len(mac) != 6 {
		return nil
	}
	return append([]byte{optSourceLinkLayer, 1}, mac...)
}

// heardAdvert is what another router's advertisement says.
type heardAdvert struct {
	lifetime       time.Duration
	managed, other bool
	prefixes       []netip.Prefix // those with a valid lifetime
	prefixValid    time.Duration  // the longest valid lifetime among them
}

// parseAdvertisement reads a router advertisement after its checksum.
func parseAdvertisement(data []byte) (heardAdvert, bool) {
	if len(data) < 12 || !validOptions(data[12:]) {
		return heardAdvert{}, false
	}
	a := heardAdvert{
		managed:  data[1]&0x80 != 0,
		other:    data[1]&0x40 != 0,
		lifetime: time.Duration(binary.BigEndian.Uint16(data[2:4])) * time.Second,
	}
	eachOption(data[12:], func(typ byte, opt []byte) {
		if typ != optPrefix || len(opt) != 32 {
			return
		}
		valid := time.Duration(binary.BigEndian.Uint32(opt[4:8])) * time.Second
		if valid == 0 {
			return // a prefix being withdrawn
		}
		addr := netip.AddrFrom16([16]byte(opt[16:32]))
		if p, err := addr.Prefix(int(min(opt[2], 128))); err == nil {
			a.prefixes = append(a.prefixes, p)
		}
		a.prefixValid = max(a.prefixValid, valid)
	})
	return a, true
}

// configures reports whether the advertisement gives hosts anything: a
// default router, a prefix, or DHCPv6 to ask.
func (a heardAdvert) configures() bool {
	return a.lifetime > 0 || a.managed || a.other || len(a.prefixes) > 0
}

// hold is how long the advertisement is fresh: its router lifetime, or
// its prefixes' (capped), or maxRouterHold for flags alone.
func (a heardAdvert) hold() time.Duration {
	d := max(a.lifetime, min(a.prefixValid, maxRouterHold))
	if d == 0 {
		d = maxRouterHold
	}
	return d
}

// validOptions: every option has a non-zero length that fits (RFC 4861
// §6.1: a message with a zero-length option is dropped).
func validOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 2 || b[1] == 0 || int(b[1])*8 > len(b) {
			return false
		}
		b = b[int(b[1])*8:]
	}
	return true
}

// eachOption calls f with each option's type and bytes (type and length
// included) of options validOptions accepted.
func eachOption(b []byte, f func(typ byte, opt []byte)) {
	for len(b) >= 2 && b[1] != 0 && int(b[1])*8 <= len(b) {
		n := int(b[1]) * 8
		f(b[0], b[:n])
		b = b[n:]
	}
}

func hasOption(b []byte, typ byte) bool {
	found := false
	eachOption(b, func(t byte, _ []byte) { found = found || t == typ })
	return found
}

// raMetrics counts solicitations and answers.
type raMetrics struct {
	solicitations prometheus.Counter
	sent          prometheus.Counter
	silent        *prometheus.Desc
}

func newRAMetrics() raMetrics {
	return raMetrics{
		solicitations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "netsan", Subsystem: "dhcp", Name: "ra_solicitations_total",
			Help: "IPv6 router solicitations heard on the DHCP interface.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "netsan", Subsystem: "dhcp", Name: "ra_sent_total",
			Help: "Router advertisements sent in answer (router lifetime 0, no prefix: no IPv6 configuration here).",
		}),
		silent: prometheus.NewDesc("netsan_dhcp_ra_router_present",
			"1 while another IPv6 router's advertisement is fresh on the DHCP interface and netsan answers no solicitation.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (r *RA) Describe(ch chan<- *prometheus.Desc) {
	r.metrics.solicitations.Describe(ch)
	r.metrics.sent.Describe(ch)
	ch <- r.metrics.silent
}

// Collect implements prometheus.Collector.
func (r *RA) Collect(ch chan<- prometheus.Metric) {
	r.metrics.solicitations.Collect(ch)
	r.metrics.sent.Collect(ch)
	v := 0.0
	if _, ok := r.routers.present(time.Now()); ok {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(r.metrics.silent, prometheus.GaugeValue, v)
}
