// Package cluster makes two or more netsan gateways one server: the
// gateway that holds a lock with a lease in Ceph leads (the floating
// address is on its interface, announced by gratuitous ARP, and it
// serves); the others stand by and take over when the lease lapses or the
// leader hands over. A new leader fences the one before it through Ceph
// (blocklisting its client) before it serves, so an old leader that was
// only paused cannot write an RBD image again.
//
// The shared store is a Coordinator, which *ceph.Cluster implements in a
// netsan built with Ceph: this package is pure Go and imports no go-ceph.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Config is one gateway's part in the cluster.
type Config struct {
	// Gateway is this gateway's name (the caller's default: the host name).
	Gateway string
	// Interface is where the floating address is added.
	Interface string
	// Address is the floating address with its prefix length, e.g.
	// 198.18.0.1/24. Only IPv4 is supported (gratuitous ARP).
	Address netip.Prefix
	// Lease is how long leadership lasts without a renewal.
	Lease time.Duration
	// Inventory is a digest of this gateway's inventory file, shown to the
	// others, which warn when theirs differs.
	Inventory string
}

// Coordinator is what leadership needs of the shared store: a lock with a
// lease on an object, who holds it, fencing another client, and an omap
// for the gateways' records. *ceph.Cluster implements it on RADOS (its
// pool from [ceph] pool). An error for which errors.Is(err,
// syscall.ESHUTDOWN) holds means this client is fenced (Ceph's
// EBLOCKLISTED).
type Coordinator interface {
	// ClientAddr is this client's address: what LockHolder reports and
	// Blocklist takes.
	ClientAddr() (string, error)
	// LockExclusive takes the exclusive lock name on oid as this client
	// with cookie for lease, or extends it if ours, and reports false when
	// another holds it. With renew it only extends a lock we hold, and
	// reports false when we no longer do.
	LockExclusive(oid, name, cookie string, lease time.Duration, renew bool) (bool, error)
	// Unlock releases our lock; one we do not hold is no error.
	Unlock(oid, name, cookie string) error
	// LockHolder is the cookie and client address of the lock's holder,
	// "" for both when it is free (or lapsed).
	LockHolder(oid, name string) (cookie, addr string, err error)
	// Blocklist fences the client at addr: its operations fail from then on.
	Blocklist(addr string) error
	// SetOmap sets keys of oid's omap.
	SetOmap(oid string, pairs map[string][]byte) error
	// Omap reads all of oid's omap; a missing object has none.
	Omap(oid string) (map[string][]byte, error)
}

// Where leadership lives: the lock on one RADOS object, whose omap holds
// the leader's record (leaderKey) and each gateway's (gatewayPrefix+name).
const (
	object        = "netsan.cluster"
	lockName      = "leader"
	leaderKey     = "leader"
	gatewayPrefix = "gateway."
)

// ErrFenced is what Run returns once this gateway's Ceph client has been
// blocklisted by a gateway that took over: it must not serve again with
// this client (a restart connects with a new one, as a standby).
var ErrFenced = errors.New("fenced: another gateway took over and blocklisted this gateway's Ceph client")

// errLost: the lease was not renewed in time, or the lock is another's.
var errLost = errors.New("leadership lost: the lease was not renewed in time")

func isFenced(err error) bool { return errors.Is(err, syscall.ESHUTDOWN) }

// repeated is the last of a run of errors that recur every poll while
// Ceph is away, so that each is logged once.
type repeated struct{ last string }

// changed reports whether err is new: not nil and not the last one. A nil
// err ends the run.
func (r *repeated) changed(err error) bool {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	changed := msg != "" && msg != r.last
	r.last = msg
	return changed
}

// leaderRecord is what a leader writes when it takes over (and when it
// hands over), so that the next one knows whom to fence even if it never
// saw it hold the lock.
type leaderRecord struct {
	Epoch   uint64    `json:"epoch"`
	Gateway string    `json:"gateway"`
	Addr    string    `json:"addr"`
	Since   time.Time `json:"since"`
	// Released: it stopped serving and unlocked; there is nobody to fence.
	Released bool `json:"released,omitempty"`
}

// member is a gateway's record, refreshed by each gateway every renewal
// interval.
type member struct {
	Gateway   string    `json:"gateway"`
	Addr      string    `json:"addr"`
	Inventory string    `json:"inventory"`
	Leader    bool      `json:"leader"`
	Seen      time.Time `json:"seen"`
}

// Elector campaigns for leadership of the cluster and leads while it
// holds it.
type Elector struct {
	cfg Config
	co  Coordinator
	log *zap.Logger
	ip  floating

	// renewEvery is how often the leader renews and every gateway
	// refreshes its record; poll how often a standby tries the lock;
	// margin how long before its lease could lapse a leader gives up.
	renewEvery, poll, margin time.Duration

	mu        sync.Mutex
	self      string // our Ceph client address, once Run has it
	leading   bool
	leader    string    // who leads, as last seen ("" none)
	since     time.Time // when they took over, where known
	renewals  uint64
	takeovers uint64
	members   map[string]member
	record    leaderRecord      // the last leader record read
	warned    map[string]string // gateway → the inventory digest warned about
}

// New returns an Elector for cfg on co. Renewals come every Lease/4, and a
// leader gives up Lease/4 before its lease could lapse for the others; a
// standby tries the lock every Lease/8.
func New(cfg Config, co Coordinator, log *zap.Logger) *Elector {
	return &Elector{
		cfg: cfg, co: co, log: log.With(zap.String("gateway", cfg.Gateway)),
		ip:         floating{ifname: cfg.Interface, prefix: cfg.Address},
		renewEvery: cfg.Lease / 4, poll: cfg.Lease / 8, margin: cfg.Lease / 4,
		members: map[string]member{}, warned: map[string]string{},
	}
}

// Run campaigns until ctx ends. Each time this gateway wins, it fences the
// previous leader, adds Address to Interface, announces it, and calls lead
// with a context cancelled when leadership is lost (a renewal not
// confirmed in time) or ctx ends. The address is removed when lead returns,
// and at once when leadership is lost. When ctx ends the lock is released
// as soon as lead has returned (a planned handover) and Run returns nil. If
// lead returns an error by itself, Run steps down and returns it; if it
// returns nil by itself, Run steps down and campaigns again. A gateway
// that finds itself fenced removes the address and returns ErrFenced.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	if !e.cfg.Address.Addr().Is4() {
		return fmt.Errorf("cluster: floating address %s: only IPv4 is supported", e.cfg.Address)
	}
	if e.cfg.Lease <= 0 {
		return fmt.Errorf("cluster: lease %s: want more than 0", e.cfg.Lease)
	}
	self, err := e.co.ClientAddr()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	e.mu.Lock()
	e.self = self
	e.mu.Unlock()
	e.log.Info("campaigning", zap.String("client", self), zap.Stringer("address", e.cfg.Address),
		zap.String("interface", e.cfg.Interface), zap.Duration("lease", e.cfg.Lease))
	// A copy left by a gateway that crashed here while it led.
	if err := e.ip.remove(); err != nil {
		return err
	}

	mctx, stop := context.WithCancel(ctx)
	refreshed := make(chan struct{})
	go func() { defer close(refreshed); e.refresh(mctx) }()
	defer func() { stop(); <-refreshed }()

	var prev string // the client of the leader last seen while standing by
	for {
		start, err := e.campaign(ctx, &prev)
		if err != nil || ctx.Err() != nil {
			return err
		}
		err = e.term(ctx, start, prev, lead)
		prev = ""
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// campaign tries the lock every poll until it has it, and returns when
// the attempt that took it started; zero time when ctx ended. While
// another holds the lock, *prev is that holder's client address.
func (e *Elector) campaign(ctx context.Context, prev *string) (time.Time, error) {
	t := time.NewTicker(e.poll)
	defer t.Stop()
	var failing repeated
	for {
		start := time.Now()
		won, err := e.co.LockExclusive(object, lockName, e.cfg.Gateway, e.cfg.Lease, false)
		if err == nil && won {
			return start, nil
		}
		if err == nil {
			var cookie, addr string
			if cookie, addr, err = e.co.LockHolder(object, lockName); err == nil {
				if addr != "" && addr != e.self {
					*prev = addr
				}
				e.sawLeader(cookie)
			}
		}
		switch {
		case isFenced(err):
			return time.Time{}, e.fenced(err)
		case failing.changed(err):
			e.log.Warn("standing by: the lock cannot be read", zap.String("op", "campaign"), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, nil
		case <-t.C:
		}
	}
}

// sawLeader notes who holds the lock ("" nobody), as a standby sees it.
func (e *Elector) sawLeader(gateway string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if gateway == e.leader {
		return
	}
	e.leader, e.since = gateway, time.Time{}
	if e.record.Gateway == gateway && !e.record.Released {
		e.since = e.record.Since
	}
	if gateway != "" {
		e.log.Info("standing by", zap.String("leader", gateway))
	}
}

// renewal is the outcome of one renewal of the lock, started at start.
type renewal struct {
	start time.Time
	held  bool
	err   error
}

// term is one time leading, from the lock attempt at start that won:
// fence the previous leader (prev, or the record's), write our record, add
// and announce the address, run lead, and renew the lock all along. It
// returns nil to campaign again (leadership lost, or ctx ended and the
// lock released), ErrFenced, or what lead returned by itself.
func (e *Elector) term(ctx context.Context, start time.Time, prev string, lead func(ctx context.Context) error) error {
	deadline := start.Add(e.cfg.Lease - e.margin)
	expiry := time.NewTimer(time.Until(deadline))
	defer expiry.Stop()

	// Renewals and the takeover run beside this loop, which must see the
	// deadline pass even when the cluster does not answer them.
	var wg sync.WaitGroup
	defer wg.Wait()
	rctx, stopRenewing := context.WithCancel(context.Background())
	defer stopRenewing()
	renewals := make(chan renewal)
	wg.Go(func() { e.renew(rctx, renewals) })
	type taken struct {
		rec leaderRecord
		err error
	}
	took := make(chan taken, 1)
	wg.Go(func() {
		rec, err := e.takeover(prev)
		took <- taken{rec, err}
	})

	leadCtx, cancelLead := context.WithCancel(ctx)
	defer cancelLead()
	var (
		rec      *leaderRecord // ours, once written
		leadDone chan error    // while lead runs
		ctxDone  = ctx.Done()
	)
	// lose steps down without the lock: the address first, so that
	// nobody reaches this gateway while lead winds down.
	lose := func(why error) error {
		e.stepDown(false)
		cancelLead()
		if leadDone != nil {
			<-leadDone
		}
		if isFenced(why) {
			return e.fenced(why)
		}
		e.log.Warn("stepped down", zap.String("op", "renew"), zap.Error(why))
		return nil
	}
	for {
		select {
		case t := <-took:
			took = nil
			switch {
			case isFenced(t.err):
				return e.fenced(t.err)
			case t.err != nil:
				// Not leading unfenced: hand the lock on, and give the
				// others a lease to try (one may be allowed to fence).
				e.log.Error("takeover failed; standing by again", zap.String("op", "fence"), zap.Error(t.err))
				e.release(deadline, nil)
				select {
				case <-ctx.Done():
				case <-time.After(e.cfg.Lease):
				}
				return nil
			case ctx.Err() != nil: // stopped while taking over
				e.release(deadline, &t.rec)
				return nil
			}
			rec = &t.rec
			if err := e.ip.add(time.Until(deadline)); err != nil {
				e.release(deadline, rec)
				return err
			}
			e.won(t.rec)
			wg.Go(func() {
				if err := e.ip.announce(leadCtx); err != nil {
					e.log.Warn("gratuitous ARP", zap.Error(err))
				}
			})
			leadDone = make(chan error, 1)
			go func() { leadDone <- lead(leadCtx) }() // waited for on every way out
		case r := <-renewals:
			if time.Now().After(deadline) {
				return lose(errLost)
			}
			if err := e.renewed(r, &deadline, expiry, rec != nil); err != nil {
				return lose(err)
			}
		case <-expiry.C:
			return lose(errLost)
		case <-ctxDone:
			ctxDone = nil
			cancelLead() // lead returns below; the lease is kept until it has
		case err := <-leadDone:
			e.stepDown(true)
			e.release(deadline, rec)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return fmt.Errorf("cluster: leading: %w", err)
			}
			return nil
		}
	}
}

// renew renews the lock every renewEvery until ctx ends, one renewal at a
// time, and sends each outcome.
func (e *Elector) renew(ctx context.Context, out chan<- renewal) {
	t := time.NewTicker(e.renewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		held, err := e.co.LockExclusive(object, lockName, e.cfg.Gateway, e.cfg.Lease, true)
		select {
		case out <- renewal{start, held, err}:
		case <-ctx.Done():
			return
		}
	}
}

// renewed moves the deadline on a confirmed renewal: the lock then holds
// until at least its start plus the lease; the floating address, once
// added, lives until the deadline. A renewal that failed leaves the
// deadline where it is; one that found the lock lost ends the term.
func (e *Elector) renewed(r renewal, deadline *time.Time, expiry *time.Timer, added bool) error {
	switch {
	case isFenced(r.err):
		return r.err
	case r.err != nil:
		e.log.Warn("lease renewal failed", zap.String("op", "renew"), zap.Error(r.err),
			zap.Duration("left", time.Until(*deadline)))
		return nil
	case !r.held:
		return errLost
	}
	if d := r.start.Add(e.cfg.Lease - e.margin); d.After(*deadline) {
		*deadline = d
		expiry.Reset(time.Until(d))
	}
	e.mu.Lock()
	e.renewals++
	e.mu.Unlock()
	if added {
		if err := e.ip.add(time.Until(*deadline)); err != nil {
			e.log.Warn("floating address lifetime", zap.String("op", "renew"), zap.Error(err))
		}
	}
	return nil
}

// takeover fences the previous leader and writes this gateway's leader
// record. The previous leader is prev, the holder seen while standing by,
// and the last record's leader: a gateway that started while the leader
// was frozen past its lease never saw it hold the lock. A leader that
// handed over (its record released) is not fenced, nor ever this client.
func (e *Elector) takeover(prev string) (leaderRecord, error) {
	m, err := e.co.Omap(object)
	if err != nil {
		return leaderRecord{}, err
	}
	var last leaderRecord
	if b, ok := m[leaderKey]; ok {
		if err := json.Unmarshal(b, &last); err != nil {
			e.log.Warn("leader record unreadable", zap.Error(err))
		}
	}
	var fence []string
	if prev != "" && prev != e.self && !(last.Released && last.Addr == prev) {
		fence = append(fence, prev)
	}
	if last.Addr != "" && !last.Released && last.Addr != e.self && last.Addr != prev {
		fence = append(fence, last.Addr)
	}
	for _, addr := range fence {
		t := time.Now()
		if err := e.co.Blocklist(addr); err != nil {
			return leaderRecord{}, fmt.Errorf("fencing the previous leader's client %s: %w", addr, err)
		}
		e.log.Warn("fenced the previous leader", zap.String("op", "fence"), zap.String("client", addr),
			zap.String("leader", last.Gateway), zap.Duration("took", time.Since(t)))
	}
	rec := leaderRecord{Epoch: last.Epoch + 1, Gateway: e.cfg.Gateway, Addr: e.self, Since: time.Now()}
	if err := e.putRecord(rec); err != nil {
		return leaderRecord{}, err
	}
	return rec, nil
}

func (e *Elector) putRecord(rec leaderRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return e.co.SetOmap(object, map[string][]byte{leaderKey: b})
}

// won marks this gateway the leader.
func (e *Elector) won(rec leaderRecord) {
	e.mu.Lock()
	e.leading, e.leader, e.since = true, e.cfg.Gateway, rec.Since
	e.takeovers++
	e.mu.Unlock()
	e.log.Info("leading", zap.Uint64("epoch", rec.Epoch), zap.Stringer("address", e.cfg.Address),
		zap.String("interface", e.cfg.Interface))
}

// stepDown removes the address and marks this gateway a standby; planned
// says it hands over rather than lost the lease.
func (e *Elector) stepDown(planned bool) {
	if err := e.ip.remove(); err != nil {
		e.log.Error("stepping down", zap.Error(err))
	}
	e.mu.Lock()
	was := e.leading
	e.leading, e.leader, e.since = false, "", time.Time{}
	e.mu.Unlock()
	if was && planned {
		e.log.Info("stepped down", zap.Stringer("address", e.cfg.Address))
	}
}

// release hands the lock over: our record (if written) says so, then the
// lock is free for a standby at once. Past the deadline the lock may be
// another's already, and the record too.
func (e *Elector) release(deadline time.Time, rec *leaderRecord) {
	if !time.Now().Before(deadline) {
		return
	}
	if rec != nil {
		r := *rec
		r.Released = true
		if err := e.putRecord(r); err != nil {
			e.log.Warn("handing over: leader record", zap.String("op", "release"), zap.Error(err))
		}
	}
	if err := e.co.Unlock(object, lockName, e.cfg.Gateway); err != nil {
		e.log.Warn("handing over: unlock", zap.String("op", "release"), zap.Error(err))
	}
}

// fenced is the end of this gateway as a leader: nothing of it may serve.
func (e *Elector) fenced(err error) error {
	e.stepDown(false)
	e.log.Error("fenced by another gateway; not serving again with this Ceph client", zap.Error(err))
	return fmt.Errorf("cluster: %w (%v)", ErrFenced, err)
}
