package iscsi

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

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
	removed   bool      // by remove; guarded by the session table's lock

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

// newTTT returns a Target Transfer Tag for an R2T or a Text Response to
// continue. Called with s.mu held.
func (s *session) newTTT() uint32 {
	s.nextTTT++
	if s.nextTTT == reservedTag {
		s.nextTTT = 1
	}
	return s.nextTTT
}

// remove unregisters the session and tells its LUs the nexus is gone.
func (s *session) remove() {
	if !s.srv.sessions.remove(s) {
		return
	}
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
	// Only a task that went to execution gives its buffer back: one still
	// waiting for Data-Out may be ended by another session (PREEMPT AND
	// ABORT) while its connection's reader fills the buffer from the
	// socket, so the buffer is left to the garbage collector.
	if t.buf != nil && t.executing {
		s.srv.pool.Put(t.buf)
		t.buf = nil
	}
	close(t.done)
}

// waitingTask returns the task with this Initiator Task Tag if it still
// gathers Data-Out, else nil.
func (s *session) waitingTask(itt uint32) *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[itt]
	if t == nil || t.executing || t.aborted.Load() {
		return nil
	}
	return t
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
