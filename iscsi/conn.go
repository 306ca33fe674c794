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
)

// reservedTag is the Initiator/Target Task Tag value 0xffffffff (RFC 7143 §11.2.1.8).
const reservedTag = 0xffffffff

// conn is one TCP connection and its life: the login phase on the serve
// goroutine (loginphase.go), then full feature phase (fullfeature.go) with
// that goroutine reading PDUs, a writer goroutine owning the socket's
// write side and StatSN (writer.go), and a set of workers running commands
// (command.go), at most the CmdSN window, kept for the connection's life.
// The portal counts it from accept until serve returns; close ends it from
// any goroutine.
type conn struct {
	srv *Server
	nc  net.Conn
	// log gains who the initiator is during the login, on the serve
	// goroutine: other goroutines go through logger.
	log *zap.Logger
	// addrLog, made with log, names the address only.
	addrLog *zap.Logger
	r       pdu.Reader
	w       pdu.Writer

	sess *session
	// statSN is owned by the login code, then by the writer goroutine.
	statSN uint32

	// out feeds the writer goroutine; ready on entering full feature phase
	// (the login phase writes its responses itself).
	out       outQueue
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

	// pending is c's place among the portal's pending logins, nil once in
	// full feature phase; guarded by the portal's lock.
	pending *list.Element
	// evicted: closed to make room for a newer login (see MaxPendingLogins).
	evicted atomic.Bool
}

func (s *Server) newConn(nc net.Conn) *conn {
	log := s.log.With(zap.String("ip", nc.RemoteAddr().String()))
	c := &conn{
		srv:      s,
		nc:       nc,
		log:      log,
		addrLog:  log,
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	c.r = pdu.Reader{R: nc, Pool: &s.pool, MaxRecvDataSegmentLength: 65536}
	c.r.SetBufferSize(loginBuffer)
	c.w = pdu.Writer{W: nc}
	return c
}

// loginBuffer is the read buffer until full feature phase, which gets
// pdu.DefaultBufferSize while the initiator keeps it busy (and
// pdu.IdleBufferSize, this size, otherwise). A login is lock-step, one Login Request answered
// before the next, and a Login Request is a BHS and some hundred bytes of
// text: 4 KiB takes one in a single read. A longer text (up to the 8192
// bytes of the default MaxRecvDataSegmentLength, or CHAP with long
// challenges) costs a read more, as it is read past the buffer straight
// into its data buffer. The full-feature size would cost an unauthenticated
// peer's connection 64 KiB instead.
const loginBuffer = 4 << 10

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
	c.srv.portal.loggedIn(c)
	c.fullFeature(sess)
}

// close drops the connection; the goroutines notice and exit. Safe to call
// many times and from any goroutine.
func (c *conn) close(why error) {
	c.closeOnce.Do(func() {
		if why != nil {
			c.logger().Info("closing connection", zap.Error(why))
		}
		close(c.done)
		c.nc.Close()
	})
}

// logger is c.log for any goroutine: c.log itself once in full feature
// phase (the login is over, and with it the changes to c.log), the
// address-only logger before.
func (c *conn) logger() *zap.Logger {
	if c.ffp.Load() {
		return c.log
	}
	return c.addrLog
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
	if !c.out.put(it) {
		c.close(errors.New("target shutting down"))
	}
}

// send queues an item for the writer unless the writer has stopped.
func (c *conn) send(it outItem) {
	if !c.out.put(it) {
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
