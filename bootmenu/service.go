package bootmenu

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
)

// Service is what the two boot file servers, tftpd's and httpd's, have
// alike: a Resolver and a logger named for the protocol, Reload with what
// it says of a changed listen address, and the address Serve got. Each
// server embeds one, so its Reload, SetMACFinder and ListenAddrs are these.
type Service struct {
	Log      *zap.Logger
	Resolver *Resolver
	proto    string
	listen   func(*inventory.Inventory) string
	handed   func() bool
	// bound is closed once Serve has its socket, at addr, or has failed to
	// get one (addr nil).
	bound chan struct{}
	addr  net.Addr
}

// NewService returns the Service of proto ("tftp", "http") for inv. listen
// is proto's listen address in an inventory; handed says whether the
// server was given its socket instead, so that it binds none.
func NewService(proto string, inv *inventory.Inventory, log *zap.Logger, listen func(*inventory.Inventory) string, handed func() bool) (Service, error) {
	log = log.Named(proto)
	r, err := New(inv, log)
	if err != nil {
		return Service{}, fmt.Errorf("%s: %w", proto, err)
	}
	return Service{Log: log, Resolver: r, proto: proto, listen: listen, handed: handed, bound: make(chan struct{})}, nil
}

// Reload serves inv from now on; what is being sent finishes with the file
// it opened. A changed listen address takes effect at the next start.
func (s *Service) Reload(inv *inventory.Inventory) error {
	old := s.Resolver.Inventory()
	if err := s.Resolver.Reload(inv); err != nil {
		return fmt.Errorf("%s: %w", s.proto, err)
	}
	if s.listen(old) != s.listen(inv) && !s.handed() {
		s.Log.Warn(s.proto+".listen changed; the new address is used after a restart",
			zap.String("old", s.listen(old)), zap.String("new", s.listen(inv)))
	}
	return nil
}

// SetMACFinder sets how a Pi's cmdline.txt with its CHAP secret is kept
// to the Pi (see MACFinder); until then it goes to nobody.
func (s *Service) SetMACFinder(f MACFinder) { s.Resolver.SetMACFinder(f) }

// Listen is the address to bind: the listen address of the inventory
// served now.
func (s *Service) Listen() string { return s.listen(s.Resolver.Inventory()) }

// Bound is how Serve says, once, that it has its socket, at addr, or
// could not get one (addr nil).
func (s *Service) Bound(addr net.Addr) {
	s.addr = addr
	close(s.bound)
}

// ListenAddrs blocks until Serve has its socket and returns its address;
// nil if Serve could not get one.
func (s *Service) ListenAddrs() []net.Addr {
	<-s.bound
	if s.addr == nil {
		return nil
	}
	return []net.Addr{s.addr}
}

// Counters are what both servers count of boot files: requests by content
// kind, host (where known) and outcome, and bytes sent by kind and host.
type Counters struct {
	requests, bytes *prometheus.CounterVec
}

// NewCounters returns proto's counters, netsan_<proto>_requests_total and
// netsan_<proto>_sent_bytes_total; outcome names the requests' third label
// (tftp: result, http: code) and help says what they count.
func NewCounters(proto, outcome, help string) Counters {
	return Counters{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netsan_" + proto + "_requests_total",
			Help: help,
		}, []string{"kind", "host", outcome}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netsan_" + proto + "_sent_bytes_total",
			Help: "Boot file bytes sent over " + strings.ToUpper(proto) + ", by content kind and host.",
		}, []string{"kind", "host"}),
	}
}

// Request counts a request for a file of kind to host with its outcome.
func (c Counters) Request(kind Kind, host, outcome string) {
	c.requests.WithLabelValues(string(kind), host, outcome).Inc()
}

// Status counts an HTTP request by its status code.
func (c Counters) Status(kind Kind, host string, code int) {
	c.Request(kind, host, strconv.Itoa(code))
}

// Sent counts n bytes of a file of kind sent to host.
func (c Counters) Sent(kind Kind, host string, n int64) {
	c.bytes.WithLabelValues(string(kind), host).Add(float64(n))
}

// Describe implements prometheus.Collector.
func (c Counters) Describe(ch chan<- *prometheus.Desc) {
	c.requests.Describe(ch)
	c.bytes.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c Counters) Collect(ch chan<- prometheus.Metric) {
	c.requests.Collect(ch)
	c.bytes.Collect(ch)
}
