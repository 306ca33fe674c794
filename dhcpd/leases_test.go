package dhcpd

import (
	"encoding/json"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLeaseStorePersists(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	s, err := openLeaseTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101")
	s.bind(a, macStray, "", now.Add(time.Hour))
	s.decline(b, macNode2, now.Add(time.Hour))
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != leaseJournalPrefix+"0" {
		t.Errorf("data_dir holds %v, want only %s0 (no temp files left)", ents, leaseJournalPrefix)
	}

	r, err := openLeaseTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := r.byHW(macStray); l == nil || l.IP != a || !l.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("reopened binding %+v", l)
	}
	if got, held := r.holder(b, now); !held || got.State != StateDeclined {
		t.Errorf("declined address after reopen: %+v", got)
	}
	if r.Usable(a, macNode1, now) || !r.Usable(a, macStray, now) {
		t.Error("a bound address is usable by another client after reopen")
	}
	if !r.Usable(a, macNode1, now.Add(2*time.Hour)) {
		t.Error("an expired binding still blocks its address")
	}
}

func TestLeaseStoreRejectsGarbage(t *testing.T) {
	for _, name := range []string{legacyLeaseFile, leaseSnapshot, leaseJournalPrefix + "0"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := openLeaseTable(dir, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("corrupt %s: err %v, want one naming the file", name, err)
		}
	}
}

func TestSyncWritesOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	s, err := openLeaseTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("sync with no change wrote %v (%v)", ents, err)
	}
}

// records is Records in memory that keeps each Save.
type records struct {
	recs  map[string][]byte
	saves []map[string][]byte
}

func (m *records) Load() (map[string][]byte, error) { return maps.Clone(m.recs), nil }

func (m *records) Save(recs map[string][]byte) error {
	m.saves = append(m.saves, recs)
	maps.Copy(m.recs, recs)
	return nil
}

// TestSyncSavesOnlyChanges: records are written for the leases that
// changed since the last save, not the table (a store in Ceph writes one
// key per lease), including the old address of a client that moved; a
// table loaded from them again knows the client by its new address.
func TestSyncSavesOnlyChanges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rec := &records{recs: map[string][]byte{}}
	s, err := openLeaseTable("", LeaseRecords(rec))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101"), netip.MustParseAddr("198.18.0.90")
	s.bind(a, macStray, "", now.Add(time.Hour))
	s.bind(b, macNode1, "", now.Add(time.Hour))
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	s.bind(c, macStray, "", now.Add(time.Hour)) // moves from a: a is freed
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err != nil { // nothing changed: no save
		t.Fatal(err)
	}
	if len(rec.saves) != 2 || len(rec.saves[0]) != 2 || len(rec.saves[1]) != 2 || rec.saves[1][c.String()] == nil {
		t.Fatalf("saves %q, want [a b] then [c a]", rec.saves)
	}
	var old Lease
	if err := json.Unmarshal(rec.saves[1][a.String()], &old); err != nil || old.IP != a || !old.Expires.IsZero() {
		t.Fatalf("record of the address the client left: %+v, %v; want it expired", old, err)
	}
	r, err := openLeaseTable("", LeaseRecords(rec))
	if err != nil {
		t.Fatal(err)
	}
	if l := r.byHW(macStray); l == nil || l.IP != c {
		t.Errorf("reloaded binding of the moved client: %+v, want %s", l, c)
	}
	if !r.Usable(a, macNode2, now) || r.Usable(b, macNode2, now) {
		t.Error("reloaded table: the moved client's old address is held, or another's is free")
	}

	rec.recs["198.18.0.102"] = rec.recs[b.String()]
	if _, err := openLeaseTable("", LeaseRecords(rec)); err == nil || !strings.Contains(err.Error(), "198.18.0.102") {
		t.Errorf("a record under another address than its lease's: err %v", err)
	}
}

// TestAllocateSkipsTheLeased: with 20,000 addresses leased, a DISCOVER
// looks at the few addresses past them, not the whole table (it did, and
// 50,000 clients got 100 leases/s); and the pick is still the lowest
// never-leased address: one reserved then freed by a reload, one whose
// offer was dropped, before the next untouched one; an expired lease's
// address only when the pool has no other.
func TestAllocateSkipsTheLeased(t *testing.T) {
	s, err := openLeaseTable(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	const leased = 20_000
	first := netip.MustParseAddr("198.18.0.0")
	p := pool{first: first, last: netip.MustParseAddr("198.18.79.255")}
	ip := first
	for i := range leased {
		s.bind(ip, net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}, "", now.Add(time.Hour))
		ip = ip.Next()
	}
	hole := netip.MustParseAddr("198.18.0.7") // an inventory host's, until a reload drops it
	delete(s.byIP, hole)
	held := map[netip.Addr]bool{hole: true}
	looked := 0
	reserved := func(ip netip.Addr) bool { looked++; return held[ip] }
	mac := func(i int) net.HardwareAddr { return net.HardwareAddr{4, 0, 0, 0, 0, byte(i)} }

	want := []netip.Addr{ip, ip.Next(), ip.Next().Next()}
	for i, w := range want {
		looked = 0
		got, ok := s.allocate(p, mac(i), netip.Addr{}, reserved, now)
		if !ok || got != w {
			t.Fatalf("offer %d: %s, want %s", i, got, w)
		}
		if looked > 10 {
			t.Errorf("offer %d looked at %d addresses", i, looked)
		}
	}
	s.dropOffer(mac(1))
	delete(held, hole)
	if got, _ := s.allocate(p, mac(10), netip.Addr{}, reserved, now); got != hole {
		t.Errorf("after the reload: %s, want the freed %s", got, hole)
	}
	if got, _ := s.allocate(p, mac(11), netip.Addr{}, reserved, now); got != want[1] {
		t.Errorf("after a dropped offer: %s, want its %s", got, want[1])
	}

	small := pool{first: netip.MustParseAddr("198.18.0.8"), last: netip.MustParseAddr("198.18.0.12")}
	later := now.Add(2 * time.Hour) // every lease expired
	if got, _ := s.allocate(small, mac(12), netip.Addr{}, func(netip.Addr) bool { return false }, later); got != small.first {
		t.Errorf("a pool of expired leases: %s, want the lowest, %s", got, small.first)
	}
}
