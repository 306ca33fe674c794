package iscsi

import (
	"errors"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// maxTransfer bounds ExpectedDataTransferLength of one write: its data is
// gathered in memory before the LU runs the command.
const maxTransfer = 64 << 20

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
	imm := min(uint32(len(p.Data)), t.edtl)
	if imm > 0 && !s.params.ImmediateData {
		c.log.Warn("immediate data not negotiated")
		s.finishTask(t)
		c.reject(p, pdu.RejectProtocolError)
		return true
	}
	if cap(p.Data) >= int(t.edtl) {
		// placeData read the immediate data into a buffer for the whole
		// transfer: the task takes it over.
		t.buf, p.Data = p.Data[:t.edtl], nil
	} else {
		t.buf = c.srv.pool.Get(int(t.edtl))
		copy(t.buf, p.Data[:imm])
	}
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
		ttt := s.newTTT()
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

// placeData is the connection reader's pdu.Reader.Place: write data is
// read from the socket straight into the buffer its command executes from.
// A SCSI Command's immediate data goes to the start of a pooled buffer as
// large as the whole transfer, which scsiCommand gives the task; a
// Data-Out goes into its task's buffer at its BufferOffset. Anything else,
// or a Data-Out that does not fit its task (dataOut then fails the task or
// drops the PDU), is read into a buffer of its own.
func (c *conn) placeData(h *pdu.Header) ([]byte, bool) {
	n := h.DataSegmentLength
	switch h.Opcode {
	case pdu.OpSCSICommand:
		if h.Flags&pdu.FlagWrite != 0 && n <= h.ExpectedDataTransferLength && h.ExpectedDataTransferLength <= maxTransfer {
			return c.srv.pool.Get(int(h.ExpectedDataTransferLength))[:n], true
		}
	case pdu.OpSCSIDataOut:
		if t := c.sess.waitingTask(h.InitiatorTaskTag); t != nil {
			if off := h.BufferOffset; off <= t.edtl && n <= t.edtl-off {
				return t.buf[off : off+n], false
			}
		}
	}
	return nil, false
}

// dataOut places one SCSI Data-Out in its task's buffer (RFC 7143 §11.7).
// A DataSN or offset out of sequence fails the command; at
// ErrorRecoveryLevel 0 nothing is retransmitted, and the connection goes on.
func (c *conn) dataOut(p *pdu.PDU) bool {
	defer p.Release()
	s := c.sess
	h := &p.Header
	t := s.waitingTask(h.InitiatorTaskTag)
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
	if n > 0 && &p.Data[0] != &t.buf[off] {
		copy(t.buf[off:], p.Data) // not placed by placeData
	}
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
