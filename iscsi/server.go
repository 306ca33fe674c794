// Package iscsi is netsan's iSCSI target (RFC 7143): portals, login and
// CHAP, sessions with their CmdSN window, task management, and the logical
// units of iscsi/scsi over iscsi/backstore. It is handed a Config — its whole
// view of the inventory — and knows nothing of hosts or MACs.
//
// A Server composes three parts, each with its own lock: the portal
// (portal.go: listeners, accepting, the bound on pending logins, closing
// connections at the end), the target set (targets.go: the configuration
// in force, its targets and logical units, ACL views, Reload and
// ReopenTarget) and the session table (sessions.go: sessions by TSIH,
// MaxSessions, traffic counters). A connection (conn.go) logs in
// (loginphase.go), then serves full feature phase (fullfeature.go):
// commands with R2T and Data-Out, run by workers (command.go, task.go),
// task management (tmf.go), text requests and SendTargets (text.go), every
// response through its writer (writer.go). The wire format is iscsi/pdu,
// the key negotiation and CHAP iscsi/login.
package iscsi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/timeline"
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
	// Events, when set, is told of each login to a target, by initiator.
	Events *timeline.Recorder

	log    *zap.Logger
	pool   pdu.Pool
	portal *portal
	// targets is the configuration in force with its targets and LUs.
	// Lock order: targets before sessions.
	targets  *targetSet
	sessions *sessionTable
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
		sessions:         newSessionTable(),
	}
	targets, err := newTargetSet(cfg, log, s.abortPreempted)
	if err != nil {
		return nil, err
	}
	s.targets = targets
	return s, nil
}

// Serve listens on cfg.Listen and serves until ctx is done; then it asks
// every initiator to log out, closes what remains, and syncs and closes the
// logical units.
func (s *Server) Serve(ctx context.Context) error {
	cfg, _ := s.targets.current()
	if err := s.portal.listen(ctx, cfg.Listen, s.MaxPendingLogins); err != nil {
		if !errors.Is(err, errServing) {
			s.targets.close()
		}
		return err
	}
	s.portal.accept(ctx, s.newConn)
	s.portal.shutdown(s.LogoutGrace)
	s.targets.close()
	s.log.Info("stopped")
	return nil
}

// ListenAddrs blocks until Serve has opened its listeners and returns
// their addresses (useful with port 0). It returns nil if Serve failed.
func (s *Server) ListenAddrs() []net.Addr { return s.portal.addrs() }

// Reload swaps in cfg. Sessions whose target and ACL entry are unchanged go
// on undisturbed, and so do those whose target only gained or lost LUNs
// (they get a unit attention); sessions of removed targets or changed ACL
// entries are dropped. LUs whose LUN configuration is unchanged stay open.
func (s *Server) Reload(cfg Config) error {
	return s.targets.change(func(old Config, cur map[string]*target) error {
		next, err := s.targets.open(cfg, cur)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(cfg.Listen, old.Listen) && s.portal.serving() {
			s.log.Warn("listen addresses changed; takes effect on restart")
		}
		s.install(cfg, next, "target or ACL changed by reload", func(ss *session, nt *target) bool {
			return nt == nil || !sameACL(ss.targetView().target, nt, ss.initiator)
		})
		return nil
	})
}

// ReopenTarget reopens a target's backing files (replaced underneath, as by
// `netsan image reset`): its sessions end, and the next logins see the new
// files.
func (s *Server) ReopenTarget(iqn string) error {
	return s.targets.change(func(cfg Config, cur map[string]*target) error {
		old := cur[iqn]
		if old == nil {
			return fmt.Errorf("iscsi: no target %s", iqn)
		}
		nt, err := s.targets.openTarget(cfg, old.cfg, nil)
		if err != nil {
			return err
		}
		next := maps.Clone(cur)
		next[iqn] = nt
		s.install(cfg, next, "target reopened", func(ss *session, _ *target) bool {
			return ss.nexus.TargetName == iqn
		})
		s.log.Info("target reopened", zap.String("iqn", iqn))
		return nil
	})
}

// install makes cfg and next the configuration and targets in force, and
// settles the sessions: those drop picks (given their target in next, nil
// if gone) end; the others move to their target in next, and learn from a
// unit attention (REPORTED LUNS DATA HAS CHANGED) of LUNs added or
// removed. Once the dropped sessions are gone, the LUs next does not use
// are closed. Reload and ReopenTarget both change targets through it,
// within s.targets.change.
func (s *Server) install(cfg Config, next map[string]*target, why string, drop func(ss *session, nt *target) bool) {
	var gone []*session
	changed := map[*target]bool{}
	old := s.targets.swap(cfg, next, func() {
		s.sessions.each(func(ss *session) {
			if ss.discovery {
				return
			}
			nt := next[ss.nexus.TargetName]
			if drop(ss, nt) {
				gone = append(gone, ss)
				return
			}
			if !reflect.DeepEqual(ss.targetView().target.cfg.LUNs, nt.cfg.LUNs) {
				changed[nt] = true
			}
			ss.setTarget(nt)
		})
	})
	for t := range changed {
		for _, lu := range t.lus {
			lu.ReportedLUNsChanged()
		}
	}
	for _, ss := range gone {
		ss.conn.close(errors.New(why))
		ss.conn.wait()
	}
	s.targets.closeUnused(old, next)
}

// LogoutTarget ends every session of a target, as before its image is
// replaced: each initiator is asked to log out (Async Message), and the
// sessions left after LogoutGrace are closed.
func (s *Server) LogoutTarget(iqn string) error {
	if s.targets.get(iqn) == nil {
		return fmt.Errorf("iscsi: no target %s", iqn)
	}
	sessions := s.sessions.find(ofTarget(iqn))
	for _, ss := range sessions {
		ss.conn.requestLogout()
	}
	deadline := time.After(s.LogoutGrace)
	for _, ss := range sessions {
		c := ss.conn
		select {
		case <-c.finished:
		case <-deadline:
			c.close(errors.New("no logout within the grace period"))
			c.wait()
		}
	}
	return nil
}

// dropSessions closes the connections of every session of a target but
// except (a target cold reset).
func (s *Server) dropSessions(iqn string, except *session) {
	for _, ss := range s.sessions.find(ofTarget(iqn)) {
		if ss != except {
			ss.conn.close(errors.New("target cold reset"))
		}
	}
}
