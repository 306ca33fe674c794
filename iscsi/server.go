// Package iscsi is netsan's iSCSI target (RFC 7143): portals, login and
// CHAP, sessions with their CmdSN window, task management, and the logical
// units of iscsi/scsi over iscsi/backstore. It is handed a Config — its whole
// view of the inventory — and knows nothing of hosts or MACs.
package iscsi

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// Defaults of the Server's tunables.
const (
	DefaultMaxSessions  = 256
	DefaultQueueDepth   = 64
	DefaultLoginTimeout = 15 * time.Second
	DefaultNOPInterval  = 15 * time.Second
	DefaultNOPTimeout   = 15 * time.Second
	DefaultLogoutGrace  = 3 * time.Second
	// DefaultMaxPendingLogins matches DefaultMaxSessions: as many logins
	// in flight as sessions the target will take.
	DefaultMaxPendingLogins = 256
)

// tpgt is our one target portal group: every portal serves every target.
const tpgt = 1

// Server is an iSCSI target. Set the tunables between New and Serve.
type Server struct {
	// QueueDepth is the CmdSN window per session: commands accepted and not
	// yet answered.
	QueueDepth int
	// LoginTimeout bounds a login from connect to full feature phase.
	LoginTimeout time.Duration
	// NOPInterval is the idle time after which a NOP-In pings the initiator
	// (0 disables pings); NOPTimeout how long after that a silent
	// connection is dropped.
	NOPInterval, NOPTimeout time.Duration
	// LogoutGrace is how long Serve waits, when stopping, for initiators to
	// log out after being asked to.
	LogoutGrace time.Duration
	// MaxPendingLogins bounds the connections not yet in full feature
	// phase. A connection arriving at the bound closes the oldest pending
	// one, so a flood of idle or half-finished logins holds at most this
	// many descriptors, while a real initiator arriving amid it — the
	// newest — keeps its whole LoginTimeout. (A plain cap that refuses new
	// connections would lock the real initiators out instead.) 0 means no
	// bound.
	MaxPendingLogins int

	log    *zap.Logger
	pool   pdu.Pool
	portal *portal

	mu       sync.Mutex
	cfg      Config
	targets  map[string]*target
	sessions map[uint16]*session // by TSIH
	nextTSIH uint16
	counters map[counterKey]*counters
}

// target is one configured target with its open logical units.
type target struct {
	cfg Target
	lus map[uint64]*scsi.LogicalUnit // by target LUN
}

// New validates cfg and opens every LUN's backing store. The LUs stay
// open until Serve returns.
func New(cfg Config, log *zap.Logger) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("iscsi")
	s := &Server{
		QueueDepth:       DefaultQueueDepth,
		LoginTimeout:     DefaultLoginTimeout,
		NOPInterval:      DefaultNOPInterval,
		NOPTimeout:       DefaultNOPTimeout,
		LogoutGrace:      DefaultLogoutGrace,
		MaxPendingLogins: DefaultMaxPendingLogins,
		log:              log,
		portal:           newPortal(log),
		sessions:         map[uint16]*session{},
		counters:         map[counterKey]*counters{},
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("iscsi: state directory: %w", err)
		}
	}
	targets, err := s.openTargets(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.cfg, s.targets = cfg, targets
	return s, nil
}

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

// openTargets builds the targets of cfg, reusing the LUs of old whose LUN
// configuration is unchanged. On error, what it opened is closed again.
func (s *Server) openTargets(cfg Config, old map[string]*target) (map[string]*target, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	targets := map[string]*target{}
	var opened []*scsi.LogicalUnit
	fail := func(err error) (map[string]*target, error) {
		for _, lu := range opened {
			lu.Close()
		}
		return nil, err
	}
	for _, tc := range cfg.Targets {
		t := &target{cfg: tc, lus: map[uint64]*scsi.LogicalUnit{}}
		for _, l := range tc.LUNs {
			if ot := old[tc.IQN]; ot != nil {
				if lu := ot.lus[l.Number]; lu != nil && reflect.DeepEqual(ot.lunConfig(l.Number), l) {
					t.lus[l.Number] = lu
					continue
				}
			}
			lu, err := s.openLU(cfg.StateDir, tc.IQN, l)
			if err != nil {
				return fail(err)
			}
			opened = append(opened, lu)
			t.lus[l.Number] = lu
		}
		targets[tc.IQN] = t
	}
	return targets, nil
}

func (t *target) lunConfig(n uint64) LUN {
	for _, l := range t.cfg.LUNs {
		if l.Number == n {
			return l
		}
	}
	return LUN{}
}

func (s *Server) openLU(stateDir, iqn string, l LUN) (*scsi.LogicalUnit, error) {
	store, err := backstore.Open(l.Path, l.Size, l.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("iscsi: target %s lun %d: %w", iqn, l.Number, err)
	}
	// Identifiers derive from target and LUN so that they survive restarts.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", iqn, l.Number))
	var prFile string
	if stateDir != "" {
		prFile = filepath.Join(stateDir, fmt.Sprintf("pr-%s-lun%d", safeName(iqn), l.Number))
	}
	lu, err := scsi.NewLogicalUnit(scsi.LUConfig{
		Store:        store,
		ReadOnly:     l.ReadOnly,
		SerialNumber: hex.EncodeToString(sum[:8]),
		DeviceID:     binary.BigEndian.Uint64(sum[8:]),
		PRFile:       prFile,
		AbortTasks:   s.abortPreempted,
		Log:          s.log.Named("scsi").With(zap.String("iqn", iqn), zap.Uint64("lun", l.Number)),
	})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("iscsi: target %s lun %d: %w", iqn, l.Number, err)
	}
	return lu, nil
}

// safeName keeps an IQN usable as a file name.
func safeName(iqn string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, iqn)
}

// Serve listens on cfg.Listen and serves until ctx is done; then it asks
// every initiator to log out, closes what remains, and syncs and closes the
// logical units.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	listen := s.cfg.Listen
	s.mu.Unlock()
	if err := s.portal.listen(ctx, listen, s.MaxPendingLogins); err != nil {
		if !errors.Is(err, errServing) {
			s.closeLUs()
		}
		return err
	}
	s.portal.accept(ctx, s.newConn)
	s.portal.shutdown(s.LogoutGrace)
	s.closeLUs()
	s.log.Info("stopped")
	return nil
}

// ListenAddrs blocks until Serve has opened its listeners and returns
// their addresses (useful with port 0). It returns nil if Serve failed.
func (s *Server) ListenAddrs() []net.Addr { return s.portal.addrs() }

func (s *Server) closeLUs() {
	s.mu.Lock()
	targets := s.targets
	s.targets = nil
	s.mu.Unlock()
	for iqn, t := range targets {
		for n, lu := range t.lus {
			if err := lu.Close(); err != nil {
				s.log.Error("close lun", zap.String("iqn", iqn), zap.Uint64("lun", n), zap.Error(err))
			}
		}
	}
}

// Reload swaps in cfg. Sessions whose target and ACL entry are unchanged go
// on undisturbed, and so do those whose target only gained or lost LUNs
// (they get a unit attention); sessions of removed targets or changed ACL
// entries are dropped. LUs whose LUN configuration is unchanged stay open.
func (s *Server) Reload(cfg Config) error {
	s.mu.Lock()
	old := s.targets
	s.mu.Unlock()
	targets, err := s.openTargets(cfg, old)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !reflect.DeepEqual(cfg.Listen, s.cfg.Listen) && s.portal.serving() {
		s.log.Warn("listen addresses changed; takes effect on restart")
	}
	s.cfg = cfg
	s.targets = targets
	var drop []*session
	changed := map[*target]bool{}
	for _, ss := range s.sessions {
		if ss.discovery {
			continue
		}
		ot, nt := ss.targetView().target, targets[ss.nexus.TargetName]
		if nt == nil || !sameACL(ot, nt, ss.initiator) {
			drop = append(drop, ss)
			continue
		}
		// LUNs added or removed: the session goes on and learns it from a
		// unit attention (REPORTED LUNS DATA HAS CHANGED).
		if !reflect.DeepEqual(ot.cfg.LUNs, nt.cfg.LUNs) {
			changed[nt] = true
		}
		ss.setTarget(nt)
	}
	s.mu.Unlock()
	for t := range changed {
		for _, lu := range t.lus {
			lu.ReportedLUNsChanged()
		}
	}
	for _, ss := range drop {
		s.log.Info("dropping session after reload", zap.String("iqn", ss.nexus.TargetName), zap.String("initiator", ss.initiator))
		ss.conn.close(errors.New("target or ACL changed by reload"))
		ss.conn.wait()
	}
	// Close the LUs no target uses any more, now that their sessions are gone.
	inUse := map[*scsi.LogicalUnit]bool{}
	for _, t := range targets {
		for _, lu := range t.lus {
			inUse[lu] = true
		}
	}
	for iqn, t := range old {
		for n, lu := range t.lus {
			if !inUse[lu] {
				if err := lu.Close(); err != nil {
					s.log.Error("close lun", zap.String("iqn", iqn), zap.Uint64("lun", n), zap.Error(err))
				}
			}
		}
	}
	return nil
}

// LogoutTarget ends every session of a target, as before its image is
// replaced: each initiator is asked to log out (Async Message), and the
// sessions left after LogoutGrace are closed.
func (s *Server) LogoutTarget(iqn string) error {
	s.mu.Lock()
	if s.targets[iqn] == nil {
		s.mu.Unlock()
		return fmt.Errorf("iscsi: no target %s", iqn)
	}
	var conns []*conn
	for _, ss := range s.sessions {
		if !ss.discovery && ss.nexus.TargetName == iqn {
			conns = append(conns, ss.conn)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.requestLogout()
	}
	deadline := time.After(s.LogoutGrace)
	for _, c := range conns {
		select {
		case <-c.finished:
		case <-deadline:
			c.close(errors.New("no logout within the grace period"))
			c.wait()
		}
	}
	return nil
}

// ReopenTarget reopens a target's backing files (replaced underneath, as by
// `netsan image reset`): its sessions end, and the next logins see the new
// files.
func (s *Server) ReopenTarget(iqn string) error {
	s.mu.Lock()
	old := s.targets[iqn]
	stateDir := s.cfg.StateDir
	s.mu.Unlock()
	if old == nil {
		return fmt.Errorf("iscsi: no target %s", iqn)
	}
	nt := &target{cfg: old.cfg, lus: map[uint64]*scsi.LogicalUnit{}}
	for _, l := range old.cfg.LUNs {
		lu, err := s.openLU(stateDir, iqn, l)
		if err != nil {
			for _, o := range nt.lus {
				o.Close()
			}
			return err
		}
		nt.lus[l.Number] = lu
	}
	s.mu.Lock()
	if s.targets[iqn] != old {
		// A reload or another reopen came first.
		s.mu.Unlock()
		for _, o := range nt.lus {
			o.Close()
		}
		return fmt.Errorf("iscsi: target %s changed while reopening", iqn)
	}
	s.targets[iqn] = nt
	var drop []*session
	for _, ss := range s.sessions {
		if !ss.discovery && ss.nexus.TargetName == iqn {
			drop = append(drop, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range drop {
		ss.conn.close(errors.New("target reopened"))
		ss.conn.wait()
	}
	for n, lu := range old.lus {
		if err := lu.Close(); err != nil {
			s.log.Error("close lun", zap.String("iqn", iqn), zap.Uint64("lun", n), zap.Error(err))
		}
	}
	s.log.Info("target reopened", zap.String("iqn", iqn))
	return nil
}

// dropSessions closes the connections of every session of a target but
// except (a target cold reset).
func (s *Server) dropSessions(iqn string, except *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if ss != except && !ss.discovery && ss.nexus.TargetName == iqn {
			ss.conn.close(errors.New("target cold reset"))
		}
	}
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
