package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/backstore"
)

const (
	blockSize  = 512
	blockShift = 9
	// physExponent is log2 of logical blocks per physical block. 3 (4 KiB)
	// would describe the file systems beneath better, but libiscsi's
	// GetLBAStatus.UnmapSingle then wants a first descriptor at other than
	// the starting LBA, against SBC-3 5.6.
	physExponent   = 0
	maxTransfer    = 16384   // blocks per command (8 MiB), VPD B0
	optTransfer    = 2048    // blocks (1 MiB)
	maxUnmapBlocks = 1 << 20 // libiscsi deems more "insanely big"
	maxWriteSame   = 32768   // blocks of one WRITE SAME
	maxUnmapDescs  = 256
	maxCAWBlocks   = 255
	maxAtomic      = 2048 // blocks of WRITE ATOMIC(16)
	maxUAs         = 8    // pending unit attentions kept per nexus
)

// LUConfig describes one logical unit.
type LUConfig struct {
	Store    backstore.Store
	ReadOnly bool
	// SerialNumber is reported in VPD page 80h.
	SerialNumber string
	// DeviceID is the unique identifier behind the NAA designator of VPD 83h.
	DeviceID uint64
	// Reservations keeps the persistent reservation state under Name; nil
	// keeps it in memory only (and refuses APTPL: PTPL_C is 0).
	Reservations ReservationStore
	// Name is the LU's name in Reservations, the same wherever the LU is
	// opened again (iscsi: "<target IQN>-lun<N>").
	Name string
	// AbortTasks, when set, aborts every task of the given I_T nexuses on
	// lu, as a PERSISTENT RESERVE OUT with PREEMPT AND ABORT requires of
	// the transport (SPC-4 5.13.11.2.6; TAS is 0, so they end without a
	// response). It is called with the LU's lock held, so that no command
	// of those nexuses enters the LU between the preemption and the
	// abort: it must only mark the tasks and must not call into the LU.
	// The function it returns runs once the lock is released; it ends the
	// marked tasks and waits, bounded, for those inside the LU to return.
	AbortTasks func(lu *LogicalUnit, nexuses []Nexus) (wait func())
	// Buffers lends the data buffers of reads; nil gives the LU a pool of
	// its own. LUs that share one keep only the buffers their commands in
	// flight need: a pool per LU keeps a buffer of each size it has used for
	// each LU, which a target with a thousand LUs pays a thousand times.
	Buffers *BufferPool
	Log     *zap.Logger
}

// LogicalUnit is a direct-access block device (SBC-3) over a backing store.
// Execute may be called from many goroutines at once.
type LogicalUnit struct {
	cfg     LUConfig
	store   backstore.Store
	mapper  backstore.Mapper // nil: no GET LBA STATUS, no thin provisioning
	nblocks uint64
	log     *zap.Logger

	// Mode parameters read on the I/O path without the lock.
	wce    atomic.Bool
	dsense atomic.Bool
	swp    atomic.Bool

	mu      sync.Mutex
	nexuses map[Nexus]*nexusState
	pr      prState
	// reserved is the holder of an SPC-2 RESERVE(6)/(10), nil when none.
	reserved *Nexus

	commands table
	ranges   rangeLocks
	bufs     *BufferPool
}

// nexusState is what the LU keeps for one I_T nexus.
type nexusState struct {
	ua      []sense // pending unit attentions, oldest first
	prevent bool    // PREVENT ALLOW MEDIUM REMOVAL
	// copies holds EXTENDED COPY results by list identifier.
	copies map[byte]copyResult
}

// NewLogicalUnit builds a logical unit and reloads its persistent
// reservations from cfg.Reservations.
func NewLogicalUnit(cfg LUConfig) (*LogicalUnit, error) {
	if cfg.Store == nil {
		return nil, errors.New("scsi: logical unit without a store")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	n := uint64(cfg.Store.Size()) >> blockShift
	if n == 0 {
		return nil, fmt.Errorf("scsi: store of %d bytes holds no %d-byte block", cfg.Store.Size(), blockSize)
	}
	lu := &LogicalUnit{
		cfg:      cfg,
		store:    cfg.Store,
		nblocks:  n,
		log:      cfg.Log,
		nexuses:  make(map[Nexus]*nexusState),
		commands: commands,
		bufs:     cfg.Buffers,
	}
	if lu.bufs == nil {
		lu.bufs = new(BufferPool)
	}
	lu.mapper, _ = cfg.Store.(backstore.Mapper)
	lu.wce.Store(true)
	lu.ranges.init()
	if cfg.Reservations != nil {
		if err := lu.pr.load(cfg.Reservations, cfg.Name); err != nil {
			return nil, fmt.Errorf("scsi: persistent reservations: %w", err)
		}
	}
	return lu, nil
}

// Close flushes and closes the store.
func (lu *LogicalUnit) Close() error {
	err := lu.store.Sync()
	if cerr := lu.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// Execute runs one command. The returned Response's Data may come from a
// pool: the caller sends it and then calls Release.
func (lu *LogicalUnit) Execute(cmd *Command) (resp Response) {
	defer func() {
		if r := recover(); r != nil {
			lu.log.Error("command panicked", zap.Binary("cdb", cmd.CDB), zap.Any("panic", r), zap.Stack("stack"))
			resp.Release()
			resp = lu.fail(senseInternalFailure)
		}
	}()
	op, s := lu.commands.lookup(cmd.CDB)
	if s != nil {
		return lu.fail(*s)
	}
	if r, stop := lu.admit(cmd, op); stop {
		return r
	}
	if op.writes && (lu.cfg.ReadOnly || cmd.ReadOnly) {
		return lu.fail(senseWriteProtected)
	}
	if op.writes && lu.swp.Load() {
		return lu.fail(senseSoftWriteProtected)
	}
	return op.fn(lu, cmd)
}

// admit applies unit attentions and reservations (SAM-5 5.14, SPC-4 5.13).
func (lu *LogicalUnit) admit(cmd *Command, op *opcode) (Response, bool) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if cmd.Aborted != nil && cmd.Aborted.Load() {
		return Response{Status: StatusTaskAborted}, true // the transport sends nothing
	}
	ns := lu.nexusLocked(cmd.Nexus)
	if len(ns.ua) > 0 && !op.passUA {
		ua := ns.ua[0]
		ns.ua = ns.ua[1:]
		return lu.fail(ua), true
	}
	if lu.reserved != nil && *lu.reserved != cmd.Nexus && !op.spc2Allowed {
		return Response{Status: StatusReservationConflict}, true
	}
	if op.class == classReserve6 && lu.pr.Type != 0 {
		return Response{Status: StatusReservationConflict}, true
	}
	if lu.pr.conflict(cmd.Nexus, op.class) {
		return Response{Status: StatusReservationConflict}, true
	}
	return Response{}, false
}

// nexusLocked returns the nexus's state, creating it with a power-on unit
// attention on first access.
func (lu *LogicalUnit) nexusLocked(n Nexus) *nexusState {
	ns := lu.nexuses[n]
	if ns == nil {
		ns = &nexusState{ua: []sense{sensePowerOn}}
		lu.nexuses[n] = ns
	}
	return ns
}

// unitAttentionLocked queues a unit attention for n.
func (lu *LogicalUnit) unitAttentionLocked(n Nexus, s sense) {
	ns := lu.nexusLocked(n)
	for _, u := range ns.ua {
		if u.asc == s.asc && u.ascq == s.ascq {
			return
		}
	}
	if len(ns.ua) < maxUAs {
		ns.ua = append(ns.ua, s)
	}
}

// Reset is a LOGICAL UNIT RESET or TARGET WARM RESET received on from:
// every nexus, from included (SAM-5 7.6), gets a reset unit attention;
// SPC-2 reservations and medium removal prevention are cleared.
// Persistent reservations survive.
func (lu *LogicalUnit) Reset(from Nexus) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for n, ns := range lu.nexuses {
		ns.prevent = false
		lu.unitAttentionLocked(n, senseResetOccurred)
	}
	lu.reserved = nil
	lu.log.Info("logical unit reset", zap.String("iqn", from.InitiatorName))
}

// ReportedLUNsChanged tells every nexus that knows this LU that the LUN
// inventory of its target changed (REPORTED LUNS DATA HAS CHANGED, SPC-4
// 6.33), as after a reload that maps LUNs differently.
func (lu *LogicalUnit) ReportedLUNsChanged() {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for n := range lu.nexuses {
		lu.unitAttentionLocked(n, senseLUNsChanged)
	}
}

// NexusLost forgets an I_T nexus whose session ended (logout or connection
// loss): its SPC-2 reservation and medium removal prevention end. Its
// persistent reservation registrations stay (SPC-4 5.13.9).
func (lu *LogicalUnit) NexusLost(n Nexus) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	delete(lu.nexuses, n)
	if lu.reserved != nil && *lu.reserved == n {
		lu.reserved = nil
	}
}

// fail is a CHECK CONDITION response with s encoded as the control mode
// page's D_SENSE asks.
func (lu *LogicalUnit) fail(s sense) Response {
	return Response{Status: StatusCheckCondition, Sense: s.encode(lu.dsense.Load())}
}

// good returns data truncated to the allocation length.
func good(data []byte, alloc uint32) Response {
	if uint64(len(data)) > uint64(alloc) {
		data = data[:alloc]
	}
	return Response{Status: StatusGood, Data: data}
}

// BufferPool hands out data buffers in power-of-two size classes so that a
// READ's buffer goes from ReadAt to the socket and back without a copy. The
// zero value is ready; it may serve many LUs at once.
type BufferPool struct {
	classes [24]sync.Pool // 512 B .. 4 GiB; only the lower ones are used
}

func (p *BufferPool) get(n int) ([]byte, func()) {
	if n <= blockSize {
		n = blockSize
	}
	c := bits.Len(uint(n-1)) - blockShift
	if c >= len(p.classes) {
		return make([]byte, n), nil
	}
	b, _ := p.classes[c].Get().(*[]byte)
	if b == nil {
		s := make([]byte, 1<<(c+blockShift))
		b = &s
	}
	return (*b)[:n], func() { p.classes[c].Put(b) }
}

// rangeLocks serializes commands over overlapping block ranges: plain
// writes share, atomic commands (COMPARE AND WRITE, ORWRITE, WRITE ATOMIC)
// exclude everything that overlaps them.
type rangeLocks struct {
	mu     sync.Mutex
	cond   *sync.Cond
	active []lockedRange
}

type lockedRange struct {
	lba, n    uint64
	exclusive bool
}

func (r *rangeLocks) init() { r.cond = sync.NewCond(&r.mu) }

func (r *rangeLocks) lock(lba, n uint64, exclusive bool) func() {
	want := lockedRange{lba, n, exclusive}
	r.mu.Lock()
	for r.conflicts(want) {
		r.cond.Wait()
	}
	r.active = append(r.active, want)
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		for i, a := range r.active {
			if a == want {
				r.active[i] = r.active[len(r.active)-1]
				r.active = r.active[:len(r.active)-1]
				break
			}
		}
		r.mu.Unlock()
		r.cond.Broadcast()
	}
}

func (r *rangeLocks) conflicts(w lockedRange) bool {
	for _, a := range r.active {
		if (a.exclusive || w.exclusive) && a.lba < w.lba+w.n && w.lba < a.lba+a.n {
			return true
		}
	}
	return false
}

var be = binary.BigEndian
