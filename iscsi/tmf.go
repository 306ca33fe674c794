package iscsi

import (
	"errors"
	"runtime/debug"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
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
	fn := h.Function()
	log := c.log.With(zap.Stringer("tmf", fn), zap.Uint32("ref_itt", h.ReferencedTaskTag))
	v := s.targetView()
	lu := s.lu(h.LUN)

	var aborted []*task
	response := pdu.TMFComplete
	abort := func(match func(t *task) bool) { aborted = s.abortTasks(match) }
	switch fn {
	case pdu.TMFAbortTask:
		abort(func(t *task) bool { return t.itt == h.ReferencedTaskTag && t.lun == h.LUN })
		if len(aborted) == 0 {
			// A command not received yet (RefCmdSN still ahead in the window,
			// before the TMF's own CmdSN) counts as aborted (RFC 7143
			// §11.5.1); one received and answered no longer exists.
			s.mu.Lock()
			pending := int32(h.RefCmdSN-s.expCmdSN) >= 0 && int32(h.RefCmdSN-s.maxCmdSN) <= 0 && int32(h.RefCmdSN-h.CmdSN) < 0
			s.mu.Unlock()
			if !pending {
				response = pdu.TMFTaskNotExist
			}
		}
	case pdu.TMFAbortTaskSet, pdu.TMFClearTaskSet:
		if lu == nil {
			response = pdu.TMFLUNNotExist
			break
		}
		abort(func(t *task) bool { return t.lun == h.LUN })
	case pdu.TMFLUNReset:
		if lu == nil {
			response = pdu.TMFLUNNotExist
			break
		}
		abort(func(t *task) bool { return t.lun == h.LUN })
	case pdu.TMFTargetWarmReset, pdu.TMFTargetColdReset:
		abort(func(*task) bool { return true })
	case pdu.TMFTaskReassign:
		response = pdu.TMFReassignNotSupported
	default: // CLEAR ACA, QUERY TASK…: not supported
		response = pdu.TMFNotSupported
	}
	log.Info("task management", zap.Int("aborted", len(aborted)), zap.Stringer("response", response))

	s.endWaiting(aborted)
	c.workers.Add(1)
	go func() {
		defer c.workers.Done()
		defer func() {
			if r := recover(); r != nil {
				log.Error("task management panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
				c.close(errors.New("task management panicked"))
			}
		}()
		if !s.waitAborted(aborted) {
			select {
			case <-c.done:
				return
			default:
			}
		}
		// Resets happen once the affected commands are gone, and raise unit
		// attentions for every other nexus.
		if response == pdu.TMFComplete {
			switch fn {
			case pdu.TMFLUNReset:
				lu.Reset(s.nexus)
			case pdu.TMFTargetWarmReset, pdu.TMFTargetColdReset:
				for _, l := range v.target.lus {
					l.Reset(s.nexus)
				}
			}
		}
		cold := fn == pdu.TMFTargetColdReset && response == pdu.TMFComplete
		resp := pdu.Header{Opcode: pdu.OpTaskMgmtResponse, Flags: pdu.FlagFinal, InitiatorTaskTag: h.InitiatorTaskTag}
		resp.SetTMFResponse(response)
		c.send(outItem{hdr: resp, advance: true, closeAfter: cold})
		if cold {
			// A cold reset ends every session of the target (RFC 7143
			// §11.5.1); this one once its response is out.
			c.srv.dropSessions(s.nexus.TargetName, s)
		}
	}()
}

// abortTasks marks the session's tasks that match aborted and returns
// them; from then on none of them sends a response.
func (s *session) abortTasks(match func(t *task) bool) []*task {
	s.mu.Lock()
	defer s.mu.Unlock()
	var aborted []*task
	for _, t := range s.tasks {
		if !t.aborted.Load() && !t.finished && match(t) {
			t.aborted.Store(true)
			aborted = append(aborted, t)
		}
	}
	return aborted
}

// endWaiting ends the aborted tasks still waiting for Data-Out (their
// R2Ts die with them; Data-Out arriving later is dropped). Those already
// handed to a worker end when their LU returns.
func (s *session) endWaiting(aborted []*task) {
	for _, t := range aborted {
		s.mu.Lock()
		waiting := !t.executing
		s.mu.Unlock()
		if waiting {
			s.finishTask(t)
		}
	}
}

// waitAborted waits for aborted tasks to end, at most abortWait and no
// longer than the connection lives; false if some had not.
func (s *session) waitAborted(aborted []*task) bool {
	timeout := time.NewTimer(abortWait)
	defer timeout.Stop()
	for _, t := range aborted {
		select {
		case <-t.done:
		case <-timeout.C:
			s.conn.log.Warn("aborted command still running", zap.Uint32("itt", t.itt))
			return false
		case <-s.conn.done:
			return false
		}
	}
	return true
}

// abortPreempted is the LUs' AbortTasks: a PREEMPT AND ABORT on lu aborts
// the tasks for lu of every session whose I_T nexus it preempted, as an
// ABORT TASK SET from each would (TAS 0: no response for them). It runs
// under the LU's lock and only marks; the returned function ends them.
func (s *Server) abortPreempted(lu *scsi.LogicalUnit, nexuses []scsi.Nexus) func() {
	type abortedIn struct {
		sess  *session
		tasks []*task
	}
	var all []abortedIn
	sessions := s.sessions.find(func(ss *session) bool { return !ss.discovery && slices.Contains(nexuses, ss.nexus) })
	for _, ss := range sessions {
		tasks := ss.abortTasks(func(t *task) bool { return ss.lu(t.lun) == lu })
		if len(tasks) > 0 {
			all = append(all, abortedIn{ss, tasks})
		}
	}
	return func() {
		for _, a := range all {
			a.sess.conn.log.Info("tasks aborted by PREEMPT AND ABORT", zap.Int("aborted", len(a.tasks)))
			a.sess.endWaiting(a.tasks)
		}
		for _, a := range all {
			a.sess.waitAborted(a.tasks)
		}
	}
}
