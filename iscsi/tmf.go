package iscsi

import (
	"encoding/binary"
	"errors"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// Task management functions (RFC 7143 §11.5.1).
const (
	tmfAbortTask        = 1
	tmfAbortTaskSet     = 2
	tmfClearACA         = 3
	tmfClearTaskSet     = 4
	tmfLUNReset         = 5
	tmfTargetWarmReset  = 6
	tmfTargetColdReset  = 7
	tmfTaskReassign     = 8
	tmfFunctionComplete = 0
	tmfTaskNotExist     = 1
	tmfLUNNotExist      = 2
	tmfReassignNotSupp  = 4
	tmfNotSupported     = 5
)

// abortWait bounds how long a TMF waits for aborted commands that are
// already inside their LU to return.
const abortWait = 30 * time.Second

// taskManagement runs a Task Management Function Request. Aborted tasks
// still in their LU are waited for (their responses suppressed) before the
// TMF response goes out, as RFC 7143 §4.2.3.3 orders.
func (c *conn) taskManagement(p *pdu.PDU) {
	defer p.Release()
	s := c.sess
	h := p.Header
	if !s.admit(&h, false) {
		return
	}
	fn := h.Flags & pdu.FlagTMFFunction
	log := c.log.With(zap.Uint8("tmf", fn), zap.Uint32("ref_itt", h.ReferencedTaskTag))
	v := s.targetView()
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], h.LUN)
	var lu *scsi.LogicalUnit
	if lun, ok := scsi.DecodeLUN(raw); ok {
		lu = v.target.lu(v.acl, lun)
	}

	var aborted []*task
	response := byte(tmfFunctionComplete)
	abort := func(match func(t *task) bool) {
		s.mu.Lock()
		for _, t := range s.tasks {
			if !t.aborted && !t.finished && match(t) {
				t.aborted = true
				aborted = append(aborted, t)
			}
		}
		s.mu.Unlock()
	}
	switch fn {
	case tmfAbortTask:
		abort(func(t *task) bool { return t.itt == h.ReferencedTaskTag && t.lun == h.LUN })
		if len(aborted) == 0 {
			// A command not received yet (RefCmdSN still ahead in the window,
			// before the TMF's own CmdSN) counts as aborted (RFC 7143
			// §11.5.1); one received and answered no longer exists.
			s.mu.Lock()
			pending := int32(h.RefCmdSN-s.expCmdSN) >= 0 && int32(h.RefCmdSN-s.maxCmdSN) <= 0 && int32(h.RefCmdSN-h.CmdSN) < 0
			s.mu.Unlock()
			if !pending {
				response = tmfTaskNotExist
			}
		}
	case tmfAbortTaskSet, tmfClearTaskSet:
		if lu == nil {
			response = tmfLUNNotExist
			break
		}
		abort(func(t *task) bool { return t.lun == h.LUN })
	case tmfLUNReset:
		if lu == nil {
			response = tmfLUNNotExist
			break
		}
		abort(func(t *task) bool { return t.lun == h.LUN })
	case tmfTargetWarmReset, tmfTargetColdReset:
		abort(func(*task) bool { return true })
	case tmfTaskReassign:
		response = tmfReassignNotSupp
	default: // CLEAR ACA, QUERY TASK…: not supported
		response = tmfNotSupported
	}
	log.Info("iscsi: task management", zap.Int("aborted", len(aborted)), zap.Uint8("response", response))

	// Tasks still waiting for Data-Out end now; executing ones end when
	// their LU returns.
	for _, t := range aborted {
		s.mu.Lock()
		waiting := !t.executing
		s.mu.Unlock()
		if waiting {
			s.finishTask(t)
		}
	}
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		defer func() {
			if r := recover(); r != nil {
				log.Error("iscsi: task management panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
				c.close(errors.New("task management panicked"))
			}
		}()
		timeout := time.NewTimer(abortWait)
		defer timeout.Stop()
		for _, t := range aborted {
			select {
			case <-t.done:
			case <-timeout.C:
				log.Warn("iscsi: aborted command still running")
			case <-c.done:
				return
			}
		}
		// Resets happen once the affected commands are gone, and raise unit
		// attentions for every other nexus.
		if response == tmfFunctionComplete {
			switch fn {
			case tmfLUNReset:
				lu.Reset(s.nexus)
			case tmfTargetWarmReset, tmfTargetColdReset:
				for _, l := range v.target.lus {
					l.Reset(s.nexus)
				}
			}
		}
		cold := fn == tmfTargetColdReset && response == tmfFunctionComplete
		c.send(outItem{hdr: pdu.Header{
			Opcode: pdu.OpTaskMgmtResponse, Flags: pdu.FlagFinal, Byte2: response, InitiatorTaskTag: h.InitiatorTaskTag,
		}, advance: true, closeAfter: cold})
		if cold {
			// A cold reset ends every session of the target (RFC 7143
			// §11.5.1); this one once its response is out.
			c.srv.dropSessions(s.nexus.TargetName, s)
		}
	}()
}
