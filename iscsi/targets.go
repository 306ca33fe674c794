package iscsi

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/scsi"
)

// targetSet is the configuration in force and its targets with their open
// logical units. It opens targets (reusing the LUs whose LUN is
// unchanged), swaps a new set in, and closes the LUs nothing uses any more.
type targetSet struct {
	log *zap.Logger
	// abort is the LUs' AbortTasks: PREEMPT AND ABORT ends other nexuses'
	// tasks through the session table.
	abort func(lu *scsi.LogicalUnit, nexuses []scsi.Nexus) (wait func())
	// bufs lends every LU its read buffers, so that a thousand sessions
	// each on a LU of its own keep the buffers of the reads in flight,
	// not a set per LU.
	bufs scsi.BufferPool

	// changing serializes the changes (Reload, ReopenTarget, close), each
	// from opening the LUs it needs to closing those it leaves unused, so
	// that no change closes a LU another has just reused.
	changing sync.Mutex

	// mu guards the fields below, replaced whole by a change: a map in
	// force is never written to, so what current returns may be read
	// without the lock.
	mu    sync.Mutex
	cfg   Config
	byIQN map[string]*target // nil once closed
}

// errStopped refuses changes and logins once the LUs are closed.
var errStopped = errors.New("iscsi: target stopped")

func newTargetSet(cfg Config, log *zap.Logger, abort func(*scsi.LogicalUnit, []scsi.Nexus) func()) (*targetSet, error) {
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("iscsi: state directory: %w", err)
		}
	}
	ts := &targetSet{log: log, abort: abort}
	byIQN, err := ts.open(cfg, nil)
	if err != nil {
		return nil, err
	}
	ts.cfg, ts.byIQN = cfg, byIQN
	return ts, nil
}

// pin runs f with the configuration and targets in force (byIQN nil once
// closed), holding them: no change takes effect during f. Lock order: the
// target set before the session table, never the other way round.
func (ts *targetSet) pin(f func(cfg *Config, byIQN map[string]*target) error) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return f(&ts.cfg, ts.byIQN)
}

// current returns the configuration and targets in force (byIQN nil once
// closed).
func (ts *targetSet) current() (Config, map[string]*target) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.cfg, ts.byIQN
}

// get returns the target iqn, nil when there is none.
func (ts *targetSet) get(iqn string) *target {
	_, byIQN := ts.current()
	return byIQN[iqn]
}

// change runs f, which opens what it needs and installs it with swap,
// alone among changes; f gets the configuration and targets in force.
func (ts *targetSet) change(f func(cfg Config, cur map[string]*target) error) error {
	ts.changing.Lock()
	defer ts.changing.Unlock()
	cfg, cur := ts.current()
	if cur == nil {
		return errStopped
	}
	return f(cfg, cur)
}

// swap makes cfg and next the ones in force and runs settle before any
// login can see them, so that a login completing meanwhile is either
// settled or sees next. It returns the targets replaced. Called within
// change.
func (ts *targetSet) swap(cfg Config, next map[string]*target, settle func()) (old map[string]*target) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	old = ts.byIQN
	ts.cfg, ts.byIQN = cfg, next
	settle()
	return old
}

// close closes every LU; changes and logins fail from then on.
func (ts *targetSet) close() {
	ts.changing.Lock()
	defer ts.changing.Unlock()
	ts.mu.Lock()
	old := ts.byIQN
	ts.byIQN = nil
	ts.mu.Unlock()
	ts.closeUnused(old, nil)
}

// closeUnused closes the LUs of from that no target of keep uses: the one
// way Reload, ReopenTarget, a failed open and the server's end let go of
// logical units.
func (ts *targetSet) closeUnused(from, keep map[string]*target) {
	inUse := map[*scsi.LogicalUnit]bool{}
	for _, t := range keep {
		if t != nil {
			for _, lu := range t.lus {
				inUse[lu] = true
			}
		}
	}
	for iqn, t := range from {
		if t == nil {
			continue
		}
		for n, lu := range t.lus {
			if inUse[lu] {
				continue
			}
			if err := lu.Close(); err != nil {
				ts.log.Error("close lun", zap.String("iqn", iqn), zap.Uint64("lun", n), zap.Error(err))
			}
		}
	}
}

// open builds the targets of cfg, reusing the LUs of reuse whose LUN
// configuration is unchanged. On error, it closes what it opened.
func (ts *targetSet) open(cfg Config, reuse map[string]*target) (map[string]*target, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	next := map[string]*target{}
	for _, tc := range cfg.Targets {
		t, err := ts.openTarget(cfg, tc, reuse[tc.IQN])
		if err != nil {
			ts.closeUnused(next, reuse)
			return nil, err
		}
		next[tc.IQN] = t
	}
	return next, nil
}

// openTarget opens the LUs of tc, taking those of reuse (which may be nil)
// whose LUN configuration is unchanged. On error, it closes what it opened.
func (ts *targetSet) openTarget(cfg Config, tc Target, reuse *target) (*target, error) {
	t := &target{cfg: tc, lus: map[uint64]*scsi.LogicalUnit{}}
	for _, l := range tc.LUNs {
		if reuse != nil {
			if lu := reuse.lus[l.Number]; lu != nil && reflect.DeepEqual(reuse.lunConfig(l.Number), l) {
				t.lus[l.Number] = lu
				continue
			}
		}
		lu, err := ts.openLU(cfg, tc.IQN, l)
		if err != nil {
			ts.closeUnused(map[string]*target{tc.IQN: t}, map[string]*target{tc.IQN: reuse})
			return nil, err
		}
		t.lus[l.Number] = lu
	}
	return t, nil
}

func (ts *targetSet) openLU(cfg Config, iqn string, l LUN) (*scsi.LogicalUnit, error) {
	openStore := cfg.OpenStore
	if openStore == nil {
		openStore = openFile
	}
	store, err := openStore(l)
	if err != nil {
		return nil, fmt.Errorf("iscsi: target %s lun %d: %w", iqn, l.Number, err)
	}
	// Identifiers derive from target and LUN so that they survive restarts.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", iqn, l.Number))
	prs := cfg.Reservations
	if prs == nil && cfg.StateDir != "" {
		prs = scsi.ReservationFiles{Dir: cfg.StateDir}
	}
	lu, err := scsi.NewLogicalUnit(scsi.LUConfig{
		Store:        store,
		ReadOnly:     l.ReadOnly,
		SerialNumber: hex.EncodeToString(sum[:8]),
		DeviceID:     binary.BigEndian.Uint64(sum[8:]),
		Reservations: prs,
		Name:         fmt.Sprintf("%s-lun%d", iqn, l.Number),
		AbortTasks:   ts.abort,
		Buffers:      &ts.bufs,
		Log:          ts.log.Named("scsi").With(zap.String("iqn", iqn), zap.Uint64("lun", l.Number)),
	})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("iscsi: target %s lun %d: %w", iqn, l.Number, err)
	}
	return lu, nil
}

// openFile is the store of a LUN whose Path is a file or a block device.
func openFile(l LUN) (backstore.Store, error) { return backstore.Open(l.Path, l.Size, l.ReadOnly) }

func validate(cfg Config) error {
	seen := map[string]bool{}
	for _, t := range cfg.Targets {
		if t.IQN == "" {
			return errors.New("iscsi: target without IQN")
		}
		if seen[t.IQN] {
			return fmt.Errorf("iscsi: target %s defined twice", t.IQN)
		}
		seen[t.IQN] = true
		luns := map[uint64]bool{}
		for _, l := range t.LUNs {
			if luns[l.Number] {
				return fmt.Errorf("iscsi: target %s: lun %d defined twice", t.IQN, l.Number)
			}
			if l.Number > 16383 {
				return fmt.Errorf("iscsi: target %s: lun %d beyond 16383", t.IQN, l.Number)
			}
			luns[l.Number] = true
		}
		inits := map[string]bool{}
		for _, a := range t.ACL {
			if inits[a.Initiator] {
				return fmt.Errorf("iscsi: target %s: initiator %s listed twice", t.IQN, a.Initiator)
			}
			inits[a.Initiator] = true
		}
	}
	return nil
}

// target is one configured target with its open logical units. It does not
// change once built: a change builds a new one.
type target struct {
	cfg Target
	lus map[uint64]*scsi.LogicalUnit // by target LUN
}

func (t *target) lunConfig(n uint64) LUN {
	for _, l := range t.cfg.LUNs {
		if l.Number == n {
			return l
		}
	}
	return LUN{}
}

// sameView reports whether an initiator sees the same target before and
// after a reload: same LUNs and the same ACL entry (or both open to all).
func sameView(a, b *target, initiator string) bool {
	return reflect.DeepEqual(a.cfg.LUNs, b.cfg.LUNs) && sameACL(a, b, initiator)
}

// sameACL reports whether an initiator has the same ACL entry in a and b
// (or both admit everyone).
func sameACL(a, b *target, initiator string) bool {
	ea, oka := a.aclFor(initiator)
	eb, okb := b.aclFor(initiator)
	return oka == okb && reflect.DeepEqual(ea, eb) && (len(a.cfg.ACL) == 0) == (len(b.cfg.ACL) == 0)
}

// aclFor returns the ACL entry admitting initiator; ok is false when the
// target's ACL does not admit it. An empty ACL admits everyone with a zero entry.
func (t *target) aclFor(initiator string) (ACL, bool) {
	if len(t.cfg.ACL) == 0 {
		return ACL{Initiator: initiator}, true
	}
	for _, a := range t.cfg.ACL {
		if a.Initiator == initiator {
			return a, true
		}
	}
	return ACL{}, false
}

// luns returns the initiator-visible LUN numbers of an ACL entry, sorted.
func (t *target) luns(a ACL) []uint64 {
	var out []uint64
	if a.Map == nil {
		for _, l := range t.cfg.LUNs {
			out = append(out, l.Number)
		}
	} else {
		for il, tl := range a.Map {
			if _, ok := t.lus[tl]; ok {
				out = append(out, il)
			}
		}
	}
	slices.Sort(out)
	return out
}

// lu maps an initiator LUN through the ACL to the target's LU.
func (t *target) lu(a ACL, initiatorLUN uint64) *scsi.LogicalUnit {
	tl := initiatorLUN
	if a.Map != nil {
		var ok bool
		if tl, ok = a.Map[initiatorLUN]; !ok {
			return nil
		}
	}
	return t.lus[tl]
}

// hostCredentials returns the CHAP credentials the ACLs of byIQN give an
// initiator.
func hostCredentials(byIQN map[string]*target, initiator string) []*login.Credential {
	var out []*login.Credential
	for _, t := range byIQN {
		for _, a := range t.cfg.ACL {
			if a.Initiator == initiator && a.CHAP != nil {
				out = append(out, credential(a.CHAP, t.cfg.IQN))
			}
		}
	}
	return out
}
