package iscsi

import (
	"container/list"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// reservedTag is the Initiator/Target Task Tag value 0xffffffff (RFC 7143 §11.2.1.8).
const reservedTag = 0xffffffff

// conn is one TCP connection: login, then full feature phase with one
// reader (the serve goroutine), one writer, and one goroutine per executing
// command (bounded by the session's CmdSN window).
type conn struct {
	srv *Server
	nc  net.Conn
	log *zap.Logger
	r   pdu.Reader
	w   pdu.Writer

	sess *session
	// statSN is owned by the login code, then by the writer goroutine.
	statSN uint32

	// out feeds the writer goroutine; made on entering full feature phase
	// (the login phase writes its responses itself).
	out       chan outItem
	done      chan struct{} // closed by close()
	closeOnce sync.Once
	finished  chan struct{} // closed when serve returns
	lastRecv  atomic.Int64  // unix nanoseconds of the last PDU received
	// workers counts commands and task management functions in flight.
	workers sync.WaitGroup
	// work feeds commands to the worker goroutines (see execute).
	work     chan *task
	nworkers int // reader goroutine only
	idle     atomic.Int32
	poolWG   sync.WaitGroup
	ffp      atomic.Bool // in full feature phase: the writer owns the socket

	// pending is c's place among the Server's pending logins, nil once in
	// full feature phase; guarded by srv.mu.
	pending *list.Element
	// evicted: closed to make room for a newer login (see MaxPendingLogins).
	evicted atomic.Bool
}

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

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		srv:      s,
		nc:       nc,
		log:      s.log.With(zap.String("ip", nc.RemoteAddr().String())),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	c.r = pdu.Reader{R: nc, Pool: &s.pool, MaxRecvDataSegmentLength: 65536}
	c.r.SetBufferSize(loginBuffer)
	c.w = pdu.Writer{W: nc}
	return c
}

// loginBuffer is the read buffer until full feature phase, which gets
// pdu.DefaultBufferSize. A login is lock-step, one Login Request answered
// before the next, and a Login Request is a BHS and some hundred bytes of
// text: 4 KiB takes one in a single read. A longer text (up to the 8192
// bytes of the default MaxRecvDataSegmentLength, or CHAP with long
// challenges) costs a read more, as it is read past the buffer straight
// into its data buffer. The full-feature size would cost an unauthenticated
// peer's connection 64 KiB instead.
const loginBuffer = 4 << 10

// close drops the connection; the goroutines notice and exit. Safe to call
// many times and from any goroutine.
func (c *conn) close(why error) {
	c.closeOnce.Do(func() {
		if why != nil {
			c.log.Info("closing connection", zap.Error(why))
		}
		close(c.done)
		c.nc.Close()
	})
}

// lost closes the connection after an I/O error. The initiator hanging up
// (EOF, or a reset as some send after their logout) is routine and logged
// at DEBUG; anything else at WARN. Nothing is logged when the target
// closed the connection itself.
func (c *conn) lost(op string, err error) {
	select {
	case <-c.done:
		return
	default:
	}
	if peerGone(err) {
		c.log.Debug("initiator disconnected", zap.String("op", op), zap.Error(err))
	} else {
		c.log.Warn("connection failed", zap.String("op", op), zap.Error(err))
	}
	c.close(nil)
}

// peerGone reports whether err says the initiator closed or reset the
// connection between PDUs.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// wait returns once the connection's goroutines are gone.
func (c *conn) wait() { <-c.finished }

func (c *conn) serve() {
	defer close(c.finished)
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("connection panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
		c.close(nil)
	}()
	sess, err := c.login()
	if err != nil {
		if !c.evicted.Load() {
			c.log.Info("login failed", zap.Error(err))
		}
		return
	}
	c.srv.mu.Lock()
	c.srv.leavePending(c)
	c.srv.mu.Unlock()
	c.fullFeature(sess)
}

// requestLogout asks the initiator to log out (Async Message, event 1);
// connections not yet in full feature phase are closed.
func (c *conn) requestLogout() {
	if !c.ffp.Load() || c.sess == nil || c.sess.discovery {
		c.close(errors.New("target shutting down"))
		return
	}
	it := outItem{hdr: pdu.Header{
		Opcode: pdu.OpAsyncMessage, Flags: pdu.FlagFinal, InitiatorTaskTag: reservedTag,
		AsyncEvent: 1, Parameter3: uint16(max(1, c.srv.LogoutGrace/time.Second)),
	}, advance: true}
	select {
	case c.out <- it:
	default:
		c.close(errors.New("target shutting down"))
	}
}

// send queues an item for the writer unless the connection is closing.
func (c *conn) send(it outItem) {
	select {
	case c.out <- it:
	case <-c.done:
		c.discard(it)
	}
}

func (c *conn) discard(it outItem) {
	if it.release != nil {
		it.release()
	}
	if it.task != nil {
		it.resp.Release()
		c.sess.finishTask(it.task)
	}
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
		for {
			select {
			case it := <-c.out:
				c.discard(it)
			default:
				return
			}
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
	for {
		select {
		case <-c.done:
			return
		case it := <-c.out:
			if err := c.writeBatch(it); err != nil {
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
				if err := c.writeBatch(outItem{hdr: h}); err != nil {
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

// writeBatch sends it and whatever else is already queued, up to the batch
// bounds, in one write; buffers are released once it is out.
func (c *conn) writeBatch(it outItem) error {
	var done []outItem
	closeAfter := false
	for {
		c.queue(&it)
		done = append(done, it)
		if it.closeAfter {
			closeAfter = true
			break
		}
		if len(done) == batchItems || c.w.Queued() >= batchBytes {
			break
		}
		var more bool
		select {
		case it, more = <-c.out:
		default:
		}
		if !more {
			break
		}
	}
	// An initiator that stops reading must not wedge the writer (and with
	// it the NOP-In timeout) forever.
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := c.w.Flush()
	for _, d := range done {
		if d.release != nil {
			d.release()
		}
		if d.task != nil {
			d.resp.Release()
		}
	}
	if err == nil && closeAfter {
		// Closes c.done first, so that lost logs nothing for it.
		c.close(nil)
		return errClosedAfterLogout
	}
	return err
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
