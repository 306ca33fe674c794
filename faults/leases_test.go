package faults

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netsan/netsan/netsantest"
)

// leaseStorm is a DHCP storm from one socket in a namespace
// (netsantest.DHCPClients): workers run DORA after DORA, each for its own
// share of a fixed population of MACs (a renewal rewrites the client's
// lease: its expiry moves). It keeps every client's last ACK, and fails the
// test when an address is offered or acknowledged to one client while
// acknowledged to another.
type leaseStorm struct {
	t     *testing.T
	conn  *netsantest.DHCPClients
	mu    sync.Mutex
	last  map[string]stormAck // mac → its last ACK
	owner map[string]string   // ip → the mac it was acknowledged to
	acks  int
}

// stormAck is one ACK: the address, and when the REQUEST it answers left
// (the lease the server saved expires at least a lease time after).
type stormAck struct {
	ip   string
	sent time.Time
}

func newLeaseStorm(t *testing.T, ns string) *leaseStorm {
	conn, err := netsantest.ListenDHCP(ns, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &leaseStorm{t: t, conn: conn, last: map[string]stormAck{}, owner: map[string]string{}}
}

// run storms until ctx ends: workers goroutines over macs.
func (s *leaseStorm) run(ctx context.Context, workers int, macs []net.HardwareAddr) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += workers {
				s.dora(ctx, macs[i%len(macs)])
			}
		}()
	}
	wg.Wait()
}

// stormWaits are a storm client's retransmits: short, so that a DORA the
// kill cut off gives way to the next soon.
var stormWaits = []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}

// dora leases an address for mac, or gives up (the server is down).
func (s *leaseStorm) dora(ctx context.Context, mac net.HardwareAddr) {
	d, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
	if err != nil {
		s.t.Error(err)
		return
	}
	offer, err := s.conn.Exchange(ctx, d, dhcpv4.MessageTypeOffer, stormWaits)
	if err != nil {
		return
	}
	s.check("offered", mac, offer.YourIPAddr)
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithBroadcast(true))
	if err != nil {
		s.t.Error(err)
		return
	}
	sent := time.Now()
	ack, err := s.conn.Exchange(ctx, req, dhcpv4.MessageTypeAck, stormWaits)
	if err != nil {
		return
	}
	s.check("acknowledged", mac, ack.YourIPAddr)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[mac.String()] = stormAck{ip: ack.YourIPAddr.String(), sent: sent}
	s.owner[ack.YourIPAddr.String()] = mac.String()
	s.acks++
}

// check fails the test when ip was acknowledged to another client: a
// restart forgot that ACK.
func (s *leaseStorm) check(what string, mac net.HardwareAddr, ip net.IP) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.owner[ip.String()]; ok && o != mac.String() {
		s.t.Errorf("%s %s to %s, acknowledged to %s before a kill -9", what, ip, mac, o)
	}
}

func (s *leaseStorm) acked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks
}

// TestLeasesSurviveKill9: a storm of 16 DORAs in flight from 60 clients,
// each renewing again and again, while netsan is SIGKILLed 20 times, each
// 0–300 ms after the round's fifth ACK, with ACKs leaving and journal
// appends (and now and then a compaction) under way. No client is ever
// offered or acknowledged an address acknowledged to another before a
// kill, and after each restart /status lists every client's lease as its
// last ACK before the kill left it: the address, and an expiry no earlier
// than that REQUEST plus the lease time.
func TestLeasesSurviveKill9(t *testing.T) {
	netsantest.NeedTools(t, "curl")
	const (
		rounds    = 20
		clients   = 60
		inflight  = 16
		leaseTime = time.Hour
	)
	l := newNetnsLab(t, "52:54:00:00:00:99")
	path := dhcpInventory(t, t.TempDir(), `range = ["198.18.0.100", "198.18.0.199"]`, fmt.Sprintf(`enabled = false
[http]
listen = "198.18.0.1:8080"
[iscsi]
enabled = false
base_iqn = %q
`, testBase), "undionly.kpxe")
	n := startNetsan(t, path, l.Server, "")
	macs := make([]net.HardwareAddr, clients)
	for i := range macs {
		macs[i] = randomMAC()
	}
	storm := newLeaseStorm(t, l.client)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { storm.run(ctx, inflight, macs); close(done) }()
	defer func() { stop(); <-done }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	lost := 0
	for r := range rounds {
		from := storm.acked()
		netsantest.WaitFor(t, fmt.Sprintf("round %d: 5 ACKs", r), 30*time.Second, func() bool { return storm.acked() >= from+5 })
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		n.kill()
		acked := storm.snapshot()
		n.start()
		lost += checkStatusLeases(t, l.client, acked, leaseTime)
	}
	stop()
	<-done
	compactions := strings.Count(n.log.String(), "lease journal: compacted")
	t.Logf("%d kill -9 under a storm of %d clients, %d in flight: %d ACKs, %d compactions of the journal; %d clients' last leases lost",
		rounds, clients, inflight, storm.acked(), compactions, lost)
}

// snapshot returns every client's last ACK so far.
func (s *leaseStorm) snapshot() map[string]stormAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.last)
}

// checkStatusLeases waits for netsan's /status and fails the test for each
// client whose lease there is not at least its last ACK's: that address, an
// expiry no earlier than that REQUEST plus the lease time (a later renewal
// only moves it on). It returns how many failed.
func checkStatusLeases(t *testing.T, ns string, acked map[string]stormAck, leaseTime time.Duration) (lost int) {
	t.Helper()
	netsantest.WaitFor(t, "/status after a restart", 20*time.Second, func() bool {
		out, err := run(10*time.Second, nil, "ip", "netns", "exec", ns, "curl", "-sf", "http://198.18.0.1:8080/status.json")
		return err == nil && out != ""
	})
	have := map[string]statusLease{}
	for _, ls := range statusLeases(t, ns) {
		have[ls.MAC] = ls
	}
	for mac, a := range acked {
		if got := have[mac]; got.IP != a.ip || got.Expires.Before(a.sent.Add(leaseTime)) {
			t.Errorf("%s: last ACK %s, its REQUEST sent %s; /status has %+v", mac, a.ip, a.sent.Format(time.RFC3339Nano), got)
			lost++
		}
	}
	return lost
}
