package iscsi

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// evictWarnInterval spaces the warnings about evicted logins, so that a
// flood costs a log line a minute, not one per connection.
const evictWarnInterval = time.Minute

// portal is the target's network face: the listeners and their accept
// loops, every open connection, and the bound on those still logging in.
type portal struct {
	log *zap.Logger
	// ready is closed once listen has opened the listeners, or failed.
	ready chan struct{}
	// conns counts the connections' serve goroutines.
	connWG sync.WaitGroup

	mu        sync.Mutex
	listening bool
	// maxPending is Server.MaxPendingLogins, fixed when Serve starts.
	maxPending int
	listeners  []net.Listener
	conns      map[*conn]struct{}
	pending    list.List // of *conn not yet in full feature phase, oldest first
	evicted    uint64    // pending connections closed to admit newer ones
	// evictedUnwarned counts evictions since the last warning at evictWarned.
	evictedUnwarned int
	evictWarned     time.Time
}

func newPortal(log *zap.Logger) *portal {
	return &portal{log: log, ready: make(chan struct{}), conns: map[*conn]struct{}{}}
}

// errServing refuses a second Serve.
var errServing = errors.New("iscsi: Serve called twice")

// listen opens a listener on every address, or none, and fixes the bound
// on pending logins.
func (p *portal) listen(ctx context.Context, addrs []string, maxPending int) error {
	p.mu.Lock()
	if p.listening {
		p.mu.Unlock()
		return errServing
	}
	p.listening = true
	p.maxPending = maxPending
	p.mu.Unlock()
	defer close(p.ready)

	var lns []net.Listener
	var lc net.ListenConfig
	for _, addr := range addrs {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("iscsi: listen %s: %w", addr, err)
		}
		p.log.Info("listening", zap.String("addr", ln.Addr().String()))
		lns = append(lns, ln)
	}
	p.mu.Lock()
	p.listeners = lns
	p.mu.Unlock()
	return nil
}

// serving reports whether Serve has started.
func (p *portal) serving() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listening
}

// addrs blocks until listen is done and returns the listeners' addresses
// (nil if it failed).
func (p *portal) addrs() []net.Addr {
	<-p.ready
	p.mu.Lock()
	defer p.mu.Unlock()
	var a []net.Addr
	for _, ln := range p.listeners {
		a = append(a, ln.Addr())
	}
	return a
}

// accept runs an accept loop per listener until ctx is done, serving each
// connection newConn makes in a goroutine of its own; then it closes the
// listeners and returns once the loops are gone. The connections go on:
// see shutdown.
func (p *portal) accept(ctx context.Context, newConn func(net.Conn) *conn) {
	p.mu.Lock()
	lns := p.listeners
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.acceptLoop(ctx, ln, newConn)
		}()
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
}

func (p *portal) acceptLoop(ctx context.Context, ln net.Listener, newConn func(net.Conn) *conn) {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("accept", zap.Error(err), zap.Duration("retry", delay))
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			continue
		}
		delay = 0
		c := newConn(nc)
		p.mu.Lock()
		p.conns[c] = struct{}{}
		warn := p.admitPending(c)
		p.connWG.Add(1)
		p.mu.Unlock()
		if warn != nil {
			warn()
		}
		go func() {
			defer p.connWG.Done()
			c.serve()
			p.mu.Lock()
			delete(p.conns, c)
			p.leavePending(c)
			p.mu.Unlock()
		}()
	}
}

// admitPending adds a new connection to the pending logins, closing the
// oldest when maxPending is reached. It returns the warning to log,
// outside p.mu, once per evictWarnInterval. Called with p.mu held.
func (p *portal) admitPending(c *conn) (warn func()) {
	if p.maxPending > 0 && p.pending.Len() >= p.maxPending {
		old := p.pending.Front().Value.(*conn)
		p.leavePending(old)
		// Evicted connections are not logged one by one: a flood would
		// flood the log too.
		old.evicted.Store(true)
		old.close(nil)
		p.evicted++
		p.evictedUnwarned++
		if now := time.Now(); now.Sub(p.evictWarned) >= evictWarnInterval {
			n, total, bound := p.evictedUnwarned, p.evicted, p.maxPending
			p.evictedUnwarned, p.evictWarned = 0, now
			warn = func() {
				p.log.Warn("too many connections logging in; closing the oldest",
					zap.Int("max_pending_logins", bound), zap.Int("evicted", n), zap.Uint64("evicted_total", total))
			}
		}
	}
	c.pending = p.pending.PushBack(c)
	return warn
}

// loggedIn takes c out of the pending logins once it reaches full feature
// phase.
func (p *portal) loggedIn(c *conn) {
	p.mu.Lock()
	p.leavePending(c)
	p.mu.Unlock()
}

// leavePending takes c out of the pending logins. Called with p.mu held.
func (p *portal) leavePending(c *conn) {
	if c.pending != nil {
		p.pending.Remove(c.pending)
		c.pending = nil
	}
}

// logins returns how many connections are logging in now, and how many
// were closed to admit newer ones.
func (p *portal) logins() (pending int, evicted uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending.Len(), p.evicted
}

// shutdown asks every full-feature connection to log out (Async Message,
// RFC 7143 §11.9), waits grace, then closes whatever remains and returns
// once every connection is gone. Called once accept has returned.
func (p *portal) shutdown(grace time.Duration) {
	p.each(func(c *conn) { c.requestLogout() })
	done := make(chan struct{})
	go func() {
		p.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	p.each(func(c *conn) { c.close(errors.New("target shutting down")) })
	<-done
}

// each runs f on every open connection, with p.mu held: f must not block.
func (p *portal) each(f func(*conn)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		f(c)
	}
}
