package dhcpd

import (
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
	if len(ents) != 1 || ents[0].Name() != LeaseFile {
		t.Errorf("data_dir holds %v, want only %s (no temp files left)", ents, LeaseFile)
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LeaseFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openLeaseTable(dir, nil); err == nil || !strings.Contains(err.Error(), LeaseFile) {
		t.Errorf("corrupt lease file: err %v, want one naming the file", err)
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
	if _, err := os.Stat(filepath.Join(dir, LeaseFile)); !os.IsNotExist(err) {
		t.Errorf("sync with no change wrote the file: %v", err)
	}
}

// savedLeases is a LeaseStore in memory that records each Save.
type savedLeases struct {
	leases map[netip.Addr]Lease
	saves  [][]Lease
}

func (m *savedLeases) Load() ([]Lease, error) {
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, l)
	}
	sortLeases(out) // as the file is: the moved client's old address last
	return out, nil
}

func (m *savedLeases) Save(ls []Lease) error {
	m.saves = append(m.saves, ls)
	for _, l := range ls {
		m.leases[l.IP] = l
	}
	return nil
}

// TestSyncSavesOnlyChanges: a store is handed the leases that changed since
// the last save, not the table (a store in Ceph writes one key per lease),
// including the old address of a client that moved; a table loaded from it
// again knows the client by its new address.
func TestSyncSavesOnlyChanges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	st := &savedLeases{leases: map[netip.Addr]Lease{}}
	s, err := openLeaseTable("", st)
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
	if len(st.saves) != 2 || len(st.saves[0]) != 2 || len(st.saves[1]) != 2 ||
		st.saves[1][0].IP != c || st.saves[1][1].IP != a || !st.saves[1][1].Expires.IsZero() {
		t.Fatalf("saves %+v, want [a b] then [c, a expired]", st.saves)
	}
	r, err := openLeaseTable("", st)
	if err != nil {
		t.Fatal(err)
	}
	if l := r.byHW(macStray); l == nil || l.IP != c {
		t.Errorf("reloaded binding of the moved client: %+v, want %s", l, c)
	}
	if !r.Usable(a, macNode2, now) {
		t.Error("the moved client's old address is still held after reload")
	}
}
