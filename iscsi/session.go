package iscsi

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// session is an iSCSI session with its one connection (MaxConnections=1).
type session struct {
	srv       *Server
	conn      *conn
	tsih      uint16
	isid      [6]byte
	initiator string
	discovery bool
	authUser  string
	params    login.Params
	nexus     scsi.Nexus
	since     time.Time
	counters  *counters // the target and initiator's, for /metrics
	removed   bool      // by remove; guarded by srv.mu

	// readBytes and writtenBytes count this session's data, for /status.
	readBytes, writtenBytes atomic.Uint64

	view atomic.Pointer[sessionView]

	mu       sync.Mutex
	expCmdSN uint32
	maxCmdSN uint32 // as last advertised; never decreases
	running  int    // commands accepted and not yet answered
	tasks    map[uint32]*task
	nextTTT  uint32
	text     []byte // the rest of a Text Response the initiator continues
	textTTT  uint32
}

// sessionView is the target and ACL entry a session works with; Reload
// swaps it for sessions it keeps.
type sessionView struct {
	target *target
	acl    ACL
}

// targetView returns the session's target and ACL entry (target nil for discovery).
func (s *session) targetView() *sessionView { return s.view.Load() }

func (s *session) setTarget(t *target) {
	v := *s.view.Load()
	v.target = t
	s.view.Store(&v)
}

// addSession registers a completed login: TSIH allocation, the
// MaxSessions bound, and reinstatement of an older session with the same
// initiator, ISID and target (RFC 7143 §6.3.5).
func (s *Server) addSession(ls *loginState) (*session, error) {
	c := ls.c
	ss := &session{
		srv: s, conn: c, isid: ls.req.ISID, initiator: ls.initiator, discovery: ls.discovery,
		params: ls.neg.Params, since: time.Now(), tasks: map[uint32]*task{},
		expCmdSN: ls.req.CmdSN, maxCmdSN: ls.req.CmdSN + uint32(s.QueueDepth) - 1,
	}
	if ls.chap != nil && ls.chap.Done() {
		ss.authUser = ls.chap.User
	}
	iqn := ""
	if !ls.discovery {
		iqn = ls.tgt.cfg.IQN
	}
	ss.view.Store(&sessionView{target: ls.tgt, acl: ls.acl})
	ss.nexus = scsi.Nexus{InitiatorName: ls.initiator, ISID: ls.req.ISID, TargetName: iqn, TPGT: tpgt}

	// Reinstatement: the old session goes before the new one is admitted.
	s.mu.Lock()
	var old *session
	for _, o := range s.sessions {
		if o.initiator == ss.initiator && o.isid == ss.isid && o.discovery == ss.discovery && o.nexus.TargetName == iqn {
			old = o
		}
	}
	s.mu.Unlock()
	if old != nil {
		c.log.Info("session reinstatement closes the old session", zap.Uint16("tsih", old.tsih))
		old.conn.close(errors.New("session reinstated"))
		old.conn.wait()
	}

	err := s.targets.pin(func(cfg *Config, byIQN map[string]*target) error {
		if byIQN == nil {
			return failLogin(statusOutOfResources, "target shutting down")
		}
		if !ls.discovery {
			// A reload during the login may have changed what the initiator sees.
			nt := byIQN[iqn]
			if nt == nil || !sameView(ls.tgt, nt, ls.initiator) {
				return failLogin(statusTargetError, "target %s changed during login", iqn)
			}
			ss.view.Store(&sessionView{target: nt, acl: ls.acl})
		}
		// Under the target set's lock, so that a Reload either sees this
		// session or is seen by the check above.
		s.mu.Lock()
		defer s.mu.Unlock()
		max := cfg.MaxSessions
		if max <= 0 {
			max = DefaultMaxSessions
		}
		if len(s.sessions) >= max {
			return failLogin(statusOutOfResources, "%d sessions already", len(s.sessions))
		}
		for {
			s.nextTSIH++
			if s.nextTSIH == 0 {
				continue
			}
			if _, used := s.sessions[s.nextTSIH]; !used {
				break
			}
		}
		ss.tsih = s.nextTSIH
		s.sessions[ss.tsih] = ss
		// Discovery sessions move no data: only targets get counters, so the
		// map stays bounded by the initiators the ACLs admit.
		ss.counters = &counters{}
		if !ls.discovery {
			key := counterKey{target: iqn, initiator: ls.initiator}
			if s.counters[key] == nil {
				s.counters[key] = ss.counters
			}
			ss.counters = s.counters[key]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.log = c.log.With(zap.Uint16("tsih", ss.tsih))
	c.log.Info("login", zap.Bool("discovery", ss.discovery), zap.String("auth", ls.authMethod),
		zap.Bool("header_digest", ss.params.HeaderDigest), zap.Bool("data_digest", ss.params.DataDigest))
	return ss, nil
}

// remove unregisters the session and tells its LUs the nexus is gone.
func (s *session) remove() {
	s.srv.mu.Lock()
	if s.removed {
		s.srv.mu.Unlock()
		return
	}
	s.removed = true
	if s.srv.sessions[s.tsih] == s {
		delete(s.srv.sessions, s.tsih)
	}
	s.srv.mu.Unlock()
	if v := s.targetView(); v != nil && v.target != nil {
		for _, lu := range v.target.lus {
			lu.NexusLost(s.nexus)
		}
	}
}

// window returns ExpCmdSN and MaxCmdSN for an outgoing PDU. MaxCmdSN
// leaves room for QueueDepth commands in flight and never moves back.
func (s *session) window() (uint32, uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.expCmdSN + uint32(s.srv.QueueDepth-s.running) - 1
	if int32(m-s.maxCmdSN) > 0 {
		s.maxCmdSN = m
	}
	return s.expCmdSN, s.maxCmdSN
}

// admit applies CmdSN ordering (RFC 7143 §4.2.2.1) to a request: immediate
// ones pass; others must fall in [ExpCmdSN, MaxCmdSN] and advance ExpCmdSN.
// Out-of-window requests are silently ignored, as the RFC requires. With
// one connection per session requests arrive in order, so a CmdSN above
// ExpCmdSN means the initiator skipped numbers.
func (s *session) admit(h *pdu.Header, counts bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !h.Immediate {
		if int32(h.CmdSN-s.expCmdSN) < 0 || int32(h.CmdSN-s.maxCmdSN) > 0 {
			return false
		}
		s.expCmdSN = h.CmdSN + 1
	}
	if counts {
		s.running++
	}
	return true
}

func (s *session) finishTask(t *task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.finished {
		return
	}
	t.finished = true
	s.running--
	if s.tasks[t.itt] == t {
		delete(s.tasks, t.itt)
	}
	if t.buf != nil {
		s.srv.pool.Put(t.buf)
		t.buf = nil
	}
	close(t.done)
}

// lu maps a LUN field, as the initiator addressed it, through the ACL to
// the logical unit; nil when there is none.
func (s *session) lu(lunField uint64) *scsi.LogicalUnit {
	v := s.targetView()
	if v == nil || v.target == nil {
		return nil
	}
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], lunField)
	lun, ok := scsi.DecodeLUN(raw)
	if !ok {
		return nil
	}
	return v.target.lu(v.acl, lun)
}

// SessionInfo describes a session for /status.
type SessionInfo struct {
	TSIH         uint16    `json:"tsih"`
	Target       string    `json:"target,omitempty"`
	Initiator    string    `json:"initiator"`
	ISID         string    `json:"isid"`
	Remote       string    `json:"remote"`
	Discovery    bool      `json:"discovery"`
	AuthUser     string    `json:"chap_user,omitempty"`
	HeaderDigest bool      `json:"header_digest"`
	DataDigest   bool      `json:"data_digest"`
	Since        time.Time `json:"since"`
	// ReadBytes and WrittenBytes count the data of this session's
	// commands: Data-In sent, Data-Out received.
	ReadBytes    uint64 `json:"read_bytes"`
	WrittenBytes uint64 `json:"written_bytes"`
}

// Sessions lists the sessions in full feature phase.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, SessionInfo{
			TSIH: ss.tsih, Target: ss.nexus.TargetName, Initiator: ss.initiator, ISID: hex.EncodeToString(ss.isid[:]),
			Remote: ss.conn.nc.RemoteAddr().String(), Discovery: ss.discovery, AuthUser: ss.authUser,
			HeaderDigest: ss.params.HeaderDigest, DataDigest: ss.params.DataDigest, Since: ss.since,
			ReadBytes: ss.readBytes.Load(), WrittenBytes: ss.writtenBytes.Load(),
		})
	}
	return out
}
