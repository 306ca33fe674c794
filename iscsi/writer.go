package iscsi

import (
	"errors"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// outItem is one thing for the writer to send: a PDU, or a command's result.
type outItem struct {
	hdr pdu.Header
	// data follows the header; release, if set, runs once it is sent.
	data    []byte
	release func()
	// advance: this PDU carries a StatSN that the initiator acknowledges.
	advance bool
	// closeAfter drops the connection once the PDU is out (Logout Response).
	closeAfter bool

	task *task
	resp scsi.Response
}

// outQueue feeds the writer goroutine. Items wait in a slice, which grows
// to the most a connection has had waiting at once (a command's response,
// its R2Ts, a ping's answer): one that runs a command at a time holds room
// for a few, where a channel would reserve room for all it could ever hold
// (2×QueueDepth items, 34 KiB a connection, paid a thousand times by a boot
// storm's sessions).
type outQueue struct {
	mu     sync.Mutex
	items  []outItem
	closed bool          // the writer has stopped: put refuses
	ready  chan struct{} // capacity 1: items are waiting
}

// put queues it; false once the writer has stopped.
func (q *outQueue) put(it outItem) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns the waiting items and keeps spare, emptied, for the next.
func (q *outQueue) take(spare []outItem) []outItem {
	q.mu.Lock()
	items := q.items
	q.items = spare[:0]
	q.mu.Unlock()
	return items
}

// stop refuses items from now on and returns those still waiting.
func (q *outQueue) stop() []outItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	items := q.items
	q.items = nil
	return items
}

// writeLoop owns the socket's write side and StatSN in full feature phase;
// it also pings idle initiators and drops the silent ones.
func (c *conn) writeLoop() {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("writer panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			c.close(nil)
		}
		// Nothing more goes out: give back what is queued.
		for _, it := range c.out.stop() {
			c.discard(it)
		}
	}()
	interval := c.srv.NOPInterval
	var ticks <-chan time.Time // nil: pings disabled
	if interval > 0 {
		tick := time.NewTicker(max(interval/2, 10*time.Millisecond))
		defer tick.Stop()
		ticks = tick.C
	}
	var pingTTT uint32
	var pingSent time.Time
	var spare []outItem
	for {
		select {
		case <-c.done:
			return
		case <-c.out.ready:
			items := c.out.take(spare)
			err := c.writeItems(items)
			clear(items) // the buffers they pointed to went back
			spare = items
			if err != nil {
				c.lost("write", err)
				return
			}
		case now := <-ticks:
			last := time.Unix(0, c.lastRecv.Load())
			if !pingSent.IsZero() && last.After(pingSent) {
				pingSent = time.Time{}
			}
			if !pingSent.IsZero() && now.Sub(pingSent) > c.srv.NOPTimeout {
				c.log.Warn("no answer to NOP-In; closing the connection", zap.Duration("waited", now.Sub(pingSent).Round(time.Millisecond)))
				c.close(nil)
				return
			}
			if pingSent.IsZero() && now.Sub(last) >= interval {
				pingTTT++
				if pingTTT == reservedTag {
					pingTTT = 1
				}
				h := pdu.Header{Opcode: pdu.OpNOPIn, Flags: pdu.FlagFinal, InitiatorTaskTag: reservedTag, TargetTransferTag: pingTTT}
				if err := c.writeItems([]outItem{{hdr: h}}); err != nil {
					c.lost("write", err)
					return
				}
				pingSent = now
			}
		}
	}
}

// writeTimeout bounds one vectored write.
const writeTimeout = 30 * time.Second

// Batch bounds: how many queued items, and how many bytes, go out in one
// vectored write.
const (
	batchItems = 64
	batchBytes = 1 << 20
)

// writeItems sends items in vectored writes within the batch bounds;
// buffers are released once out. An item with closeAfter is the last: the
// connection closes once it is out. Items left unsent by that or by an
// error are given back.
func (c *conn) writeItems(items []outItem) error {
	for len(items) > 0 {
		n, closeAfter := 0, false
		for n < len(items) && !closeAfter && n < batchItems && c.w.Queued() < batchBytes {
			c.queue(&items[n])
			closeAfter = items[n].closeAfter
			n++
		}
		// An initiator that stops reading must not wedge the writer (and
		// with it the NOP-In timeout) forever.
		c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		err := c.w.Flush()
		for _, d := range items[:n] {
			if d.release != nil {
				d.release()
			}
			if d.task != nil {
				d.resp.Release()
			}
		}
		items = items[n:]
		if err == nil && closeAfter {
			// Closes c.done first, so that lost logs nothing for it.
			c.close(nil)
			err = errClosedAfterLogout
		}
		if err != nil {
			for _, it := range items {
				c.discard(it)
			}
			return err
		}
	}
	return nil
}

var errClosedAfterLogout = errors.New("closed after its last PDU")

// queue stamps one item and queues its PDUs on the writer.
func (c *conn) queue(it *outItem) {
	if it.task != nil {
		c.queueResult(it.task, &it.resp)
		return
	}
	c.stamp(&it.hdr, it.advance)
	c.w.Queue(&it.hdr, it.data)
}

// stamp sets the sequence numbers of a target PDU; advance consumes a StatSN.
func (c *conn) stamp(h *pdu.Header, advance bool) {
	h.StatSN = c.statSN
	if advance {
		c.statSN++
	}
	h.ExpCmdSN, h.MaxCmdSN = c.sess.window()
}

// queueResult queues a command's Data-In PDUs (split at the initiator's
// MaxRecvDataSegmentLength, F at each MaxBurstLength) and its status: in
// the last Data-In when GOOD (phase collapse), else in a SCSI Response.
func (c *conn) queueResult(t *task, resp *scsi.Response) {
	s := c.sess
	s.finishTask(t)

	data := resp.Data
	resFlag, residual := t.residual(uint32(len(data)))
	if !t.read {
		data = nil
	} else if uint32(len(data)) > t.edtl {
		data = data[:t.edtl]
	}
	s.readBytes.Add(uint64(len(data)))
	s.counters.readBytes.Add(uint64(len(data)))

	mrdsl := s.params.MaxRecvDataSegmentLength
	burst := s.params.MaxBurstLength
	collapse := resp.Status == scsi.StatusGood && len(data) > 0
	var dataSN uint32
	for off := 0; off < len(data); {
		n := min(len(data)-off, int(mrdsl))
		// A Data-In sequence never crosses a MaxBurstLength boundary.
		if rest := int(burst) - off%int(burst); n > rest {
			n = rest
		}
		last := off+n == len(data)
		h := pdu.Header{
			Opcode: pdu.OpSCSIDataIn, InitiatorTaskTag: t.itt, TargetTransferTag: reservedTag,
			DataSN: dataSN, BufferOffset: uint32(off),
		}
		if last || (off+n)%int(burst) == 0 {
			h.Flags |= pdu.FlagFinal
		}
		advance := false
		if last && collapse {
			h.Flags |= pdu.FlagStatus | resFlag
			h.SetStatus(resp.Status)
			h.ResidualCount = residual
			advance = true
		}
		c.stamp(&h, advance)
		c.w.Queue(&h, data[off:off+n])
		dataSN++
		off += n
	}
	if collapse {
		return
	}
	// Response 0: Command Completed at Target.
	h := pdu.Header{
		Opcode: pdu.OpSCSIResponse, Flags: pdu.FlagFinal | resFlag, InitiatorTaskTag: t.itt,
		ExpDataSN: dataSN, ResidualCount: residual,
	}
	h.SetStatus(resp.Status)
	var sense []byte
	if len(resp.Sense) > 0 {
		sense = make([]byte, 2+len(resp.Sense))
		sense[0], sense[1] = byte(len(resp.Sense)>>8), byte(len(resp.Sense))
		copy(sense[2:], resp.Sense)
	}
	c.stamp(&h, true)
	c.w.Queue(&h, sense)
}
