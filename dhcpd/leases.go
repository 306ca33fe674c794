package dhcpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/netsan/netsan/atomicfile"
)

// LeaseFile is the name of the lease database inside server.data_dir.
const LeaseFile = "leases.json"

// offerHold is how long an offered pool address stays reserved for the
// client it was offered to (RFC 2131 4.3.1: the server should not offer it
// to another client meanwhile).
const offerHold = 30 * time.Second

// declineHold is how long a declined address stays out of use. Long enough
// that a client is not offered it again in its next few attempts, short
// enough that an inventory host whose fixed address was taken by a stray
// machine boots soon after the stray is removed.
const declineHold = 10 * time.Minute

// LeaseState is what a lease is, as persisted and as /status shows it.
type LeaseState string

// Lease states.
const (
	StateBound    LeaseState = "bound"
	StateDeclined LeaseState = "declined" // DHCPDECLINE: in use by someone; out of the pool until Expires
	// stateExpired is never stored: metrics count leases past Expires under it.
	stateExpired LeaseState = "expired"
)

// Lease is one binding of an address, as persisted and as /status shows it.
type Lease struct {
	IP      netip.Addr `json:"ip"`
	MAC     string     `json:"mac,omitempty"` // 52:54:00:00:00:01
	Host    string     `json:"host,omitempty"`
	State   LeaseState `json:"state"`
	Expires time.Time  `json:"expires"`
}

func (l *Lease) activeAt(now time.Time) bool { return now.Before(l.Expires) }

// leaseFileV1 is the on-disk layout; the version lets a later layout be read
// beside this one.
type leaseFileV1 struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

type offer struct {
	ip    netip.Addr
	until time.Time
}

// leaseStore holds every binding by address. Expired bindings are kept so a
// returning client gets its old address back; they are free for others.
// Every change that an ACK depends on is written to disk (sync) before the
// ACK leaves, so a kill -9 never forgets an address it handed out.
type leaseStore struct {
	path string

	mu      sync.Mutex
	byIP    map[netip.Addr]*Lease
	byMAC   map[string]*Lease     // bound leases only (active or expired)
	offers  map[string]offer      // mac → reserved address, memory only
	offered map[netip.Addr]string // the same, by address
	changes uint64                // bumped on every change that must reach disk

	wmu     sync.Mutex // serialises writers; a writer persists every change made before it snapshots
	written uint64
}

func openLeaseStore(dir string) (*leaseStore, error) {
	s := &leaseStore{
		path:    filepath.Join(dir, LeaseFile),
		byIP:    map[netip.Addr]*Lease{},
		byMAC:   map[string]*Lease{},
		offers:  map[string]offer{},
		offered: map[netip.Addr]string{},
	}
	if dir == "" {
		return nil, errors.New("lease store: server.data_dir is not set")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	var f leaseFileV1
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("lease store %s: %w", s.path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("lease store %s: unknown version %d", s.path, f.Version)
	}
	for i := range f.Leases {
		l := f.Leases[i]
		if !l.IP.Is4() {
			continue
		}
		s.byIP[l.IP] = &l
		if l.State == StateBound && l.MAC != "" {
			s.byMAC[l.MAC] = &l
		}
	}
	return s, nil
}

// byHW returns the client's bound lease (possibly expired), or nil.
func (s *leaseStore) byHW(mac net.HardwareAddr) *Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.byMAC[mac.String()]; l != nil {
		c := *l
		return &c
	}
	return nil
}

// usable reports whether ip may be given to mac now: nobody else holds an
// active binding, it is not quarantined, and no other client has an open offer.
// Called with mu held.
func (s *leaseStore) usable(ip netip.Addr, mac string, now time.Time) bool {
	if l := s.byIP[ip]; l != nil && l.activeAt(now) && (l.State != StateBound || l.MAC != mac) {
		return false
	}
	if m, ok := s.offered[ip]; ok && m != mac && now.Before(s.offers[m].until) {
		return false
	}
	return true
}

// Usable is usable with the lock taken.
func (s *leaseStore) Usable(ip netip.Addr, mac net.HardwareAddr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usable(ip, mac.String(), now)
}

// allocate picks a pool address for mac: its current or previous binding,
// then the address it asks for, then the lowest free one. reserved are
// addresses never handed out dynamically (inventory hosts, the server).
func (s *leaseStore) allocate(p pool, mac net.HardwareAddr, want netip.Addr, reserved func(netip.Addr) bool, now time.Time) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := mac.String()
	ok := func(ip netip.Addr) bool {
		return ip.IsValid() && p.contains(ip) && !reserved(ip) && s.usable(ip, m, now)
	}
	var pick netip.Addr
	if o, found := s.offers[m]; found && ok(o.ip) {
		pick = o.ip
	} else if l := s.byMAC[m]; l != nil && ok(l.IP) {
		pick = l.IP
	} else if ok(want) {
		pick = want
	} else {
		// Free addresses first: never-used, then expired (oldest first would be
		// kinder to returning clients, but lowest-first is predictable).
		for ip := p.first; p.contains(ip); ip = ip.Next() {
			if ok(ip) {
				if l := s.byIP[ip]; l == nil {
					pick = ip
					break
				} else if !pick.IsValid() {
					pick = ip
				}
			}
		}
	}
	if !pick.IsValid() {
		return netip.Addr{}, false
	}
	s.unoffer(m)
	if len(s.offers) >= maxOffers {
		s.pruneOffers(now)
	}
	s.offers[m] = offer{ip: pick, until: now.Add(offerHold)}
	s.offered[pick] = m
	return pick, true
}

// dropOffer forgets the address reserved for mac (it chose another server).
func (s *leaseStore) dropOffer(mac net.HardwareAddr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unoffer(mac.String())
}

// maxOffers is where expired reservations are swept, so that a storm of
// DISCOVERs from made-up MACs cannot grow memory without bound.
const maxOffers = 4096

func (s *leaseStore) pruneOffers(now time.Time) {
	for m, o := range s.offers {
		if !now.Before(o.until) {
			s.unoffer(m)
		}
	}
}

// unoffer drops mac's reservation. Called with mu held.
func (s *leaseStore) unoffer(mac string) {
	if o, ok := s.offers[mac]; ok {
		if s.offered[o.ip] == mac {
			delete(s.offered, o.ip)
		}
		delete(s.offers, mac)
	}
}

// bind records ip as mac's until expires. The caller must sync before it ACKs.
func (s *leaseStore) bind(ip netip.Addr, mac net.HardwareAddr, host string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bindLocked(ip, mac, host, expires)
}

func (s *leaseStore) bindLocked(ip netip.Addr, mac net.HardwareAddr, host string, expires time.Time) {
	m := mac.String()
	s.unoffer(m)
	if old := s.byMAC[m]; old != nil && old.IP != ip {
		// The client moved (e.g. the inventory gave it a fixed address):
		// its old address is free at once.
		old.Expires = time.Time{}
		delete(s.byMAC, m)
	}
	if prev := s.byIP[ip]; prev != nil && prev.MAC != m && s.byMAC[prev.MAC] == prev {
		// The address's previous (expired) holder no longer has a claim to it.
		delete(s.byMAC, prev.MAC)
	}
	l := &Lease{IP: ip, MAC: m, Host: host, State: StateBound, Expires: expires}
	s.byIP[ip] = l
	s.byMAC[m] = l
	s.changes++
}

// claim binds ip to mac if it is still usable by mac, in one step, so two
// clients racing for one address cannot both be ACKed.
func (s *leaseStore) claim(ip netip.Addr, mac net.HardwareAddr, host string, expires, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.usable(ip, mac.String(), now) {
		return false
	}
	s.bindLocked(ip, mac, host, expires)
	return true
}

// release ends mac's binding of ip (DHCPRELEASE). It reports whether there was one.
func (s *leaseStore) release(ip netip.Addr, mac net.HardwareAddr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.byIP[ip]
	if l == nil || l.State != StateBound || l.MAC != mac.String() || !l.activeAt(now) {
		return false
	}
	l.Expires = now // kept, expired, so the client gets it back next time if free
	s.changes++
	return true
}

// decline quarantines ip (DHCPDECLINE: another host answers ARP for it).
func (s *leaseStore) decline(ip netip.Addr, mac net.HardwareAddr, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := mac.String()
	if l := s.byMAC[m]; l != nil && l.IP == ip {
		delete(s.byMAC, m)
	}
	s.unoffer(m)
	s.byIP[ip] = &Lease{IP: ip, State: StateDeclined, Expires: until}
	s.changes++
}

// holder returns the lease that holds ip now, bound or declined, and
// whether there is one.
func (s *leaseStore) holder(ip netip.Addr, now time.Time) (Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.byIP[ip]; l != nil && l.activeAt(now) {
		return *l, true
	}
	return Lease{}, false
}

// heldFrom reports whether the lease keeps ip from mac: another client's
// binding, or a quarantine.
func (l Lease) heldFrom(mac net.HardwareAddr) bool {
	return l.State != StateBound || l.MAC != mac.String()
}

// active counts the bound leases not yet expired.
func (s *leaseStore) active(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.byIP {
		if l.State == StateBound && l.activeAt(now) {
			n++
		}
	}
	return n
}

// list returns every lease, ordered by address.
func (s *leaseStore) list() []Lease {
	s.mu.Lock()
	out := make([]Lease, 0, len(s.byIP))
	for _, l := range s.byIP {
		out = append(out, *l)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// sync makes every change made so far durable. Concurrent callers share
// one write: whoever holds wmu writes all changes up to its snapshot, and a
// caller whose change is already written returns at once (group commit).
func (s *leaseStore) sync() error {
	s.mu.Lock()
	want := s.changes
	s.mu.Unlock()

	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.written >= want {
		return nil
	}
	s.mu.Lock()
	gen := s.changes
	f := leaseFileV1{Version: 1, Leases: make([]Lease, 0, len(s.byIP))}
	for _, l := range s.byIP {
		f.Leases = append(f.Leases, *l)
	}
	s.mu.Unlock()
	sort.Slice(f.Leases, func(i, j int) bool { return f.Leases[i].IP.Less(f.Leases[j].IP) })
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return fmt.Errorf("lease store: %w", err)
	}
	if err := atomicfile.WriteFile(s.path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lease store: %w", err)
	}
	s.written = gen
	return nil
}

// pool is the dynamic range [first, last]; the zero pool contains nothing
// (static-only mode).
type pool struct{ first, last netip.Addr }

func (p pool) contains(ip netip.Addr) bool {
	return p.first.IsValid() && ip.IsValid() && p.first.Compare(ip) <= 0 && ip.Compare(p.last) <= 0
}
