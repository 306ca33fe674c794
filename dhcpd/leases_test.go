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
	s, err := openLeaseStore(dir)
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

	r, err := openLeaseStore(dir)
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
	if _, err := openLeaseStore(dir); err == nil || !strings.Contains(err.Error(), LeaseFile) {
		t.Errorf("corrupt lease file: err %v, want one naming the file", err)
	}
}

func TestSyncWritesOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	s, err := openLeaseStore(dir)
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
