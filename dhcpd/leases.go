package dhcpd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"
)

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

// LeaseStore keeps the lease table where a restart of netsan, or another
// gateway taking over, finds it. The server keeps the table in memory,
// loads it once at start, and hands Save the leases that changed: one write
// per change, not the whole table, so a store can keep a record per address.
// Save is never called concurrently.
type LeaseStore interface {
	// Load returns every lease saved.
	Load() ([]Lease, error)
	// Save stores leases, each replacing the saved lease of its address, and
	// returns only once they are durable: the ACK that depends on them is
	// sent after it.
	Save(leases []Lease) error
}

// Records is a store of records by key, each saved on its own and durable
// when Save returns: a RADOS object's omap (ceph.Cluster.Records) is one.
type Records interface {
	Load() (map[string][]byte, error)
	Save(records map[string][]byte) error
}

// LeaseRecords keeps leases in r, one record per address: the address is
// the key, the lease in JSON the value. A change writes one small record,
// whatever the size of the table.
func LeaseRecords(r Records) LeaseStore { return leaseRecords{r} }

type leaseRecords struct{ r Records }

func (s leaseRecords) Load() ([]Lease, error) {
	recs, err := s.r.Load()
	if err != nil {
		return nil, err
	}
	out := make([]Lease, 0, len(recs))
	for k, v := range recs {
		var l Lease
		if err := json.Unmarshal(v, &l); err != nil {
			return nil, fmt.Errorf("lease record %s: %w", k, err)
		}
		if l.IP.String() != k {
			return nil, fmt.Errorf("lease record %s: holds address %s", k, l.IP)
		}
		out = append(out, l)
	}
	sortLeases(out)
	return out, nil
}

func (s leaseRecords) Save(leases []Lease) error {
	recs := make(map[string][]byte, len(leases))
	for _, l := range leases {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		recs[l.IP.String()] = b
	}
	return s.r.Save(recs)
}

func sortLeases(ls []Lease) {
	sort.Slice(ls, func(i, j int) bool { return ls[i].IP.Less(ls[j].IP) })
}

type offer struct {
	ip    netip.Addr
	until time.Time
}

// leaseTable holds every binding by address. Expired bindings are kept so a
// returning client gets its old address back; they are free for others.
// Every change that an ACK depends on is saved to the store before the ACK
// leaves, so a kill -9 (or a failover) never forgets an address handed out.
type leaseTable struct {
	store LeaseStore

	mu      sync.Mutex
	byIP    map[netip.Addr]*Lease
	byMAC   map[string]*Lease     // bound leases only (active or expired)
	offers  map[string]offer      // mac → reserved address, memory only
	offered map[netip.Addr]string // the same, by address
	dirty   map[netip.Addr]bool   // addresses whose lease changed since the last save
	fresh   freshCursor
	changes uint64 // bumped on every change that must be saved

	wmu     sync.Mutex // serialises writers; a writer saves every change made before it snapshots
	written uint64
}

// openLeaseTable loads the table from store, or from the journal in dir
// when store is nil.
func openLeaseTable(dir string, store LeaseStore) (*leaseTable, error) {
	if store == nil {
		j, err := openLeaseJournal(dir, nil)
		if err != nil {
			return nil, fmt.Errorf("lease store: %w", err)
		}
		store = j
	}
	s := &leaseTable{
		store:   store,
		byIP:    map[netip.Addr]*Lease{},
		byMAC:   map[string]*Lease{},
		offers:  map[string]offer{},
		offered: map[netip.Addr]string{},
		dirty:   map[netip.Addr]bool{},
	}
	leases, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	for i := range leases {
		l := leases[i]
		if !l.IP.Is4() {
			continue
		}
		s.byIP[l.IP] = &l
		// A client that moved left its old binding expired at the zero
		// time: whatever the order of loading, its latest one is its own.
		if old := s.byMAC[l.MAC]; l.State == StateBound && l.MAC != "" && (old == nil || l.Expires.After(old.Expires)) {
			s.byMAC[l.MAC] = &l
		}
	}
	return s, nil
}

// byHW returns the client's bound lease (possibly expired), or nil.
func (s *leaseTable) byHW(mac net.HardwareAddr) *Lease {
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
func (s *leaseTable) usable(ip netip.Addr, mac string, now time.Time) bool {
	if l := s.byIP[ip]; l != nil && l.activeAt(now) && (l.State != StateBound || l.MAC != mac) {
		return false
	}
	if m, ok := s.offered[ip]; ok && m != mac && now.Before(s.offers[m].until) {
		return false
	}
	return true
}

// Usable is usable with the lock taken.
func (s *leaseTable) Usable(ip netip.Addr, mac net.HardwareAddr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usable(ip, mac.String(), now)
}

// allocate picks a pool address for mac: its current or previous binding,
// then the address it asks for, then the lowest free one. reserved are
// addresses never handed out dynamically (inventory hosts, the server).
func (s *leaseTable) allocate(p pool, mac net.HardwareAddr, want netip.Addr, reserved func(netip.Addr) bool, now time.Time) (netip.Addr, bool) {
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
	} else if ip := s.freshAddr(p, reserved, ok); ip.IsValid() {
		// Free addresses first: never-used, then expired (oldest first would be
		// kinder to returning clients, but lowest-first is predictable).
		pick = ip
	} else {
		for ip := p.first; p.contains(ip); ip = ip.Next() {
			if ok(ip) {
				pick = ip
				break
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

// freshCursor is where the search for a never-leased pool address starts.
// Leases are never forgotten, so the addresses below next stay leased (or
// reserved, those kept in reserved): a DISCOVER costs the addresses offered
// meanwhile, not the table, which at 50,000 leases it did.
type freshCursor struct {
	pool     pool
	next     netip.Addr   // every pool address below has a lease, or is in reserved
	reserved []netip.Addr // addresses below next without a lease, reserved when passed
}

// freshAddr returns the lowest pool address that never had a lease and ok
// accepts, or the zero Addr. Called with mu held.
func (s *leaseTable) freshAddr(p pool, reserved, ok func(netip.Addr) bool) netip.Addr {
	c := &s.fresh
	if c.pool != p {
		*c = freshCursor{pool: p, next: p.first}
	}
	for p.contains(c.next) {
		if s.byIP[c.next] == nil {
			if !reserved(c.next) {
				break
			}
			c.reserved = append(c.reserved, c.next)
		}
		c.next = c.next.Next()
	}
	// An address passed while reserved may be free now (a reload removed
	// its host): it comes first, being lower.
	c.reserved = slices.DeleteFunc(c.reserved, func(ip netip.Addr) bool { return s.byIP[ip] != nil })
	for _, ip := range c.reserved {
		if ok(ip) {
			return ip
		}
	}
	for ip := c.next; p.contains(ip); ip = ip.Next() {
		if s.byIP[ip] == nil && ok(ip) {
			return ip
		}
	}
	return netip.Addr{}
}

// dropOffer forgets the address reserved for mac (it chose another server).
func (s *leaseTable) dropOffer(mac net.HardwareAddr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unoffer(mac.String())
}

// maxOffers is where expired reservations are swept, so that a storm of
// DISCOVERs from made-up MACs cannot grow memory without bound.
const maxOffers = 4096

func (s *leaseTable) pruneOffers(now time.Time) {
	for m, o := range s.offers {
		if !now.Before(o.until) {
			s.unoffer(m)
		}
	}
}

// unoffer drops mac's reservation. Called with mu held.
func (s *leaseTable) unoffer(mac string) {
	if o, ok := s.offers[mac]; ok {
		if s.offered[o.ip] == mac {
			delete(s.offered, o.ip)
		}
		delete(s.offers, mac)
	}
}

// bind records ip as mac's until expires. The caller must sync before it ACKs.
func (s *leaseTable) bind(ip netip.Addr, mac net.HardwareAddr, host string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bindLocked(ip, mac, host, expires)
}

func (s *leaseTable) bindLocked(ip netip.Addr, mac net.HardwareAddr, host string, expires time.Time) {
	m := mac.String()
	s.unoffer(m)
	if old := s.byMAC[m]; old != nil && old.IP != ip {
		// The client moved (e.g. the inventory gave it a fixed address):
		// its old address is free at once.
		old.Expires = time.Time{}
		delete(s.byMAC, m)
		s.changed(old.IP)
	}
	if prev := s.byIP[ip]; prev != nil && prev.MAC != m && s.byMAC[prev.MAC] == prev {
		// The address's previous (expired) holder no longer has a claim to it.
		delete(s.byMAC, prev.MAC)
	}
	l := &Lease{IP: ip, MAC: m, Host: host, State: StateBound, Expires: expires}
	s.byIP[ip] = l
	s.byMAC[m] = l
	s.changed(ip)
}

// changed marks ip's lease for the next sync. Called with mu held.
func (s *leaseTable) changed(ip netip.Addr) {
	s.dirty[ip] = true
	s.changes++
}

// claim binds ip to mac if it is still usable by mac, in one step, so two
// clients racing for one address cannot both be ACKed.
func (s *leaseTable) claim(ip netip.Addr, mac net.HardwareAddr, host string, expires, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.usable(ip, mac.String(), now) {
		return false
	}
	s.bindLocked(ip, mac, host, expires)
	return true
}

// release ends mac's binding of ip (DHCPRELEASE). It reports whether there was one.
func (s *leaseTable) release(ip netip.Addr, mac net.HardwareAddr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.byIP[ip]
	if l == nil || l.State != StateBound || l.MAC != mac.String() || !l.activeAt(now) {
		return false
	}
	l.Expires = now // kept, expired, so the client gets it back next time if free
	s.changed(ip)
	return true
}

// decline quarantines ip (DHCPDECLINE: another host answers ARP for it).
func (s *leaseTable) decline(ip netip.Addr, mac net.HardwareAddr, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := mac.String()
	if l := s.byMAC[m]; l != nil && l.IP == ip {
		delete(s.byMAC, m)
	}
	s.unoffer(m)
	s.byIP[ip] = &Lease{IP: ip, State: StateDeclined, Expires: until}
	s.changed(ip)
}

// holder returns the lease that holds ip now, bound or declined, and
// whether there is one.
func (s *leaseTable) holder(ip netip.Addr, now time.Time) (Lease, bool) {
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
func (s *leaseTable) active(now time.Time) int {
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
func (s *leaseTable) list() []Lease {
	s.mu.Lock()
	out := make([]Lease, 0, len(s.byIP))
	for _, l := range s.byIP {
		out = append(out, *l)
	}
	s.mu.Unlock()
	sortLeases(out)
	return out
}

// sync makes every change made so far durable. Concurrent callers share
// one save: whoever holds wmu saves all changes up to its snapshot, and a
// caller whose change is already saved returns at once (group commit).
func (s *leaseTable) sync() error {
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
	changed := make([]Lease, 0, len(s.dirty))
	for ip := range s.dirty {
		changed = append(changed, *s.byIP[ip])
	}
	clear(s.dirty)
	s.mu.Unlock()
	sortLeases(changed)
	if err := s.store.Save(changed); err != nil {
		// Saved by the next sync, with whatever changed meanwhile.
		s.mu.Lock()
		for _, l := range changed {
			s.dirty[l.IP] = true
		}
		s.mu.Unlock()
		return fmt.Errorf("lease store: %w", err)
	}
	s.written = gen
	return nil
}

// run does the store's background work, if it has any (the journal's
// compaction), until ctx ends.
func (s *leaseTable) run(ctx context.Context) {
	if b, ok := s.store.(interface{ run(context.Context) }); ok {
		b.run(ctx)
	}
}

// pool is the dynamic range [first, last]; the zero pool contains nothing
// (static-only mode).
type pool struct{ first, last netip.Addr }

func (p pool) contains(ip netip.Addr) bool {
	return p.first.IsValid() && ip.IsValid() && p.first.Compare(ip) <= 0 && ip.Compare(p.last) <= 0
}
