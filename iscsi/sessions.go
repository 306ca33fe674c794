package iscsi

import (
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/scsi"
	"github.com/netsan/netsan/timeline"
)

// sessionTable is the sessions in full feature phase by TSIH: TSIH
// allocation, the MaxSessions bound, and the traffic counters /metrics
// shows by target and initiator, which outlive the sessions feeding them.
type sessionTable struct {
	mu       sync.Mutex
	byTSIH   map[uint16]*session
	nextTSIH uint16
	traffic  map[counterKey]*counters
}

func newSessionTable() *sessionTable {
	return &sessionTable{byTSIH: map[uint16]*session{}, traffic: map[counterKey]*counters{}}
}

// add gives ss a TSIH and its target and initiator's counters, unless max
// sessions (0: DefaultMaxSessions) are open already.
func (st *sessionTable) add(ss *session, max int) error {
	if max <= 0 {
		max = DefaultMaxSessions
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.byTSIH) >= max {
		return failLogin(statusOutOfResources, "%d sessions already", len(st.byTSIH))
	}
	for {
		st.nextTSIH++
		if st.nextTSIH == 0 {
			continue
		}
		if _, used := st.byTSIH[st.nextTSIH]; !used {
			break
		}
	}
	ss.tsih = st.nextTSIH
	st.byTSIH[ss.tsih] = ss
	// Discovery sessions move no data: only targets get counters, so the
	// map stays bounded by the initiators the ACLs admit.
	ss.counters = &counters{}
	if !ss.discovery {
		key := counterKey{target: ss.nexus.TargetName, initiator: ss.initiator}
		if st.traffic[key] == nil {
			st.traffic[key] = ss.counters
		}
		ss.counters = st.traffic[key]
	}
	return nil
}

// remove takes ss out of the table; false if it was out already.
func (st *sessionTable) remove(ss *session) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ss.removed {
		return false
	}
	ss.removed = true
	if st.byTSIH[ss.tsih] == ss {
		delete(st.byTSIH, ss.tsih)
	}
	return true
}

// exists reports whether a session has TSIH tsih.
func (st *sessionTable) exists(tsih uint16) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.byTSIH[tsih]
	return ok
}

// find returns the sessions match picks; match runs with the table's lock
// held, and must not block.
func (st *sessionTable) find(match func(*session) bool) []*session {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*session
	for _, ss := range st.byTSIH {
		if match(ss) {
			out = append(out, ss)
		}
	}
	return out
}

// each runs f on every session with the table's lock held: f must not
// block.
func (st *sessionTable) each(f func(*session)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ss := range st.byTSIH {
		f(ss)
	}
}

// ofTarget picks the sessions logged in to target iqn.
func ofTarget(iqn string) func(*session) bool {
	return func(ss *session) bool { return !ss.discovery && ss.nexus.TargetName == iqn }
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
	for _, old := range s.sessions.find(func(o *session) bool {
		return o.initiator == ss.initiator && o.isid == ss.isid && o.discovery == ss.discovery && o.nexus.TargetName == iqn
	}) {
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
		return s.sessions.add(ss, cfg.MaxSessions)
	})
	if err != nil {
		return nil, err
	}
	c.log = c.log.With(zap.Uint16("tsih", ss.tsih))
	c.log.Info("login", zap.Bool("discovery", ss.discovery), zap.String("auth", ls.authMethod),
		zap.Bool("header_digest", ss.params.HeaderDigest), zap.Bool("data_digest", ss.params.DataDigest))
	if !ss.discovery {
		s.Events.Record(ss.initiator, timeline.Login, iqn+" from "+c.nc.RemoteAddr().String())
	}
	return ss, nil
}

// SessionInfo is a session as the target knows it. It is not a wire
// format: cmd/netsan turns it into the /status view (httpd.Session).
type SessionInfo struct {
	TSIH         uint16
	Target       string // empty for discovery
	Initiator    string
	ISID         string // hex
	Remote       string // the initiator's address:port
	Discovery    bool
	AuthUser     string // the CHAP user it authenticated as, if any
	HeaderDigest bool
	DataDigest   bool
	Since        time.Time
	// ReadBytes and WrittenBytes count the data of this session's
	// commands: Data-In sent, Data-Out received.
	ReadBytes, WrittenBytes uint64
}

// Sessions lists the sessions in full feature phase.
func (s *Server) Sessions() []SessionInfo {
	all := s.sessions.find(func(*session) bool { return true })
	out := make([]SessionInfo, 0, len(all))
	for _, ss := range all {
		out = append(out, SessionInfo{
			TSIH: ss.tsih, Target: ss.nexus.TargetName, Initiator: ss.initiator, ISID: hex.EncodeToString(ss.isid[:]),
			Remote: ss.conn.nc.RemoteAddr().String(), Discovery: ss.discovery, AuthUser: ss.authUser,
			HeaderDigest: ss.params.HeaderDigest, DataDigest: ss.params.DataDigest, Since: ss.since,
			ReadBytes: ss.readBytes.Load(), WrittenBytes: ss.writtenBytes.Load(),
		})
	}
	return out
}
