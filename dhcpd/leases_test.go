package dhcpd

import (
	"encoding/json"
	"maps"
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
