package dhcpd

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/netsan/netsan/atomicfile"
)

// The lease journal is the default LeaseStore, in server.data_dir:
//
//	leases.snapshot      the table as it was when journal G began, written whole and atomically
//	leases.journal.G     every change since, appended
//	leases.journal.G+1…  later journals: a compaction under way or cut short, or a
//	                     journal left after a failed write
//
// Snapshot and journals are one format, a 16-byte header and records:
//
//	header  = "NSLEASE1" gen (uint64, big-endian)
//	record  = length (uint32, big-endian, 1..maxLeaseRecord)
//	          crc (uint32, big-endian, CRC-32C of payload)
//	          payload (length bytes: one Lease in JSON, as /status.json shows it)
//
// The snapshot's gen G is the first journal it does not hold; a journal's
// gen is the one in its name. Save appends one record per changed lease in
// one write and fdatasyncs the journal before it returns, and the ACKs wait
// for it: the table's group commit lets every ACK waiting at that moment
// share the write. A write costs its records, whatever the table's size.
//
// Once the journals hold more bytes than the snapshot (and at least
// compactMin), the server's compaction goroutine, under the lock, starts
// journal G+1 (header and directory synced) and takes the table; then,
// with Saves going on into G+1, writes the snapshot with gen G+1 (temp
// file, fsync, rename, directory fsync); then removes the journals below G+1.
//
// Load reads the snapshot (none: gen 0, empty), then replays journals G,
// G+1, … in order, a later record of an address replacing the earlier one.
// A journal's replay ends at its first record that is cut short or fails
// its checksum: the tail of an append a crash interrupted, which no ACK
// waited for. It is truncated there. A crash at any step of a compaction
// leaves the old snapshot with every journal since, or the new one with
// its own: nothing acknowledged is lost.
//
// A leases.json (netsan before the journal: the whole table in one JSON
// document, rewritten on every change) is read on first start, written as
// the snapshot, and removed.
const (
	leaseSnapshot      = "leases.snapshot"
	leaseJournalPrefix = "leases.journal."
	legacyLeaseFile    = "leases.json"

	leaseMagic     = "NSLEASE1"
	leaseHeaderLen = 16
	leaseRecordHdr = 8
	maxLeaseRecord = 64 << 10 // a lease is ~115 bytes; more is garbage, not a length
)

// compactMin is the journal size below which no compaction starts, so a
// small table is not rewritten every few changes.
const compactMin = 64 << 10

// compactRetry is the pause after a failed compaction (a full disk) before
// the next try.
const compactRetry = 10 * time.Second

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks where a file's records stop being whole: in a journal, the
// tail a crash cut short.
var errTorn = errors.New("torn record")

// appendLeaseHeader appends the header of a file of generation gen.
func appendLeaseHeader(b []byte, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, leaseMagic...), gen)
}

// appendLeaseRecord appends l as one record.
func appendLeaseRecord(b []byte, l Lease) ([]byte, error) {
	p, err := json.Marshal(l)
	if err != nil {
		return b, fmt.Errorf("lease %s: %w", l.IP, err)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, crc32c))
	return append(b, p...), nil
}

// parseLeaseRecords reads a snapshot or journal. It returns the file's
// generation, its leases in file order, and the length of the whole
// records read. err wraps errTorn when the records stop being whole before
// the end of b (then n is where), and is another error for a file that is
// not a lease file or a record whose checksum holds but whose content is
// not a lease: that is no torn write, and nothing after it is dropped.
func parseLeaseRecords(b []byte) (gen uint64, leases []Lease, n int, err error) {
	if len(b) < leaseHeaderLen {
		if m := min(len(b), len(leaseMagic)); string(b[:m]) != leaseMagic[:m] {
			return 0, nil, 0, errors.New("not a lease file")
		}
		return 0, nil, 0, fmt.Errorf("header: %w", errTorn)
	}
	if string(b[:len(leaseMagic)]) != leaseMagic {
		return 0, nil, 0, errors.New("not a lease file")
	}
	gen = binary.BigEndian.Uint64(b[len(leaseMagic):])
	n = leaseHeaderLen
	for n < len(b) {
		rest := b[n:]
		if len(rest) < leaseRecordHdr {
			return gen, leases, n, fmt.Errorf("offset %d: %w", n, errTorn)
		}
		size := binary.BigEndian.Uint32(rest)
		if size == 0 || size > maxLeaseRecord || int(size) > len(rest)-leaseRecordHdr {
			return gen, leases, n, fmt.Errorf("offset %d: length %d: %w", n, size, errTorn)
		}
		p := rest[leaseRecordHdr : leaseRecordHdr+int(size)]
		if crc32.Checksum(p, crc32c) != binary.BigEndian.Uint32(rest[4:]) {
			return gen, leases, n, fmt.Errorf("offset %d: checksum: %w", n, errTorn)
		}
		var l Lease
		if err := json.Unmarshal(p, &l); err != nil {
			return gen, leases, n, fmt.Errorf("offset %d: %w", n, err)
		}
		if !l.IP.IsValid() {
			return gen, leases, n, fmt.Errorf("offset %d: lease without an address", n)
		}
		leases = append(leases, l)
		n += leaseRecordHdr + int(size)
	}
	return gen, leases, n, nil
}

// leaseDir is what a data_dir holds, as readLeaseDir found it.
type leaseDir struct {
	dir      string
	snapGen  uint64 // the snapshot's generation; 0 without one
	snapSize int64
	journals []journalFile // generation snapGen and later, in order
	stale    []string      // journals older than the snapshot, and temp files
	legacy   bool          // the leases came from leases.json
	leases   map[netip.Addr]Lease
}

// journalFile is one journal as read.
type journalFile struct {
	gen  uint64
	good int64 // bytes of whole records, header included
	torn error // why reading stopped before the end; nil if it did not
}

func journalPath(dir string, gen uint64) string {
	return filepath.Join(dir, leaseJournalPrefix+strconv.FormatUint(gen, 10))
}

// readLeaseDir reads the snapshot and journals in dir, changing nothing: a
// running server may be appending.
func readLeaseDir(dir string) (*leaseDir, error) {
	d := &leaseDir{dir: dir, leases: map[netip.Addr]Lease{}}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	snap := filepath.Join(dir, leaseSnapshot)
	b, err := os.ReadFile(snap)
	switch {
	case err == nil:
		gen, leases, _, err := parseLeaseRecords(b)
		if err != nil {
			// Written whole and renamed into place: any flaw is damage.
			return nil, fmt.Errorf("%s: %w", snap, err)
		}
		d.snapGen, d.snapSize = gen, int64(len(b))
		for _, l := range leases {
			d.leases[l.IP] = l
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	var gens []uint64
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "."+leaseSnapshot+".tmp") {
			d.stale = append(d.stale, filepath.Join(dir, name)) // a snapshot write a crash cut short
			continue
		}
		s, ok := strings.CutPrefix(name, leaseJournalPrefix)
		if !ok {
			continue
		}
		gen, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			continue
		}
		if gen < d.snapGen {
			d.stale = append(d.stale, filepath.Join(dir, name))
			continue
		}
		gens = append(gens, gen)
	}
	slices.Sort(gens)
	for i, gen := range gens {
		if i > 0 && gen != gens[i-1]+1 {
			return nil, fmt.Errorf("%s: journal %d missing before it", journalPath(dir, gen), gens[i-1]+1)
		}
		if i == 0 && gen != d.snapGen {
			return nil, fmt.Errorf("%s: the snapshot is of generation %d, journal %d is missing", journalPath(dir, gen), d.snapGen, d.snapGen)
		}
		p := journalPath(dir, gen)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		fgen, leases, n, err := parseLeaseRecords(b)
		if err != nil && !errors.Is(err, errTorn) {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if n >= leaseHeaderLen && fgen != gen {
			return nil, fmt.Errorf("%s: header says generation %d", p, fgen)
		}
		for _, l := range leases {
			d.leases[l.IP] = l
		}
		d.journals = append(d.journals, journalFile{gen: gen, good: int64(n), torn: err})
	}
	if d.snapSize == 0 && len(d.journals) == 0 {
		leases, err := readLegacyLeaseFile(filepath.Join(dir, legacyLeaseFile))
		if err != nil {
			return nil, err
		}
		d.legacy = leases != nil
		for _, l := range leases {
			d.leases[l.IP] = l
		}
	}
	return d, nil
}

// list returns the leases read, by address.
func (d *leaseDir) list() []Lease {
	out := make([]Lease, 0, len(d.leases))
	for _, l := range d.leases {
		out = append(out, l)
	}
	sortLeases(out)
	return out
}

// leaseFileV1 is the layout of leases.json before the journal.
type leaseFileV1 struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

func readLegacyLeaseFile(path string) ([]Lease, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v leaseFileV1
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v.Version != 1 {
		return nil, fmt.Errorf("%s: unknown version %d", path, v.Version)
	}
	if v.Leases == nil {
		v.Leases = []Lease{}
	}
	// A lease with no address (a hand edit) binds nothing, and the
	// snapshot it would be migrated to refuses it.
	return slices.DeleteFunc(v.Leases, func(l Lease) bool { return !l.IP.IsValid() }), nil
}

// leaseJournal is the LeaseStore in a data_dir (see the format above).
type leaseJournal struct {
	dir        string
	log        *zap.Logger
	kick       chan struct{} // a compaction is due
	compactMin int64

	mu       sync.Mutex // Save against the compaction's switch of journal
	saved    map[netip.Addr]Lease
	gen      uint64   // the journal appended to
	f        *os.File // that journal; opened at the first Save
	logged   int64    // bytes in the journals since the snapshot
	snapSize int64
	buf      []byte
}

// openLeaseJournal reads the store in dir and makes it whole: a torn
// journal tail is truncated, a leases.json migrated to a snapshot, files
// older than the snapshot removed.
func openLeaseJournal(dir string, log *zap.Logger) (*leaseJournal, error) {
	if dir == "" {
		return nil, errors.New("server.data_dir is not set")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d, err := readLeaseDir(dir)
	if err != nil {
		return nil, err
	}
	j := &leaseJournal{dir: dir, log: log, kick: make(chan struct{}, 1), compactMin: compactMin,
		saved: d.leases, gen: d.snapGen, snapSize: d.snapSize}
	for _, jf := range d.journals {
		if jf.torn != nil {
			if err := repairJournal(journalPath(dir, jf.gen), jf.gen, jf.good); err != nil {
				return nil, err
			}
			log.Warn("lease journal: dropped a torn tail (an append a crash interrupted, not acknowledged)",
				zap.String("file", journalPath(dir, jf.gen)), zap.Int64("offset", max(jf.good, leaseHeaderLen)), zap.Error(jf.torn))
		}
		j.gen = jf.gen
		j.logged += max(jf.good, leaseHeaderLen)
	}
	if d.legacy {
		if err := j.writeSnapshot(d.snapGen, d.list()); err != nil {
			return nil, err
		}
		if err := os.Remove(filepath.Join(dir, legacyLeaseFile)); err != nil {
			return nil, err
		}
		log.Info("lease journal: migrated leases.json", zap.Int("leases", len(d.leases)))
	} else if err := os.Remove(filepath.Join(dir, legacyLeaseFile)); err == nil {
		log.Info("lease journal: removed leases.json, migrated before")
	}
	for _, p := range d.stale {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return j, nil
}

// repairJournal cuts a journal back to its whole records (good bytes), or
// to a fresh header when even that was cut short, and syncs it.
func repairJournal(path string, gen uint64, good int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if good < leaseHeaderLen {
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, err := f.Write(appendLeaseHeader(nil, gen)); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if err := f.Truncate(good); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (j *leaseJournal) Load() ([]Lease, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Lease, 0, len(j.saved))
	for _, l := range j.saved {
		out = append(out, l)
	}
	sortLeases(out)
	return out, nil
}

// Save appends leases to the journal and syncs it.
func (j *leaseJournal) Save(leases []Lease) error {
	if len(leases) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	buf := j.buf[:0]
	for _, l := range leases {
		var err error
		if buf, err = appendLeaseRecord(buf, l); err != nil {
			return err
		}
	}
	j.buf = buf
	if err := j.openAppend(); err != nil {
		return err
	}
	if err := j.append(buf); err != nil {
		// What reached the file is unknown: the next Save starts the next
		// journal, and a Load stops reading this one at the damage.
		j.f.Close()
		j.f = nil
		j.gen++
		return err
	}
	for _, l := range leases {
		j.saved[l.IP] = l
	}
	j.logged += int64(len(buf))
	if j.logged > max(j.snapSize, j.compactMin) {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (j *leaseJournal) append(b []byte) error {
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("%s: %w", j.f.Name(), err)
	}
	// The records' bytes and the file's new length; nothing else matters.
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("%s: fdatasync: %w", j.f.Name(), err)
	}
	return nil
}

// openAppend opens journal j.gen for appending, creating it with its
// header (synced, and its name in the directory) if it does not exist.
// Called with mu held.
func (j *leaseJournal) openAppend() error {
	if j.f != nil {
		return nil
	}
	p := journalPath(j.dir, j.gen)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() == 0 {
		if _, err = f.Write(appendLeaseHeader(nil, j.gen)); err == nil {
			if err = f.Sync(); err == nil {
				err = atomicfile.SyncDir(j.dir)
			}
		}
		j.logged += leaseHeaderLen
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p, err)
	}
	j.f = f
	return nil
}

// Close closes the journal; a later Save opens it again.
func (j *leaseJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// run compacts the journal when Save says it is due, until ctx ends.
func (j *leaseJournal) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.kick:
		}
		start := time.Now()
		gen, n, err := j.compact()
		if err != nil {
			j.log.Error("lease journal: compaction failed; the journals are kept", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(compactRetry):
			}
			continue
		}
		j.log.Info("lease journal: compacted", zap.Uint64("generation", gen), zap.Int("leases", n),
			zap.Duration("took", time.Since(start)))
	}
}

// compact writes the table as a new snapshot and drops the journals it
// holds: the three steps below, each leaving a store that loads whole.
func (j *leaseJournal) compact() (gen uint64, leases int, err error) {
	gen, table, before, err := j.rotate()
	if err != nil {
		return 0, 0, err
	}
	if err := j.writeSnapshot(gen, table); err != nil {
		return 0, 0, err
	}
	j.mu.Lock()
	j.logged -= before
	j.mu.Unlock()
	return gen, len(table), j.removeJournalsBefore(gen)
}

// rotate starts the next journal and returns its generation, the table
// as of its start, and the bytes of the journals before it.
func (j *leaseJournal) rotate() (gen uint64, table []Lease, before int64, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	before = j.logged
	j.gen++
	if err := j.openAppend(); err != nil {
		// Save tries this generation again; the old journal stays whole.
		return 0, nil, 0, err
	}
	table = make([]Lease, 0, len(j.saved))
	for _, l := range j.saved {
		table = append(table, l)
	}
	return j.gen, table, before, nil
}

// writeSnapshot replaces the snapshot with table as of journal gen's start.
func (j *leaseJournal) writeSnapshot(gen uint64, table []Lease) error {
	sortLeases(table)
	b := appendLeaseHeader(make([]byte, 0, leaseHeaderLen+len(table)*160), gen)
	for _, l := range table {
		var err error
		if b, err = appendLeaseRecord(b, l); err != nil {
			return err
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(j.dir, leaseSnapshot), b, 0o644); err != nil {
		return err
	}
	j.mu.Lock()
	j.snapSize = int64(len(b))
	j.mu.Unlock()
	return nil
}

// removeJournalsBefore removes the journals a snapshot of generation gen holds.
func (j *leaseJournal) removeJournalsBefore(gen uint64) error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), leaseJournalPrefix)
		if !ok {
			continue
		}
		if g, err := strconv.ParseUint(s, 10, 64); err == nil && g < gen {
			if err := os.Remove(filepath.Join(j.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
