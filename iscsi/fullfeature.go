package iscsi

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// fullFeature serves a logged-in connection until it closes.
func (c *conn) fullFeature(sess *session) {
	c.r.HeaderDigest, c.w.HeaderDigest = sess.params.HeaderDigest, sess.params.HeaderDigest
	c.r.DataDigest, c.w.DataDigest = sess.params.DataDigest, sess.params.DataDigest
	c.r.MaxRecvDataSegmentLength = login.OurMaxRecvDataSegmentLength
	// Commands the initiator sent right behind its last Login Request may
	// already sit in the login buffer: the new one keeps them.
	c.r.SetBufferSize(pdu.DefaultBufferSize)
	if !sess.discovery {
		c.r.Place = c.placeData
	}
	c.out.ready = make(chan struct{}, 1)
	c.lastRecv.Store(time.Now().UnixNano())
	// Publishes c.out to requestLogout, which uses it only after ffp.
	c.ffp.Store(true)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.work = make(chan *task, c.srv.QueueDepth)
	// The shutdown order, each step needing the one before:
	//  1. close: the socket and c.done, so the writer stops and whatever
	//     is sent from now on is discarded instead of queued;
	//  2. abortAll: no task still running will send a response;
	//  3. workers.Wait: the commands inside their LUs and the TMFs return,
	//     so nothing sends on c.work any more;
	//  4. close(c.work), poolWG.Wait: the idle workers exit;
	//  5. the writer is gone, having given back what was queued;
	//  6. remove: only now, with nothing left running for it on an LU, the
	//     I_T nexus is lost (which releases an SPC-2 reservation).
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
