package scsi

import (
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/netsan/netsan/iscsi/backstore"
)

func prout(sa, typ byte, key, saKey uint64, aptpl bool) ([]byte, []byte) {
	c := cdb(0x5f, sa, typ, 0, 0, 0, 0, 0, 24, 0)
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p, key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	if aptpl {
		p[20] = 0x01
	}
	return c, p
}

func proutStep(name string, from Nexus, sa, typ byte, key, saKey uint64, w want) step {
	c, p := prout(sa, typ, key, saKey, false)
	return step{name: name, from: from, cdb: c, out: p, want: w}
}

func prin(sa byte) []byte { return cdb(0x5e, sa, 0, 0, 0, 0, 0, 0x04, 0) }

func keysAre(keys ...uint64) func([]byte) bool {
	return func(d []byte) bool {
		if int(binary.BigEndian.Uint32(d[4:])) != 8*len(keys) {
			return false
		}
		for i, k := range keys {
			if binary.BigEndian.Uint64(d[8+8*i:]) != k {
				return false
			}
		}
		return true
	}
}

func TestPersistentReservationAccess(t *testing.T) {
	read := rw10(0x28, 0, 0, 1)
	write := rw10(0x2a, 0, 0, 1)
	blk := fill(blockSize, 9)
	// For each type: access of the holder A, registrant B, non-registrant C
	// (SPC-4 table 62).
	for _, tc := range []struct {
		name                   string
		typ                    byte
		bRead, bWrite          want
		cRead, cWrite, cIsRead want
	}{
		{"write exclusive", prWriteExclusive, ok, conflict, ok, conflict, ok},
		{"exclusive access", prExclusiveAccess, conflict, conflict, conflict, conflict, ok},
		{"write exclusive registrants only", prWriteExclusiveRO, ok, ok, ok, conflict, ok},
		{"exclusive access registrants only", prExclusiveAccessRO, ok, ok, conflict, conflict, ok},
		{"write exclusive all registrants", prWriteExclusiveAR, ok, ok, ok, conflict, ok},
		{"exclusive access all registrants", prExclusiveAccessAR, ok, ok, conflict, conflict, ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lu := newTestLU(t)
			runSteps(t, lu, []step{
				proutStep("A registers", nexusA, prOutRegister, 0, 0, 0xa, ok),
				proutStep("B registers", nexusB, prOutRegisterIgnore, 0, 0, 0xb, ok),
				proutStep("C reserves unregistered", nexusC, prOutReserve, tc.typ, 0, 0, conflict),
				proutStep("A reserves with the wrong key", nexusA, prOutReserve, tc.typ, 0xb, 0, conflict),
				proutStep("A reserves", nexusA, prOutReserve, tc.typ, 0xa, 0, ok),
				proutStep("A reserves again", nexusA, prOutReserve, tc.typ, 0xa, 0, ok),
				{name: "holder reads", cdb: read, want: ok},
				{name: "holder writes", cdb: write, out: blk, want: ok},
				{name: "registrant reads", from: nexusB, cdb: read, want: tc.bRead},
				{name: "registrant writes", from: nexusB, cdb: write, out: blk, want: tc.bWrite},
				{name: "other reads", from: nexusC, cdb: read, want: tc.cRead},
				{name: "other writes", from: nexusC, cdb: write, out: blk, want: tc.cWrite},
				{name: "other INQUIRY", from: nexusC, cdb: cdb(0x12, 0, 0, 0, 36), want: ok},
				{name: "other READ CAPACITY", from: nexusC, cdb: cdb(0x25), want: tc.cIsRead},
				{name: "READ RESERVATION", from: nexusC, cdb: prin(prInReadReservation), want: ok, check: func(d []byte) bool {
					key := uint64(0xa)
					if allRegistrants(tc.typ) {
						key = 0
					}
					return binary.BigEndian.Uint32(d[4:]) == 16 && binary.BigEndian.Uint64(d[8:]) == key && d[21] == tc.typ
				}},
				proutStep("release with the wrong type", nexusA, prOutRelease, tc.typ%8+1, 0xa, 0, badRelease),
				proutStep("release", nexusA, prOutRelease, tc.typ, 0xa, 0, ok),
				{name: "other writes after release", from: nexusC, cdb: write, out: blk, want: ok},
			})
		})
	}
}

func TestPersistentReservationServiceActions(t *testing.T) {
	lu := newTestLU(t)
	runSteps(t, lu, []step{
		{name: "REPORT CAPABILITIES", cdb: prin(prInReportCapabilites), want: ok, check: func(d []byte) bool {
			return len(d) == 8 && d[1] == 8 && d[2] == 0x08 && d[3]&0x80 != 0 && d[4] == 0xea && d[5] == 0x01
		}},
		{name: "no keys", cdb: prin(prInReadKeys), want: ok, check: keysAre()},
		proutStep("register with a key when unregistered", nexusA, prOutRegister, 0, 5, 0xa, conflict),
		proutStep("A registers", nexusA, prOutRegister, 0, 0, 0xa, ok),
		proutStep("B registers", nexusB, prOutRegister, 0, 0, 0xb, ok),
		proutStep("C registers", nexusC, prOutRegister, 0, 0, 0xc, ok),
		{name: "keys", cdb: prin(prInReadKeys), want: ok, check: keysAre(0xa, 0xb, 0xc)},
		{name: "generation", cdb: prin(prInReadKeys), want: ok, check: func(d []byte) bool { return binary.BigEndian.Uint32(d) == 3 }},
		{name: "READ KEYS truncated", cdb: cdb(0x5e, 0, 0, 0, 0, 0, 0, 0, 12, 0), want: ok, check: func(d []byte) bool {
			return len(d) == 12 && binary.BigEndian.Uint32(d[4:]) == 24
		}},
		proutStep("A changes key", nexusA, prOutRegister, 0, 0xa, 0xaa, ok),
		proutStep("A reserves EA", nexusA, prOutReserve, prExclusiveAccess, 0xaa, 0, ok),
		proutStep("B reserves", nexusB, prOutReserve, prExclusiveAccess, 0xb, 0, conflict),
		proutStep("B preempts A", nexusB, prOutPreempt, prWriteExclusive, 0xb, 0xaa, ok),
		{name: "A was preempted", cdb: cdb(0x00), want: uaPreempted},
		{name: "A is unregistered", cdb: prin(prInReadKeys), want: ok, check: keysAre(0xb, 0xc)},
		{name: "B holds WE", cdb: prin(prInReadReservation), want: ok, check: func(d []byte) bool {
			return binary.BigEndian.Uint64(d[8:]) == 0xb && d[21] == prWriteExclusive
		}},
		{name: "A can read under WE", cdb: rw10(0x28, 0, 0, 1), want: ok},
		proutStep("C preempts nothing", nexusC, prOutPreempt, prWriteExclusive, 0xc, 0x99, conflict),
		proutStep("C preempts with zero key", nexusC, prOutPreempt, prWriteExclusive, 0xc, 0, invalidPar),
		proutStep("reserve with bad scope", nexusB, prOutReserve, 0x10|prWriteExclusive, 0xb, 0, invalidCDB),
		proutStep("reserve with bad type", nexusB, prOutReserve, 0x2, 0xb, 0, invalidCDB),
		{name: "PROUT wrong length", cdb: cdb(0x5f, 0, 1, 0, 0, 0, 0, 0, 20, 0), out: make([]byte, 20), want: paramLen},
		{name: "PRIN bad service action", cdb: cdb(0x5e, 0x04, 0, 0, 0, 0, 0, 0, 8, 0), want: invalidCDB},
		proutStep("C clears with the wrong key", nexusC, prOutClear, 0, 0xb, 0, conflict),
		proutStep("C clears", nexusC, prOutClear, 0, 0xc, 0, ok),
		{name: "B saw the clear", from: nexusB, cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x2a, 3}},
		{name: "nothing left", cdb: prin(prInReadReservation), want: ok, check: func(d []byte) bool { return binary.BigEndian.Uint32(d[4:]) == 0 }},
		{name: "no keys left", cdb: prin(prInReadKeys), want: ok, check: keysAre()},
		proutStep("B registers again", nexusB, prOutRegister, 0, 0, 0xb, ok),
		proutStep("B reserves WERO", nexusB, prOutReserve, prWriteExclusiveRO, 0xb, 0, ok),
		proutStep("C registers", nexusC, prOutRegister, 0, 0, 0xc, ok),
		proutStep("B unregisters", nexusB, prOutRegister, 0, 0xb, 0, ok),
		{name: "C told the reservation went", from: nexusC, cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x2a, 4}},
		{name: "full status", cdb: prin(prInReadFullStatus), want: ok, check: func(d []byte) bool {
			return binary.BigEndian.Uint64(d[8:]) == 0xc && d[8+12] == 0 && d[8+24] == 0x45
		}},
		proutStep("A registers again", nexusA, prOutRegister, 0, 0, 1, ok),
	})
	c, p := prout(prOutRegister, 0, 1, 2, false)
	p[20] = 0x08
	check(t, "SPEC_I_PT", run(lu, nexusA, c, p), invalidPar)
	c, p = prout(prOutRegister, 0, 1, 2, true)
	check(t, "APTPL without a state file", run(lu, nexusA, c, p), invalidPar)
}

func TestPersistentReservationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "lu.img")
	open := func() *LogicalUnit {
		s, err := backstore.Open(img, testBlocks*blockSize, false)
		if err != nil {
			t.Fatal(err)
		}
		lu, err := NewLogicalUnit(LUConfig{Store: s, Reservations: ReservationFiles{Dir: dir}, Name: "lu", SerialNumber: "x"})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []Nexus{nexusA, nexusB} {
			run(lu, n, cdb(0x00), nil)
		}
		return lu
	}
	lu := open()
	c, p := prout(prOutRegister, 0, 0, 0xa, true)
	check(t, "register with APTPL", run(lu, nexusA, c, p), ok)
	c, p = prout(prOutReserve, prExclusiveAccess, 0xa, 0, false)
	check(t, "reserve", run(lu, nexusA, c, p), ok)
	if err := lu.Close(); err != nil {
		t.Fatal(err)
	}

	lu = open()
	runSteps(t, lu, []step{
		{name: "keys after restart", cdb: prin(prInReadKeys), want: ok, check: keysAre(0xa)},
		{name: "reservation after restart", cdb: prin(prInReadReservation), want: ok, check: func(d []byte) bool {
			return binary.BigEndian.Uint64(d[8:]) == 0xa && d[21] == prExclusiveAccess
		}},
		{name: "B still blocked", from: nexusB, cdb: rw10(0x28, 0, 0, 1), want: conflict},
		{name: "A still holder", cdb: rw10(0x28, 0, 0, 1), want: ok},
		{name: "PTPL_A reported", cdb: prin(prInReportCapabilites), want: ok, check: func(d []byte) bool { return d[3]&1 == 1 }},
	})
	// Registering again without APTPL drops the saved state.
	c, p = prout(prOutRegister, 0, 0xa, 0xa, false)
	check(t, "re-register without APTPL", run(lu, nexusA, c, p), ok)
	lu.Close()
	lu = open()
	defer lu.Close()
	runSteps(t, lu, []step{
		{name: "nothing after restart", cdb: prin(prInReadKeys), want: ok, check: keysAre()},
	})
}

func TestRegisterAndMove(t *testing.T) {
	lu := newTestLU(t)
	move := func(key, saKey uint64, unreg bool, to Nexus) ([]byte, []byte) {
		tid := transportID(to)
		p := make([]byte, 24, 24+len(tid))
		binary.BigEndian.PutUint64(p, key)
		binary.BigEndian.PutUint64(p[8:], saKey)
		if unreg {
			p[17] = 0x02
		}
		binary.BigEndian.PutUint16(p[18:], 1)
		binary.BigEndian.PutUint32(p[20:], uint32(len(tid)))
		p = append(p, tid...)
		c := cdb(0x5f, prOutRegisterAndMove, 0, 0, 0, 0, 0, 0, byte(len(p)), 0)
		return c, p
	}
	c, p := move(0xa, 0xb, true, nexusB)
	runSteps(t, lu, []step{
		{name: "move without a reservation", cdb: c, out: p, want: conflict},
		proutStep("A registers", nexusA, prOutRegister, 0, 0, 0xa, ok),
		proutStep("A reserves", nexusA, prOutReserve, prExclusiveAccess, 0xa, 0, ok),
		{name: "B blocked", from: nexusB, cdb: rw10(0x28, 0, 0, 1), want: conflict},
		{name: "move to B", cdb: c, out: p, want: ok},
		{name: "B holds it", from: nexusB, cdb: prin(prInReadReservation), want: ok, check: func(d []byte) bool {
			return binary.BigEndian.Uint64(d[8:]) == 0xb && d[21] == prExclusiveAccess
		}},
		{name: "A unregistered", cdb: prin(prInReadKeys), want: ok, check: keysAre(0xb)},
		{name: "A now blocked", cdb: rw10(0x28, 0, 0, 1), want: conflict},
		{name: "B reads", from: nexusB, cdb: rw10(0x28, 0, 0, 1), want: ok},
	})
	c, p = move(0xb, 0xc, false, nexusB)
	check(t, "move to itself", run(lu, nexusB, c, p), invalidPar)
	c, p = move(0xb, 0, false, nexusC)
	check(t, "move with a zero key", run(lu, nexusB, c, p), invalidPar)
	c, p = move(0xb, 0xc, false, nexusC)
	p[24] = 0x05 // TransportID format 00b: no ISID, so no one I_T nexus
	check(t, "TransportID without ISID", run(lu, nexusB, c, p), invalidPar)
	if got, ok := parseTransportID(transportID(nexusC), nexusA); !ok || got != nexusC {
		t.Fatalf("TransportID round trip: %+v %v", got, ok)
	}
}

// TestPreemptAndAbortTasks checks the hand-off to the transport: only a
// PREEMPT AND ABORT that succeeds asks it to abort, for exactly the
// preempted nexuses, marking under the LU's lock and waiting outside it;
// and a command the transport aborted meanwhile takes no unit attention.
func TestPreemptAndAbortTasks(t *testing.T) {
	type call struct {
		nexuses          []Nexus
		heldAtMark       bool
		heldAtWait, wait bool
	}
	var calls []*call
	var lu *LogicalUnit
	lu = newTestLU(t, func(c *LUConfig) {
		c.AbortTasks = func(l *LogicalUnit, nexuses []Nexus) func() {
			if l != lu {
				t.Errorf("AbortTasks for another LU")
			}
			c := &call{nexuses: append([]Nexus(nil), nexuses...), heldAtMark: !l.mu.TryLock()}
			if !c.heldAtMark {
				l.mu.Unlock()
			}
			calls = append(calls, c)
			return func() {
				c.wait = true
				c.heldAtWait = !l.mu.TryLock()
				if !c.heldAtWait {
					l.mu.Unlock()
				}
			}
		}
	})
	for _, s := range []step{
		proutStep("A registers", nexusA, prOutRegister, 0, 0, 0xa, ok),
		proutStep("B registers", nexusB, prOutRegister, 0, 0, 0xb, ok),
		proutStep("C registers with B's key", nexusC, prOutRegister, 0, 0, 0xb, ok),
		proutStep("B reserves", nexusB, prOutReserve, prWriteExclusive, 0xb, 0, ok),
		proutStep("A preempts a key nobody has", nexusA, prOutPreemptAndAbort, prWriteExclusive, 0xa, 0xd, conflict),
		proutStep("A with a wrong key", nexusA, prOutPreemptAndAbort, prWriteExclusive, 0xd, 0xb, conflict),
	} {
		check(t, s.name, run(lu, s.from, s.cdb, s.out), s.want)
	}
	if len(calls) != 0 {
		t.Fatalf("failed PREEMPT AND ABORT aborted tasks of %v", calls[0].nexuses)
	}

	// B's command the transport aborted while it waited for the LU.
	var mark atomic.Bool
	mark.Store(true)
	aborted := &Command{CDB: cdb(0x00), Nexus: nexusB, Aborted: &mark}
	c, p := prout(prOutPreemptAndAbort, prWriteExclusive, 0xa, 0xb, false)
	check(t, "A preempts and aborts B's key", run(lu, nexusA, c, p), ok)
	if len(calls) != 1 {
		t.Fatalf("AbortTasks called %d times, want 1", len(calls))
	}
	got := calls[0]
	if len(got.nexuses) != 2 || got.nexuses[0] != nexusB || got.nexuses[1] != nexusC {
		t.Errorf("aborted nexuses %v, want B and C", got.nexuses)
	}
	if !got.heldAtMark || !got.wait || got.heldAtWait {
		t.Errorf("LU lock held when marking %v, waited %v, lock held when waiting %v; want true, true, false",
			got.heldAtMark, got.wait, got.heldAtWait)
	}
	if r := lu.Execute(aborted); r.Status != StatusTaskAborted {
		t.Errorf("aborted command: status %#x sense %x, want TASK ABORTED for the transport to drop", r.Status, r.Sense)
	}
	check(t, "B's next command", run(lu, nexusB, cdb(0x00), nil), uaPreempted)
	check(t, "C's next command", run(lu, nexusC, cdb(0x00), nil), uaPreempted)

	// Plain PREEMPT removes registrations but aborts nothing.
	for _, s := range []step{
		proutStep("B registers again", nexusB, prOutRegister, 0, 0, 0xb, ok),
		proutStep("A preempts B", nexusA, prOutPreempt, prWriteExclusive, 0xa, 0xb, ok),
	} {
		check(t, s.name, run(lu, s.from, s.cdb, s.out), s.want)
	}
	if len(calls) != 1 {
		t.Errorf("PREEMPT aborted tasks of %v", calls[len(calls)-1].nexuses)
	}
	check(t, "B's next command after PREEMPT", run(lu, nexusB, cdb(0x00), nil), uaPreempted)
}
