package iscsi

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// maxTransfer bounds ExpectedDataTransferLength of one write: its data is
// gathered in memory before the LU runs the command.
const maxTransfer = 64 << 20

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

// task is one SCSI command from arrival to response.
type task struct {
	itt         uint32
	lun         uint64 // as the initiator addressed it
	cmdSN       uint32
	cdb         [16]byte
	attr        byte
	edtl        uint32
	read, write bool
	buf         []byte // Data-Out gathered here
	received    uint32

	unsolicited uint32 // bytes the initiator sends without R2T
	unsolDataSN uint32
	nextR2T     uint32 // offset of the next R2T
	r2tSN       uint32
	r2ts        map[uint32]*r2t // by Target Transfer Tag
	executing   bool
	aborted     atomic.Bool // stored under session.mu; read anywhere (the LU asks it)
	done        chan struct{}
	finished    bool
}

// r2t is one outstanding Ready To Transfer.
type r2t struct {
	offset, length, received uint32
	nextDataSN               uint32
}

// residual returns the residual flag and count of a command that
// produced n bytes of Data-In (RFC 7143 §11.4.5): against the Data-In it
// produced for reads, against the Data-Out its CDB asks for for writes.
func (t *task) residual(n uint32) (byte, uint32) {
	want := uint64(n)
	if !t.read {
		if n > 0 {
			return pdu.FlagOverflow, n
		}
		if !t.write {
			return 0, 0
		}
		want = scsi.DataOutLength(t.cdb[:])
	}
	switch edtl := uint64(t.edtl); {
	case want < edtl:
		return pdu.FlagUnderflow, uint32(edtl - want)
	case want > edtl:
		return pdu.FlagOverflow, uint32(min(want-edtl, 1<<32-1))
	}
	return 0, 0
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

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.targets == nil {
		return nil, failLogin(statusOutOfResources, "target shutting down")
	}
	if !ls.discovery {
		// A reload during the login may have changed what the initiator sees.
		nt := s.targets[iqn]
		if nt == nil || !sameView(ls.tgt, nt, ls.initiator) {
			return nil, failLogin(statusTargetError, "target %s changed during login", iqn)
		}
		ss.view.Store(&sessionView{target: nt, acl: ls.acl})
	}
	max := s.cfg.MaxSessions
	if max <= 0 {
		max = DefaultMaxSessions
	}
	if len(s.sessions) >= max {
		return nil, failLogin(statusOutOfResources, "%d sessions already", len(s.sessions))
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

// fullFeature serves a logged-in connection until it closes.
func (c *conn) fullFeature(sess *session) {
	c.r.HeaderDigest, c.w.HeaderDigest = sess.params.HeaderDigest, sess.params.HeaderDigest
	c.r.DataDigest, c.w.DataDigest = sess.params.DataDigest, sess.params.DataDigest
	c.r.MaxRecvDataSegmentLength = login.OurMaxRecvDataSegmentLength
	// Commands the initiator sent right behind its last Login Request may
	// already sit in the login buffer: the new one keeps them.
	c.r.SetBufferSize(pdu.DefaultBufferSize)
	c.out = make(chan outItem, 2*c.srv.QueueDepth+8)
	c.lastRecv.Store(time.Now().UnixNano())
	// Publishes c.out to requestLogout, which reads it only after ffp.
	c.ffp.Store(true)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.work = make(chan *task, c.srv.QueueDepth)
	defer func() {
		c.close(nil)
		c.abortAll()
		c.workers.Wait()
		close(c.work)
		c.poolWG.Wait()
		<-writerDone
		sess.remove()
		c.log.Info("session closed")
	}()
	for {
		p := new(pdu.PDU)
		err := c.r.Read(p)
		c.lastRecv.Store(time.Now().UnixNano())
		switch {
		case err == nil:
		case errors.Is(err, pdu.ErrUnknownOpcode):
			c.log.Warn("unknown opcode", zap.Stringer("op", p.Opcode))
			c.reject(p, pdu.RejectCommandNotSupported)
			p.Release()
			continue
		case errors.Is(err, pdu.ErrDataTooLong):
			c.log.Warn("data segment too long", zap.Error(err))
			c.reject(p, pdu.RejectProtocolError)
			continue
		case errors.Is(err, pdu.ErrDataDigest):
			c.log.Warn("data digest error", zap.Stringer("op", p.Opcode))
			if p.Opcode == pdu.OpSCSIDataOut || p.Opcode == pdu.OpSCSICommand {
				// ErrorRecoveryLevel 0 cannot recover lost data: the
				// Reject (RFC 7143 §7.8) is the connection's last PDU.
				c.sendLast(c.rejectItem(p, pdu.RejectDataDigest))
				return
			}
			c.reject(p, pdu.RejectDataDigest)
			continue
		default:
			c.lost("read", err)
			return
		}
		if !c.dispatch(p) {
			return
		}
	}
}

// dispatch handles one PDU; false ends the connection.
func (c *conn) dispatch(p *pdu.PDU) bool {
	s := c.sess
	if s.discovery {
		switch p.Opcode {
		case pdu.OpTextRequest, pdu.OpNOPOut, pdu.OpLogoutRequest:
		default:
			c.log.Warn("not allowed in a discovery session", zap.Stringer("op", p.Opcode))
			c.reject(p, pdu.RejectProtocolError)
			p.Release()
			return true
		}
	}
	switch p.Opcode {
	case pdu.OpSCSICommand:
		return c.scsiCommand(p)
	case pdu.OpSCSIDataOut:
		return c.dataOut(p)
	case pdu.OpNOPOut:
		c.nopOut(p)
	case pdu.OpTextRequest:
		c.textRequest(p)
	case pdu.OpTaskMgmtRequest:
		c.taskManagement(p)
	case pdu.OpLogoutRequest:
		c.logout(p)
		return false
	case pdu.OpSNACKRequest:
		// ErrorRecoveryLevel 0: no SNACK (RFC 7143 §11.16).
		c.reject(p, pdu.RejectSNACK)
		p.Release()
	default:
		c.log.Warn("unexpected PDU", zap.Stringer("op", p.Opcode))
		c.reject(p, pdu.RejectProtocolError)
		p.Release()
	}
	return true
}

// reject answers a PDU with Reject; the data segment is the offending BHS.
func (c *conn) reject(p *pdu.PDU, reason pdu.RejectReason) { c.send(c.rejectItem(p, reason)) }

// rejectItem is a Reject PDU carrying p's header as its data.
func (c *conn) rejectItem(p *pdu.PDU, reason pdu.RejectReason) outItem {
	raw := p.Raw
	h := pdu.Header{Opcode: pdu.OpReject, Flags: pdu.FlagFinal, InitiatorTaskTag: reservedTag}
	h.SetReason(reason)
	return outItem{hdr: h, data: raw[:], advance: true}
}

// sendLast queues it as the connection's last PDU and waits, bounded, for
// the writer to put it on the wire and close the connection: closing first
// would lose it.
func (c *conn) sendLast(it outItem) {
	it.closeAfter = true
	c.send(it)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

// scsiCommand starts a task: gathers immediate data, sends R2Ts for the
// rest, and runs the command once all Data-Out is in.
func (c *conn) scsiCommand(p *pdu.PDU) bool {
	defer p.Release()
	s := c.sess
	h := &p.Header
	if !s.admit(h, true) {
		c.log.Debug("CmdSN outside the window, ignored", zap.Uint32("cmdsn", h.CmdSN))
		return true
	}
	t := &task{
		itt: h.InitiatorTaskTag, lun: h.LUN, cmdSN: h.CmdSN, cdb: h.CDB, attr: h.Attr(),
		edtl: h.ExpectedDataTransferLength, read: h.Flags&pdu.FlagRead != 0, write: h.Flags&pdu.FlagWrite != 0,
		done: make(chan struct{}),
	}
	s.mu.Lock()
	_, dup := s.tasks[t.itt]
	if !dup {
		s.tasks[t.itt] = t
	}
	s.mu.Unlock()
	if dup {
		c.log.Warn("Initiator Task Tag in use", zap.Uint32("itt", t.itt))
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
		c.reject(p, pdu.RejectInvalidPDUField)
		return true
	}
	if !t.write || t.edtl == 0 {
		c.execute(t)
		return true
	}
	if t.edtl > maxTransfer {
		c.log.Warn("write too large", zap.Uint32("edtl", t.edtl))
		s.finishTask(t)
		c.reject(p, pdu.RejectProtocolError)
		return true
	}
	t.buf = c.srv.pool.Get(int(t.edtl))
	imm := min(uint32(len(p.Data)), t.edtl)
	if imm > 0 && !s.params.ImmediateData {
		c.log.Warn("immediate data not negotiated")
		s.finishTask(t)
		c.reject(p, pdu.RejectProtocolError)
		return true
	}
	copy(t.buf, p.Data[:imm])
	t.received = imm
	t.unsolicited = imm
	if !s.params.InitialR2T && !h.Final() {
		t.unsolicited = min(s.params.FirstBurstLength, t.edtl)
	}
	t.nextR2T = t.unsolicited
	c.sendR2Ts(t)
	if t.received == t.edtl {
		c.execute(t)
	}
	return true
}

// sendR2Ts keeps up to MaxOutstandingR2T R2Ts of at most MaxBurstLength
// outstanding for a task.
func (c *conn) sendR2Ts(t *task) {
	s := c.sess
	for t.nextR2T < t.edtl && uint32(len(t.r2ts)) < s.params.MaxOutstandingR2T {
		n := min(s.params.MaxBurstLength, t.edtl-t.nextR2T)
		s.mu.Lock()
		s.nextTTT++
		if s.nextTTT == reservedTag {
			s.nextTTT = 1
		}
		ttt := s.nextTTT
		s.mu.Unlock()
		if t.r2ts == nil {
			t.r2ts = map[uint32]*r2t{}
		}
		t.r2ts[ttt] = &r2t{offset: t.nextR2T, length: n}
		c.send(outItem{hdr: pdu.Header{
			Opcode: pdu.OpR2T, Flags: pdu.FlagFinal, LUN: t.lun, InitiatorTaskTag: t.itt,
			TargetTransferTag: ttt, DataSN: t.r2tSN, BufferOffset: t.nextR2T, DesiredDataTransferLength: n,
		}})
		t.r2tSN++
		t.nextR2T += n
	}
}

// dataOut places one SCSI Data-Out in its task's buffer (RFC 7143 §11.7).
// A DataSN or offset out of sequence fails the command; at
// ErrorRecoveryLevel 0 nothing is retransmitted, and the connection goes on.
func (c *conn) dataOut(p *pdu.PDU) bool {
	defer p.Release()
	s := c.sess
	h := &p.Header
	s.mu.Lock()
	t := s.tasks[h.InitiatorTaskTag]
	if t != nil && (t.executing || t.aborted.Load()) {
		t = nil
	}
	s.mu.Unlock()
	if t == nil {
		// Data for a task aborted meanwhile is dropped; else it is a stray.
		c.log.Debug("Data-Out for no waiting task", zap.Uint32("itt", h.InitiatorTaskTag))
		return true
	}
	n := uint32(len(p.Data))
	off := h.BufferOffset
	var seq *r2t
	switch {
	case off > t.edtl || n > t.edtl-off:
		c.log.Warn("Data-Out beyond the expected length", zap.Uint32("offset", off), zap.Uint32("length", n))
		c.failTask(t, senseDataOffsetError)
		return true
	case h.TargetTransferTag == reservedTag:
		if off+n > t.unsolicited || h.DataSN != t.unsolDataSN {
			c.log.Warn("unsolicited Data-Out out of sequence", zap.Uint32("datasn", h.DataSN), zap.Uint32("offset", off))
			c.failTask(t, senseDataPhaseError)
			return true
		}
		t.unsolDataSN++
	default:
		seq = t.r2ts[h.TargetTransferTag]
		if seq == nil || off < seq.offset || off+n > seq.offset+seq.length || h.DataSN != seq.nextDataSN {
			c.log.Warn("Data-Out does not match its R2T", zap.Uint32("ttt", h.TargetTransferTag),
				zap.Uint32("datasn", h.DataSN), zap.Uint32("offset", off))
			c.failTask(t, senseDataPhaseError)
			return true
		}
		seq.nextDataSN++
		seq.received += n
	}
	copy(t.buf[off:], p.Data)
	t.received += n
	if seq != nil && (h.Final() || seq.received == seq.length) {
		delete(t.r2ts, h.TargetTransferTag)
		c.sendR2Ts(t)
	}
	if t.received >= t.edtl && len(t.r2ts) == 0 {
		c.execute(t)
	}
	return true
}

// Sense data (fixed format, SPC-4 4.5.3) for Data-Out the session cannot
// accept: ABORTED COMMAND with DATA PHASE ERROR or DATA OFFSET ERROR.
var (
	senseDataPhaseError  = fixedSense(0x0b, 0x4b, 0x00)
	senseDataOffsetError = fixedSense(0x0b, 0x4b, 0x05)
)

func fixedSense(key, asc, ascq byte) []byte {
	return []byte{0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0}
}

// failTask answers a task still gathering Data-Out with CHECK CONDITION;
// Data-Out still on its way for it is then dropped.
func (c *conn) failTask(t *task, sense []byte) {
	s := c.sess
	s.mu.Lock()
	t.executing = true
	s.mu.Unlock()
	c.send(outItem{task: t, resp: scsi.Response{Status: scsi.StatusCheckCondition, Sense: sense}})
}

// execute hands a task to the connection's workers: at most QueueDepth
// goroutines, started as commands need them and kept for the connection's
// life, so a warm connection starts no goroutine per command. Called from
// the reader goroutine only.
func (c *conn) execute(t *task) {
	s := c.sess
	s.mu.Lock()
	if t.aborted.Load() {
		s.mu.Unlock()
		return
	}
	t.executing = true
	s.mu.Unlock()
	c.workers.Add(1)
	if c.idle.Load() == 0 && c.nworkers < c.srv.QueueDepth {
		c.nworkers++
		c.poolWG.Add(1)
		go c.worker()
	}
	c.work <- t
}

// worker runs tasks until the connection closes its work queue.
func (c *conn) worker() {
	defer c.poolWG.Done()
	for {
		c.idle.Add(1)
		t, ok := <-c.work
		c.idle.Add(-1)
		if !ok {
			return
		}
		c.runTask(t)
	}
}

// runTask executes one command and queues its response, unless a task
// management function aborted it meanwhile.
func (c *conn) runTask(t *task) {
	s := c.sess
	defer c.workers.Done()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("command panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			s.finishTask(t)
			c.close(errors.New("command panicked"))
		}
	}()
	if t.aborted.Load() {
		// Aborted while queued for a worker: never reaches its LU.
		s.finishTask(t)
		return
	}
	resp := c.run(t)
	if t.aborted.Load() {
		resp.Release()
		s.finishTask(t)
		return
	}
	c.send(outItem{task: t, resp: resp})
}

// run maps the LUN through the ACL and hands the command to the LU;
// REPORT LUNS is answered here with the LUNs this initiator sees.
func (c *conn) run(t *task) scsi.Response {
	s := c.sess
	v := s.targetView()
	cmd := &scsi.Command{
		CDB: t.cdb[:], Nexus: s.nexus, ReadOnly: v.acl.WriteProtect, Attr: t.attr,
		ExpectedDataTransferLength: t.edtl,
		Aborted:                    &t.aborted,
	}
	if t.write {
		cmd.DataOut = t.buf[:t.received]
		s.writtenBytes.Add(uint64(t.received))
		s.counters.writeBytes.Add(uint64(t.received))
	}
	s.counters.commands.Add(1)
	if t.cdb[0] == 0xa0 {
		return scsi.ReportLUNs(cmd, v.target.luns(v.acl))
	}
	lu := s.lu(t.lun)
	if lu == nil {
		return scsi.NoSuchLUN(cmd)
	}
	return lu.Execute(cmd)
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

// nopOut answers a ping (ITT set) with a NOP-In echoing its data; a NOP-Out
// answering our NOP-In (ITT reserved) needs no reply.
func (c *conn) nopOut(p *pdu.PDU) {
	s := c.sess
	if !s.admit(&p.Header, false) {
		p.Release()
		return
	}
	if p.InitiatorTaskTag == reservedTag {
		p.Release()
		return
	}
	c.send(outItem{hdr: pdu.Header{
		Opcode: pdu.OpNOPIn, Flags: pdu.FlagFinal, LUN: p.LUN, InitiatorTaskTag: p.InitiatorTaskTag,
		TargetTransferTag: reservedTag,
	}, data: p.Data, release: p.Release, advance: true})
}

// logout answers a Logout Request once the commands in flight are
// answered, then closes the connection (RFC 7143 §11.14).
func (c *conn) logout(p *pdu.PDU) {
	defer p.Release()
	s := c.sess
	s.admit(&p.Header, false)
	c.abortWaiting()
	c.workers.Wait()
	reason := p.ReasonCode()
	resp := pdu.Header{Opcode: pdu.OpLogoutResponse, Flags: pdu.FlagFinal, InitiatorTaskTag: p.InitiatorTaskTag}
	if reason == 2 {
		// Removing the connection for recovery: not supported at
		// ErrorRecoveryLevel 0. (Else Response 0: closed successfully.)
		resp.SetResponse(2)
	}
	c.log.Info("logout", zap.Uint8("reason", reason))
	// The I_T nexus ends before the initiator reads the response, so that
	// what its loss releases (an SPC-2 RESERVE) is free when it does.
	s.remove()
	c.sendLast(outItem{hdr: resp, advance: true})
}

// abortWaiting drops the tasks still waiting for Data-Out.
func (c *conn) abortWaiting() {
	s := c.sess
	s.mu.Lock()
	var waiting []*task
	for _, t := range s.tasks {
		if !t.executing && !t.aborted.Load() {
			t.aborted.Store(true)
			waiting = append(waiting, t)
		}
	}
	s.mu.Unlock()
	for _, t := range waiting {
		s.finishTask(t)
	}
}

// abortAll marks every task aborted when the connection goes away.
func (c *conn) abortAll() {
	s := c.sess
	s.mu.Lock()
	for _, t := range s.tasks {
		t.aborted.Store(true)
	}
	s.mu.Unlock()
	c.abortWaiting()
}

// textRequest answers SendTargets (RFC 7143 Appendix C) and other text
// keys; a long answer goes out in pieces the initiator continues with
// empty Text Requests carrying our Target Transfer Tag.
func (c *conn) textRequest(p *pdu.PDU) {
	defer p.Release()
	s := c.sess
	h := &p.Header
	if !s.admit(h, false) {
		return
	}
	var body []byte
	if h.TargetTransferTag != reservedTag {
		s.mu.Lock()
		if h.TargetTransferTag == s.textTTT {
			body = s.text
		}
		s.text = nil
		s.mu.Unlock()
	} else {
		kvs, err := login.ParseText(p.Data)
		if err != nil {
			c.log.Warn("text request", zap.Error(err))
			c.reject(p, pdu.RejectProtocolError)
			return
		}
		var out []login.KV
		for _, kv := range kvs {
			if kv.Key == "SendTargets" {
				found, why := c.sendTargets(kv.Value)
				if len(found) == 0 {
					// The initiator only sees an empty list: say why here.
					c.log.Info("SendTargets lists no target", zap.String("which", kv.Value), zap.String("reason", why))
				}
				out = append(out, found...)
			} else {
				out = append(out, login.KV{Key: kv.Key, Value: login.NotUnderstood})
			}
		}
		body = login.EncodeText(nil, out)
	}
	resp := pdu.Header{Opcode: pdu.OpTextResponse, Flags: pdu.FlagFinal, LUN: h.LUN, InitiatorTaskTag: h.InitiatorTaskTag, TargetTransferTag: reservedTag}
	if max := int(s.params.MaxRecvDataSegmentLength); len(body) > max {
		s.mu.Lock()
		s.nextTTT++
		if s.nextTTT == reservedTag {
			s.nextTTT = 1
		}
		s.textTTT = s.nextTTT
		s.text = body[max:]
		s.mu.Unlock()
		body = body[:max]
		resp.Flags = pdu.FlagContinue
		resp.TargetTransferTag = s.textTTT
	}
	c.send(outItem{hdr: resp, data: body, advance: true})
}

// sendTargets lists the targets this initiator may log in to: admitted by
// the ACL, and, where the ACL entry has CHAP, only to a discovery session
// authenticated as that CHAP user. When it lists none, why says what kept
// the targets asked for out.
func (c *conn) sendTargets(which string) (out []login.KV, why string) {
	s := c.sess
	srv := c.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	addr := c.nc.LocalAddr().String()
	var asked, admitted int
	for _, tc := range srv.cfg.Targets {
		t := srv.targets[tc.IQN]
		if t == nil {
			continue
		}
		switch which {
		case "All":
			if !s.discovery && tc.IQN != s.nexus.TargetName {
				continue
			}
		case "":
			if tc.IQN != s.nexus.TargetName {
				continue
			}
		default:
			if tc.IQN != which {
				continue
			}
		}
		asked++
		a, ok := t.aclFor(s.initiator)
		if !ok {
			continue
		}
		admitted++
		if a.CHAP != nil && a.CHAP.User != s.authUser {
			continue
		}
		out = append(out, login.KV{Key: "TargetName", Value: tc.IQN},
			login.KV{Key: "TargetAddress", Value: fmt.Sprintf("%s,%d", addr, tpgt)})
	}
	switch {
	case len(out) > 0:
	case admitted > 0:
		why = "the targets admitting the initiator require CHAP, and discovery was not authenticated as their user"
	case asked > 0:
		why = "no target's ACL admits the initiator"
	case which == "All" || which == "":
		why = "no targets"
	default:
		why = "no such target"
	}
	return out, why
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
