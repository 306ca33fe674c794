package dhcpd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testLease is lease i of a table: its own address and MAC.
func testLease(i int, expires time.Time) Lease {
	return Lease{
		IP:      netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
		MAC:     fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i)),
		State:   StateBound,
		Expires: expires,
	}
}

func openJournal(t *testing.T, dir string) *leaseJournal {
	t.Helper()
	j, err := openLeaseJournal(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func save(t *testing.T, j *leaseJournal, leases ...Lease) {
	t.Helper()
	if err := j.Save(leases); err != nil {
		t.Fatal(err)
	}
}

// checkLeases opens the store in dir afresh, as a restart would, and
// compares its table with want.
func checkLeases(t *testing.T, dir string, want map[netip.Addr]Lease) *leaseJournal {
	t.Helper()
	j := openJournal(t, dir)
	got, err := j.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("loaded %d leases, want %d", len(got), len(want))
	}
	for _, l := range got {
		w := want[l.IP]
		if l.MAC != w.MAC || l.State != w.State || !l.Expires.Equal(w.Expires) {
			t.Fatalf("loaded %+v, saved %+v", l, w)
		}
	}
	return j
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestJournalTornTail: a crash in the middle of an append leaves the
// journal cut anywhere in its last write, or followed by garbage (blocks
// allocated, never written). At every such cut, a restart has every lease
// of the earlier, acknowledged writes, and what it saves next is read back
// after another restart: the torn tail was truncated, not appended after.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	exp := time.Unix(1_800_000_000, 0).UTC()
	j := openJournal(t, dir)
	acked := map[netip.Addr]Lease{}
	for i := range 4 {
		l := testLease(i, exp)
		save(t, j, l)
		acked[l.IP] = l
	}
	path := journalPath(dir, 0)
	before := fileSize(t, path)
	last := []Lease{testLease(1, exp.Add(time.Hour)), testLease(10, exp), testLease(11, exp)}
	save(t, j, last...)
	after := fileSize(t, path)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tails := map[string][]byte{"zeros": make([]byte, 300), "ones": bytes.Repeat([]byte{0xff}, 300)}
	for cut := before; cut < after; cut++ {
		tails[fmt.Sprintf("cut at %d", cut)] = nil
	}
	for name, tail := range tails {
		cut := before
		if tail == nil {
			cut, _ = strconv.ParseInt(strings.TrimPrefix(name, "cut at "), 10, 64)
		}
		d := t.TempDir()
		torn := append(append([]byte{}, full[:cut]...), tail...)
		if err := os.WriteFile(journalPath(d, 0), torn, 0o644); err != nil {
			t.Fatal(err)
		}
		r := openJournal(t, d)
		got, _ := r.Load()
		have := map[netip.Addr]Lease{}
		for _, l := range got {
			have[l.IP] = l
		}
		for ip, w := range acked {
			if l, ok := have[ip]; !ok || l.MAC != w.MAC || (ip != last[0].IP && !l.Expires.Equal(w.Expires)) {
				t.Fatalf("%s: acknowledged lease %+v loaded as %+v", name, w, l)
			}
		}
		want := have
		next := testLease(20, exp)
		save(t, r, next)
		want[next.IP] = next
		r.Close()
		checkLeases(t, d, want)
	}
	t.Logf("%d torn journals, each loaded whole up to its last acknowledged write", len(tails))
}

// TestJournalCompactionCrash: a kill at each step of a compaction (next
// journal started; snapshot written; old journals removed), with saves
// going on into the next journal meanwhile, loses nothing saved; a
// snapshot temp file left by the kill is removed at the next start.
func TestJournalCompactionCrash(t *testing.T) {
	exp := time.Unix(1_800_000_000, 0).UTC()
	steps := []string{"rotated", "rotated+saved", "snapshot written", "compacted"}
	for n, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir)
			saved := map[netip.Addr]Lease{}
			for i := range 50 {
				l := testLease(i%20, exp.Add(time.Duration(i)*time.Minute))
				save(t, j, l)
				saved[l.IP] = l
			}
			gen, table, _, err := j.rotate()
			if err != nil {
				t.Fatal(err)
			}
			if n >= 1 {
				l := testLease(5, exp.Add(time.Hour))
				save(t, j, l, testLease(30, exp))
				saved[l.IP], saved[testLease(30, exp).IP] = l, testLease(30, exp)
			}
			if n >= 2 {
				if err := j.writeSnapshot(gen, table); err != nil {
					t.Fatal(err)
				}
			}
			if n >= 3 {
				if err := j.removeJournalsBefore(gen); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(dir, "."+leaseSnapshot+".tmp123"), []byte("half a snap"), 0o644)
			r := checkLeases(t, copyDir(t, dir), saved)
			ents, _ := os.ReadDir(r.dir)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if strings.Contains(strings.Join(names, " "), ".tmp") || (n >= 2 && len(names) != 2) {
				t.Errorf("data_dir after restart: %v", names)
			}
		})
	}
}

// TestJournalCompactsInBackground: while the server runs, a journal grown
// past the snapshot is compacted by its goroutine, which stops with the
// context; a restart loads the same table from the snapshot and the
// journal since.
func TestJournalCompactsInBackground(t *testing.T) {
	dir := t.TempDir()
	exp := time.Unix(1_800_000_000, 0).UTC()
	j := openJournal(t, dir)
	j.compactMin = 4 << 10
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.run(ctx); close(done) }()
	saved := map[netip.Addr]Lease{}
	for i := range 2000 {
		l := testLease(i%100, exp.Add(time.Duration(i)*time.Second))
		save(t, j, l)
		saved[l.IP] = l
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j.mu.Lock()
		gen := j.gen
		j.mu.Unlock()
		if _, err := os.Stat(journalPath(dir, 0)); gen > 0 && os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no compaction in 10 s: journal generation %d", gen)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the compaction goroutine did not stop with its context")
	}
	if snap := fileSize(t, filepath.Join(dir, leaseSnapshot)); snap > 100*200 {
		t.Errorf("snapshot of 100 leases is %d bytes", snap)
	}
	checkLeases(t, dir, saved)
}

// TestJournalWriteFailure: after a write that failed (what reached the
// disk unknown), the next save goes to a fresh journal and a restart
// loads everything saved before and after.
func TestJournalWriteFailure(t *testing.T) {
	dir := t.TempDir()
	exp := time.Unix(1_800_000_000, 0).UTC()
	j := openJournal(t, dir)
	save(t, j, testLease(1, exp))
	j.f.Close() // the next write fails
	if err := j.Save([]Lease{testLease(2, exp)}); err == nil {
		t.Fatal("a save to a closed journal succeeded")
	}
	save(t, j, testLease(2, exp), testLease(3, exp))
	if _, err := os.Stat(journalPath(dir, 1)); err != nil {
		t.Fatalf("no fresh journal after the failed write: %v", err)
	}
	checkLeases(t, dir, map[netip.Addr]Lease{
		testLease(1, exp).IP: testLease(1, exp), testLease(2, exp).IP: testLease(2, exp), testLease(3, exp).IP: testLease(3, exp)})
}

// TestJournalMigratesLeasesJSON: an existing leases.json becomes the
// snapshot and goes; a restart finds its leases and what was saved since.
func TestJournalMigratesLeasesJSON(t *testing.T) {
	dir := t.TempDir()
	exp := time.Unix(1_800_000_000, 0).UTC()
	old := `{"version":1,"leases":[
	{"ip":"198.18.0.100","mac":"52:54:00:99:99:99","state":"bound","expires":"2027-01-15T08:00:00Z"},
	{"ip":"198.18.0.101","state":"declined","expires":"2027-01-15T08:00:00Z"}]}`
	if err := os.WriteFile(filepath.Join(dir, legacyLeaseFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	j := openJournal(t, dir)
	if _, err := os.Stat(filepath.Join(dir, legacyLeaseFile)); !os.IsNotExist(err) {
		t.Errorf("leases.json still there after the migration: %v", err)
	}
	save(t, j, testLease(1, exp))
	t2 := time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC)
	checkLeases(t, dir, map[netip.Addr]Lease{
		netip.MustParseAddr("198.18.0.100"): {MAC: "52:54:00:99:99:99", State: StateBound, Expires: t2},
		netip.MustParseAddr("198.18.0.101"): {State: StateDeclined, Expires: t2},
		testLease(1, exp).IP:                testLease(1, exp),
	})
}

// TestLeaseWriteCostIndependentOfTable: with 20,000 leases in the store, a
// change of one lease writes about one lease's bytes (the process's write
// count in /proc/self/io), not the table.
func TestLeaseWriteCostIndependentOfTable(t *testing.T) {
	s, err := openLeaseTable(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for i := range 20_000 {
		l := testLease(i, exp)
		s.byIP[l.IP] = &l
		s.changed(l.IP)
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	const writes = 20
	before := writtenBytes(t)
	for i := range writes {
		s.bind(testLease(i, exp).IP, net.HardwareAddr{0x52, 0x54, 0, 0, 0x10, byte(i)}, "node", exp.Add(time.Minute))
		if err := s.sync(); err != nil {
			t.Fatal(err)
		}
	}
	if per := (writtenBytes(t) - before) / writes; per > 1024 {
		t.Errorf("a change of one lease in a table of 20,000 writes %d bytes", per)
	}
}

// writtenBytes is the bytes this process has passed to write(2) so far.
func writtenBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no wchar in /proc/self/io: %s", b)
	return 0
}

// FuzzLeaseRecords: whatever bytes a snapshot or journal holds (a torn
// append, a bad disk), the parser returns without panicking, reports how
// far the whole records go, and the leases it returns are exactly those a
// parse of that prefix returns, and encode back to it.
func FuzzLeaseRecords(f *testing.F) {
	exp := time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC)
	valid := appendLeaseHeader(nil, 7)
	for i := range 3 {
		valid, _ = appendLeaseRecord(valid, testLease(i, exp))
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add(valid[:10])
	bad := bytes.Clone(valid)
	bad[leaseHeaderLen+9] ^= 1
	f.Add(bad)
	f.Add(append(bytes.Clone(valid), make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		gen, leases, n, err := parseLeaseRecords(b)
		if n < 0 || n > len(b) {
			t.Fatalf("read %d of %d bytes", n, len(b))
		}
		if err == nil && n != len(b) {
			t.Fatalf("no error, but read %d of %d bytes", n, len(b))
		}
		if n < leaseHeaderLen {
			if len(leases) != 0 {
				t.Fatalf("%d leases without a header", len(leases))
			}
			return
		}
		gen2, again, n2, err2 := parseLeaseRecords(b[:n])
		if err2 != nil || n2 != n || gen2 != gen || len(again) != len(leases) {
			t.Fatalf("the whole prefix: %d leases, %d bytes, %v; first read %d leases, %d bytes", len(again), n2, err2, len(leases), n)
		}
		enc := appendLeaseHeader(nil, gen)
		for _, l := range leases {
			if enc, err = appendLeaseRecord(enc, l); err != nil {
				t.Fatal(err)
			}
		}
		_, back, m, err := parseLeaseRecords(enc)
		if err != nil || m != len(enc) || len(back) != len(leases) {
			t.Fatalf("re-encoded: %d leases, %v", len(back), err)
		}
		for i := range back {
			if back[i].IP != leases[i].IP || back[i].MAC != leases[i].MAC || back[i].State != leases[i].State || !back[i].Expires.Equal(leases[i].Expires) {
				t.Fatalf("lease %d: %+v re-encoded as %+v", i, leases[i], back[i])
			}
		}
	})
}
