package scsi

import (
	"encoding/hex"
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// Persistent reservation types (SPC-4 table 169).
const (
	prWriteExclusive      = 0x1
	prExclusiveAccess     = 0x3
	prWriteExclusiveRO    = 0x5 // registrants only
	prExclusiveAccessRO   = 0x6
	prWriteExclusiveAR    = 0x7 // all registrants
	prExclusiveAccessAR   = 0x8
	prOutParamListLength  = 24
	prOutRegister         = 0x0
	prOutReserve          = 0x1
	prOutRelease          = 0x2
	prOutClear            = 0x3
	prOutPreempt          = 0x4
	prOutPreemptAndAbort  = 0x5
	prOutRegisterIgnore   = 0x6
	prOutRegisterAndMove  = 0x7
	prInReadKeys          = 0x0
	prInReadReservation   = 0x1
	prInReportCapabilites = 0x2
	prInReadFullStatus    = 0x3
)

// prState is a LU's reservation state, guarded by LogicalUnit.mu, and the
// store that keeps it.
type prState struct {
	PRState
	store ReservationStore // nil: memory only
	name  string
}

func (p *prState) find(n Nexus) int {
	for i, r := range p.Regs {
		if r.Nexus == n {
			return i
		}
	}
	return -1
}

func allRegistrants(t byte) bool { return t == prWriteExclusiveAR || t == prExclusiveAccessAR }

func (p *prState) isHolder(n Nexus) bool {
	if p.Type == 0 {
		return false
	}
	if allRegistrants(p.Type) {
		return p.find(n) >= 0
	}
	return p.Holder == n
}

// conflict applies SPC-4 table 62 / SBC-3 table 13 to a command of class c
// from nexus n.
func (p *prState) conflict(n Nexus, c class) bool {
	if p.Type == 0 || c == classAllowed || c == classReserve6 || p.isHolder(n) {
		return false
	}
	registered := p.find(n) >= 0
	switch p.Type {
	case prWriteExclusive:
		return c == classWrite
	case prExclusiveAccess:
		return true
	case prWriteExclusiveRO, prWriteExclusiveAR:
		return c == classWrite && !registered
	default: // exclusive access, registrants only / all registrants
		return !registered
	}
}

// load reads the state saved under name in store.
func (p *prState) load(store ReservationStore, name string) error {
	p.store, p.name = store, name
	s, ok, err := store.Load(name)
	if err != nil || !ok {
		return err
	}
	switch s.Type {
	case 0, prWriteExclusive, prExclusiveAccess, prWriteExclusiveRO, prExclusiveAccessRO, prWriteExclusiveAR, prExclusiveAccessAR:
	default:
		return fmt.Errorf("%s: reservation type %d", name, s.Type)
	}
	p.PRState = s
	return nil
}

// save hands the state to the store after every change.
func (p *prState) save() error {
	if p.store == nil {
		return nil
	}
	return p.store.Save(p.name, p.PRState)
}

// prIn is PERSISTENT RESERVE IN (SPC-4 6.15).
func prIn(lu *LogicalUnit, cmd *Command) Response {
	alloc := uint32(be.Uint16(cmd.CDB[7:]))
	lu.mu.Lock()
	defer lu.mu.Unlock()
	p := &lu.pr
	data := make([]byte, 8, 64)
	be.PutUint32(data, p.Generation)
	switch cmd.CDB[1] & 0x1f {
	case prInReadKeys:
		for _, r := range p.Regs {
			data = be.AppendUint64(data, r.Key)
		}
	case prInReadReservation:
		if p.Type != 0 {
			var key uint64
			if !allRegistrants(p.Type) {
				if i := p.find(p.Holder); i >= 0 {
					key = p.Regs[i].Key
				}
			}
			d := make([]byte, 16)
			be.PutUint64(d, key)
			d[13] = p.Type // scope 0: logical unit
			data = append(data, d...)
		}
	case prInReportCapabilites:
		data = []byte{0, 8,
			0x08 | 0x01, // SIP_C, PTPL_C (no CRH, ATP_C)
			0x80 | 0x01, // TMV, ALLOW_COMMANDS 0, PTPL_A set below
			0xea, 0x01, 0, 0}
		if !p.APTPL {
			data[3] &^= 0x01
		}
		if p.store == nil {
			data[2] &^= 0x01 // PTPL_C: nowhere to keep the state
		}
		return good(data, alloc)
	case prInReadFullStatus:
		for _, r := range p.Regs {
			d := make([]byte, 24)
			be.PutUint64(d, r.Key)
			if p.isHolder(r.Nexus) {
				d[12] = 0x01 // R_HOLDER
				d[13] = p.Type
			}
			be.PutUint16(d[18:], 1) // relative target port identifier
			tid := transportID(r.Nexus)
			be.PutUint32(d[20:], uint32(len(tid)))
			data = append(append(data, d...), tid...)
		}
	}
	be.PutUint32(data[4:], uint32(len(data)-8))
	return good(data, alloc)
}

// InitiatorPort is the iSCSI initiator port name of a nexus: the
// initiator name, ",i,0x" and the ISID in hex (RFC 7143 4.4.1).
func InitiatorPort(n Nexus) string {
	return fmt.Sprintf("%s,i,0x%x", n.InitiatorName, n.ISID[:])
}

// transportID is the iSCSI TransportID, format 01b (SPC-4 7.6.4.6).
func transportID(n Nexus) []byte {
	name := scsiName(InitiatorPort(n))
	b := make([]byte, 4, 4+len(name))
	b[0] = 0x40 | 0x05 // format 01b, protocol iSCSI
	be.PutUint16(b[2:], uint16(len(name)))
	return append(b, name...)
}

// prOut is PERSISTENT RESERVE OUT (SPC-4 6.16, 5.13).
func prOut(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	sa := cdb[1] & 0x1f
	scope, typ := cdb[2]>>4, cdb[2]&0x0f
	plen := be.Uint32(cdb[5:])
	if sa == prOutRegisterAndMove {
		return registerAndMove(lu, cmd, plen)
	}
	if plen != prOutParamListLength {
		return lu.fail(senseParamListLength)
	}
	if len(cmd.DataOut) < prOutParamListLength {
		return lu.fail(senseParamListLength)
	}
	p := cmd.DataOut
	key, saKey := be.Uint64(p), be.Uint64(p[8:])
	specIPT, allTgPt, aptpl := p[20]&0x08 != 0, p[20]&0x04 != 0, p[20]&0x01 != 0
	if specIPT {
		return lu.fail(badParam(20, 3))
	}
	if allTgPt {
		return lu.fail(badParam(20, 2))
	}
	if aptpl && lu.pr.store == nil && (sa == prOutRegister || sa == prOutRegisterIgnore) {
		return lu.fail(badParam(20, 0)) // nowhere to persist to
	}
	switch sa {
	case prOutReserve, prOutRelease, prOutPreempt, prOutPreemptAndAbort:
		if scope != 0 {
			return lu.fail(badCDB(2, 7))
		}
		switch typ {
		case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRO, prExclusiveAccessRO, prWriteExclusiveAR, prExclusiveAccessAR:
		default:
			if sa != prOutRelease {
				return lu.fail(badCDB(2, 3))
			}
		}
	}
	// Runs after the unlock below: the aborted tasks may need the LU to end.
	var waitAborted func()
	defer func() {
		if waitAborted != nil {
			waitAborted()
		}
	}()
	lu.mu.Lock()
	defer lu.mu.Unlock()
	pr := &lu.pr
	n := cmd.Nexus
	me := pr.find(n)
	var preempted []Nexus
	conflict := Response{Status: StatusReservationConflict}
	if sa != prOutRegisterIgnore && sa != prOutRegister && (me < 0 || pr.Regs[me].Key != key) {
		return conflict
	}
	var r Response
	switch sa {
	case prOutRegister, prOutRegisterIgnore:
		if sa == prOutRegister {
			if me < 0 && key != 0 || me >= 0 && pr.Regs[me].Key != key {
				return conflict
			}
		}
		switch {
		case me < 0 && saKey == 0:
			return Response{Status: StatusGood}
		case me < 0:
			pr.Regs = append(pr.Regs, Registration{Nexus: n, Key: saKey})
		case saKey == 0:
			lu.unregisterLocked(me)
		default:
			pr.Regs[me].Key = saKey
		}
		pr.APTPL = aptpl
		pr.Generation++
	case prOutReserve:
		if pr.Type != 0 {
			if !pr.isHolder(n) {
				return conflict
			}
			if pr.Type != typ {
				return conflict
			}
			return Response{Status: StatusGood}
		}
		pr.Type, pr.Holder = typ, n
	case prOutRelease:
		if pr.Type == 0 || !pr.isHolder(n) {
			return Response{Status: StatusGood}
		}
		if pr.Type != typ || scope != 0 {
			return lu.fail(senseInvalidRelease)
		}
		lu.releaseLocked(n)
	case prOutClear:
		for _, reg := range pr.Regs {
			if reg.Nexus != n {
				lu.unitAttentionLocked(reg.Nexus, senseReservationsPreempted)
			}
		}
		pr.Regs, pr.Type, pr.Holder = nil, 0, Nexus{}
		pr.Generation++
	case prOutPreempt, prOutPreemptAndAbort:
		var ok bool
		if preempted, r, ok = lu.preemptLocked(n, saKey, typ); !ok {
			return r
		}
		pr.Generation++
	default:
		return lu.fail(badCDB(1, 4))
	}
	if err := pr.save(); err != nil {
		lu.log.Error("saving persistent reservations", zap.String("pr", pr.name), zap.Error(err))
		return lu.fail(senseInternalFailure)
	}
	// Only a PREEMPT AND ABORT that succeeded aborts (SPC-4 5.13.11.2.6).
	if sa == prOutPreemptAndAbort && len(preempted) > 0 && lu.cfg.AbortTasks != nil {
		waitAborted = lu.cfg.AbortTasks(lu, preempted)
	}
	r.Status = StatusGood
	return r
}

// unregisterLocked removes registration i; a holder leaving releases the
// reservation (SPC-4 5.13.11.2.3), as does the last all-registrants holder.
func (lu *LogicalUnit) unregisterLocked(i int) {
	pr := &lu.pr
	n := pr.Regs[i].Nexus
	holder := pr.isHolder(n)
	pr.Regs = append(pr.Regs[:i], pr.Regs[i+1:]...)
	if !holder {
		return
	}
	if allRegistrants(pr.Type) {
		if len(pr.Regs) == 0 {
			pr.Type = 0
		}
		return
	}
	lu.releaseLocked(n)
}

// releaseLocked ends the reservation; registrants-only and all-registrants
// types tell the other registrants (SPC-4 5.13.11.2.2).
func (lu *LogicalUnit) releaseLocked(by Nexus) {
	pr := &lu.pr
	switch pr.Type {
	case prWriteExclusiveRO, prExclusiveAccessRO, prWriteExclusiveAR, prExclusiveAccessAR:
		for _, reg := range pr.Regs {
			if reg.Nexus != by {
				lu.unitAttentionLocked(reg.Nexus, senseReservationsReleased)
			}
		}
	}
	pr.Type, pr.Holder = 0, Nexus{}
}

// preemptLocked is PREEMPT (SPC-4 5.13.11.4): it returns the I_T nexuses
// whose registrations it removed, or ok false with the response to return
// when it fails.
func (lu *LogicalUnit) preemptLocked(n Nexus, saKey uint64, typ byte) (removed []Nexus, r Response, ok bool) {
	pr := &lu.pr
	removeKey := func(match func(Registration) bool) int {
		kept := pr.Regs[:0]
		before := len(removed)
		for _, reg := range pr.Regs {
			if reg.Nexus != n && match(reg) {
				lu.unitAttentionLocked(reg.Nexus, senseRegistrationsPreempted)
				removed = append(removed, reg.Nexus)
				continue
			}
			kept = append(kept, reg)
		}
		pr.Regs = kept
		return len(removed) - before
	}
	switch {
	case pr.Type != 0 && allRegistrants(pr.Type) && saKey == 0:
		removeKey(func(Registration) bool { return true })
		pr.Type, pr.Holder = typ, n
	case pr.Type != 0 && !allRegistrants(pr.Type) && pr.regKey(pr.Holder) == saKey:
		removeKey(func(r Registration) bool { return r.Key == saKey })
		pr.Type, pr.Holder = typ, n
	default:
		if saKey == 0 {
			return nil, lu.fail(badParam(8, 7)), false
		}
		if removeKey(func(r Registration) bool { return r.Key == saKey }) == 0 {
			return nil, Response{Status: StatusReservationConflict}, false
		}
		if pr.Type != 0 && allRegistrants(pr.Type) && len(pr.Regs) == 0 {
			pr.Type = 0
		}
	}
	return removed, Response{}, true
}

func (p *prState) regKey(n Nexus) uint64 {
	if i := p.find(n); i >= 0 {
		return p.Regs[i].Key
	}
	return 0
}

// registerAndMove is REGISTER AND MOVE (SPC-4 5.13.8): the holder hands
// its reservation to another initiator port on this target port, which
// it registers with the service action reservation key.
func registerAndMove(lu *LogicalUnit, cmd *Command, plen uint32) Response {
	if plen < prOutParamListLength || uint64(len(cmd.DataOut)) < uint64(plen) {
		return lu.fail(senseParamListLength)
	}
	p := cmd.DataOut[:plen]
	key, saKey := be.Uint64(p), be.Uint64(p[8:])
	unreg, aptpl := p[17]&0x02 != 0, p[17]&0x01 != 0
	tidLen := be.Uint32(p[20:])
	if uint64(prOutParamListLength)+uint64(tidLen) > uint64(plen) {
		return lu.fail(senseParamListLength)
	}
	if be.Uint16(p[18:]) != 1 { // RELATIVE TARGET PORT IDENTIFIER: the one port
		return lu.fail(badParam(18, 7))
	}
	dest, ok := parseTransportID(p[24:24+tidLen], cmd.Nexus)
	if !ok {
		return lu.fail(badParam(24, 7))
	}
	if aptpl && lu.pr.store == nil {
		return lu.fail(badParam(17, 0))
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	pr := &lu.pr
	me := pr.find(cmd.Nexus)
	if me < 0 || pr.Regs[me].Key != key || pr.Type == 0 || allRegistrants(pr.Type) || !pr.isHolder(cmd.Nexus) {
		return Response{Status: StatusReservationConflict}
	}
	if saKey == 0 {
		return lu.fail(badParam(8, 7))
	}
	if dest == cmd.Nexus {
		return lu.fail(badParam(24, 7))
	}
	if i := pr.find(dest); i >= 0 {
		pr.Regs[i].Key = saKey
	} else {
		pr.Regs = append(pr.Regs, Registration{Nexus: dest, Key: saKey})
	}
	pr.Holder = dest
	if unreg {
		pr.Regs = append(pr.Regs[:me], pr.Regs[me+1:]...)
	}
	pr.APTPL = aptpl
	pr.Generation++
	if err := pr.save(); err != nil {
		lu.log.Error("saving persistent reservations", zap.String("pr", pr.name), zap.Error(err))
		return lu.fail(senseInternalFailure)
	}
	return Response{Status: StatusGood}
}

// parseTransportID reads an iSCSI TransportID with an ISID (format 01b,
// SPC-4 7.6.4.6) into the nexus it names on from's target port.
func parseTransportID(b []byte, from Nexus) (Nexus, bool) {
	if len(b) < 4 || b[0] != 0x45 {
		return Nexus{}, false
	}
	n := int(be.Uint16(b[2:]))
	if n > len(b)-4 {
		return Nexus{}, false
	}
	name := string(b[4 : 4+n])
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	i := strings.LastIndex(name, ",i,0x")
	if i <= 0 {
		return Nexus{}, false
	}
	isid, err := hex.DecodeString(name[i+5:])
	if err != nil || len(isid) != 6 {
		return Nexus{}, false
	}
	dest := Nexus{InitiatorName: name[:i], TargetName: from.TargetName, TPGT: from.TPGT}
	copy(dest.ISID[:], isid)
	return dest, true
}
