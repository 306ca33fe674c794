package scsi

import "math/bits"

// class says how a command fares under a reservation held by another
// nexus (SPC-4 table 62, SBC-3 table 13).
type class uint8

const (
	// classAllowed: allowed under every reservation type.
	classAllowed class = iota
	// classRead: allowed to non-holders of Write Exclusive reservations.
	classRead
	// classWrite: conflicts with every reservation the nexus may not use.
	classWrite
	// classReserve6: SPC-2 RESERVE/RELEASE; conflicts with any persistent reservation.
	classReserve6
)

type handler func(lu *LogicalUnit, cmd *Command) Response

// opcode is one row of the command table; the table serves both dispatch
// and REPORT SUPPORTED OPERATION CODES.
type opcode struct {
	op    byte
	sa    uint16
	hasSA bool
	name  string
	fn    handler
	// usage is the CDB usage data (SPC-4 6.35.3): bits the command uses.
	// Its length is the CDB length; bits outside it are reserved and rejected.
	usage []byte
	class class
	// writes marks commands that change the medium (write protection).
	writes bool
	// passUA: executed despite a pending unit attention (SAM-5 5.14).
	passUA bool
	// spc2Allowed: allowed while another nexus holds an SPC-2 reservation.
	spc2Allowed bool
}

const ctl = 0x07 // control byte: NACA, obsolete Flag and Link are looked at

// table is the command table of a logical unit.
type table []opcode

var commands = table{
	{op: 0x00, name: "TEST UNIT READY", fn: testUnitReady, usage: []byte{0x00, 0, 0, 0, 0, ctl}, class: classAllowed},
	{op: 0x03, name: "REQUEST SENSE", fn: requestSense, usage: []byte{0x03, 0x01, 0, 0, 0xff, ctl}, class: classAllowed, passUA: true, spc2Allowed: true},
	{op: 0x08, name: "READ(6)", fn: readBlocks, usage: []byte{0x08, 0x1f, 0xff, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x0a, name: "WRITE(6)", fn: writeBlocks, usage: []byte{0x0a, 0x1f, 0xff, 0xff, 0xff, ctl}, class: classWrite, writes: true},
	{op: 0x12, name: "INQUIRY", fn: inquiry, usage: []byte{0x12, 0x01, 0xff, 0xff, 0xff, ctl}, class: classAllowed, passUA: true, spc2Allowed: true},
	{op: 0x15, name: "MODE SELECT(6)", fn: modeSelect, usage: []byte{0x15, 0x11, 0, 0, 0xff, ctl}, class: classWrite},
	{op: 0x16, name: "RESERVE(6)", fn: reserve6, usage: []byte{0x16, 0, 0, 0, 0, ctl}, class: classReserve6},
	{op: 0x17, name: "RELEASE(6)", fn: release6, usage: []byte{0x17, 0, 0, 0, 0, ctl}, class: classReserve6, spc2Allowed: true},
	{op: 0x1a, name: "MODE SENSE(6)", fn: modeSense, usage: []byte{0x1a, 0x08, 0xff, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x1b, name: "START STOP UNIT", fn: startStopUnit, usage: []byte{0x1b, 0x01, 0, 0x0f, 0xf7, ctl}, class: classWrite},
	{op: 0x1e, name: "PREVENT ALLOW MEDIUM REMOVAL", fn: preventAllow, usage: []byte{0x1e, 0, 0, 0, 0x03, ctl}, class: classWrite},
	{op: 0x25, name: "READ CAPACITY(10)", fn: readCapacity10, usage: []byte{0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, ctl}, class: classAllowed},
	{op: 0x28, name: "READ(10)", fn: readBlocks, usage: []byte{0x28, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x2a, name: "WRITE(10)", fn: writeBlocks, usage: []byte{0x2a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classWrite, writes: true},
	{op: 0x2e, name: "WRITE AND VERIFY(10)", fn: writeBlocks, usage: []byte{0x2e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classWrite, writes: true},
	{op: 0x2f, name: "VERIFY(10)", fn: verify, usage: []byte{0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x34, name: "PRE-FETCH(10)", fn: preFetch, usage: []byte{0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x35, name: "SYNCHRONIZE CACHE(10)", fn: synchronizeCache, usage: []byte{0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classWrite},
	{op: 0x37, name: "READ DEFECT DATA(10)", fn: readDefectData, usage: []byte{0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x41, name: "WRITE SAME(10)", fn: writeSame, usage: []byte{0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, ctl}, class: classWrite, writes: true},
	{op: 0x42, name: "UNMAP", fn: unmap, usage: []byte{0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, ctl}, class: classWrite, writes: true},
	{op: 0x55, name: "MODE SELECT(10)", fn: modeSelect, usage: []byte{0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, ctl}, class: classWrite},
	{op: 0x5a, name: "MODE SENSE(10)", fn: modeSense, usage: []byte{0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, ctl}, class: classRead},
	{op: 0x5e, sa: 0x00, hasSA: true, name: "PERSISTENT RESERVE IN/READ KEYS", fn: prIn, usage: prInUsage, class: classAllowed},
	{op: 0x5e, sa: 0x01, hasSA: true, name: "PERSISTENT RESERVE IN/READ RESERVATION", fn: prIn, usage: prInUsage, class: classAllowed},
	{op: 0x5e, sa: 0x02, hasSA: true, name: "PERSISTENT RESERVE IN/REPORT CAPABILITIES", fn: prIn, usage: prInUsage, class: classAllowed},
	{op: 0x5e, sa: 0x03, hasSA: true, name: "PERSISTENT RESERVE IN/READ FULL STATUS", fn: prIn, usage: prInUsage, class: classAllowed},
	{op: 0x5f, sa: 0x00, hasSA: true, name: "PERSISTENT RESERVE OUT/REGISTER", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x01, hasSA: true, name: "PERSISTENT RESERVE OUT/RESERVE", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x02, hasSA: true, name: "PERSISTENT RESERVE OUT/RELEASE", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x03, hasSA: true, name: "PERSISTENT RESERVE OUT/CLEAR", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x04, hasSA: true, name: "PERSISTENT RESERVE OUT/PREEMPT", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x05, hasSA: true, name: "PERSISTENT RESERVE OUT/PREEMPT AND ABORT", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x06, hasSA: true, name: "PERSISTENT RESERVE OUT/REGISTER AND IGNORE EXISTING KEY", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x5f, sa: 0x07, hasSA: true, name: "PERSISTENT RESERVE OUT/REGISTER AND MOVE", fn: prOut, usage: prOutUsage, class: classAllowed},
	{op: 0x83, sa: 0x00, hasSA: true, name: "EXTENDED COPY(LID1)", fn: extendedCopy, usage: []byte{0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classWrite, writes: true},
	{op: 0x84, sa: 0x00, hasSA: true, name: "RECEIVE COPY RESULTS/COPY STATUS", fn: receiveCopyResults, usage: rcrUsage, class: classRead},
	{op: 0x84, sa: 0x03, hasSA: true, name: "RECEIVE COPY RESULTS/OPERATING PARAMETERS", fn: receiveCopyResults, usage: rcrUsage, class: classRead},
	{op: 0x88, name: "READ(16)", fn: readBlocks, usage: rw16Usage(0x88, 0xfa), class: classRead},
	{op: 0x89, name: "COMPARE AND WRITE", fn: compareAndWrite, usage: []byte{0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, ctl}, class: classWrite, writes: true},
	{op: 0x8a, name: "WRITE(16)", fn: writeBlocks, usage: rw16Usage(0x8a, 0xfa), class: classWrite, writes: true},
	{op: 0x8b, name: "ORWRITE(16)", fn: orWrite, usage: rw16Usage(0x8b, 0xfa), class: classWrite, writes: true},
	{op: 0x8e, name: "WRITE AND VERIFY(16)", fn: writeBlocks, usage: rw16Usage(0x8e, 0xf2), class: classWrite, writes: true},
	{op: 0x8f, name: "VERIFY(16)", fn: verify, usage: rw16Usage(0x8f, 0xf6), class: classRead},
	{op: 0x90, name: "PRE-FETCH(16)", fn: preFetch, usage: rw16Usage(0x90, 0x02), class: classRead},
	{op: 0x91, name: "SYNCHRONIZE CACHE(16)", fn: synchronizeCache, usage: rw16Usage(0x91, 0x06), class: classWrite},
	{op: 0x93, name: "WRITE SAME(16)", fn: writeSame, usage: rw16Usage(0x93, 0xf9), class: classWrite, writes: true},
	{op: 0x9c, name: "WRITE ATOMIC(16)", fn: writeBlocks, usage: []byte{0x9c, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, ctl}, class: classWrite, writes: true},
	{op: 0x9e, sa: 0x10, hasSA: true, name: "READ CAPACITY(16)", fn: readCapacity16, usage: []byte{0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classAllowed},
	{op: 0x9e, sa: 0x12, hasSA: true, name: "GET LBA STATUS", fn: getLBAStatus, usage: []byte{0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classRead},
	{op: 0xa0, name: "REPORT LUNS", fn: reportLUNsOfLU, usage: []byte{0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classAllowed, passUA: true, spc2Allowed: true},
	{op: 0xa3, sa: 0x0c, hasSA: true, name: "REPORT SUPPORTED OPERATION CODES", fn: reportSupportedOpcodes, usage: []byte{0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classAllowed, spc2Allowed: true},
	{op: 0xa3, sa: 0x0d, hasSA: true, name: "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", fn: reportSupportedTMFs, usage: []byte{0xa3, 0x1f, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classAllowed, spc2Allowed: true},
	{op: 0xa8, name: "READ(12)", fn: readBlocks, usage: rw12Usage(0xa8, 0xfa), class: classRead},
	{op: 0xaa, name: "WRITE(12)", fn: writeBlocks, usage: rw12Usage(0xaa, 0xfa), class: classWrite, writes: true},
	{op: 0xae, name: "WRITE AND VERIFY(12)", fn: writeBlocks, usage: rw12Usage(0xae, 0xf2), class: classWrite, writes: true},
	{op: 0xaf, name: "VERIFY(12)", fn: verify, usage: rw12Usage(0xaf, 0xf6), class: classRead},
	{op: 0xb7, name: "READ DEFECT DATA(12)", fn: readDefectData, usage: []byte{0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl}, class: classRead},
}

var (
	prInUsage  = []byte{0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl}
	prOutUsage = []byte{0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl}
	rcrUsage   = []byte{0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl}
)

func rw16Usage(op, flags byte) []byte {
	return []byte{op, flags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, ctl}
}

func rw12Usage(op, flags byte) []byte {
	return []byte{op, flags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, ctl}
}

// serviceActions lists the opcodes whose byte 1 bits 4:0 select a service action.
func hasServiceActions(op byte) bool {
	switch op {
	case 0x5e, 0x5f, 0x83, 0x84, 0x9e, 0xa3:
		return true
	}
	return false
}

// lookup finds cdb's row and checks its length and reserved bits.
func (t table) lookup(cdb []byte) (*opcode, *sense) {
	if len(cdb) == 0 {
		return nil, &senseInvalidOpcode
	}
	op := t.find(cdb[0], cdb)
	if op == nil {
		if hasServiceActions(cdb[0]) && len(cdb) > 1 {
			s := badCDB(1, 4)
			return nil, &s
		}
		return nil, &senseInvalidOpcode
	}
	if len(cdb) < len(op.usage) {
		s := badCDB(0, -1)
		return nil, &s
	}
	for i := 1; i < len(op.usage); i++ {
		if extra := cdb[i] &^ op.usage[i]; extra != 0 {
			s := badCDB(i, 7-bits.LeadingZeros8(extra))
			return nil, &s
		}
	}
	if cdb[len(op.usage)-1]&0x04 != 0 { // NACA: no ACA support (SAM-5 5.9.1)
		s := badCDB(len(op.usage)-1, 2)
		return nil, &s
	}
	return op, nil
}

func (t table) find(code byte, cdb []byte) *opcode {
	sa := -1
	if hasServiceActions(code) {
		if len(cdb) < 2 {
			return nil
		}
		sa = int(cdb[1] & 0x1f)
	}
	for i := range t {
		c := &t[i]
		if c.op == code && (!c.hasSA || int(c.sa) == sa) {
			return c
		}
	}
	return nil
}

// reportSupportedOpcodes is REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
func reportSupportedOpcodes(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	rctd := cdb[2]&0x80 != 0
	option := cdb[2] & 0x07
	reqOp := cdb[3]
	reqSA := be.Uint16(cdb[4:])
	alloc := be.Uint32(cdb[6:])
	timeouts := func(b []byte) []byte {
		// Command timeouts descriptor: no nominal or recommended timeout.
		return append(b, 0x00, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	switch option {
	case 0:
		data := make([]byte, 4, 4+len(lu.commands)*20)
		for i := range lu.commands {
			c := &lu.commands[i]
			d := []byte{c.op, 0, byte(c.sa >> 8), byte(c.sa), 0, 0, 0, byte(len(c.usage))}
			if c.hasSA {
				d[5] |= 0x01 // SERVACTV
			}
			if rctd {
				d[5] |= 0x02 // CTDP
				d = timeouts(d)
			}
			data = append(data, d...)
		}
		be.PutUint32(data, uint32(len(data)-4))
		return good(data, alloc)
	case 1, 2, 3:
		var c *opcode
		switch {
		case option == 1 && hasServiceActions(reqOp):
			return lu.fail(badCDB(2, 2))
		case option == 2 && !hasServiceActions(reqOp):
			return lu.fail(badCDB(2, 2))
		case hasServiceActions(reqOp):
			if reqSA <= 0x1f {
				c = lu.commands.find(reqOp, []byte{reqOp, byte(reqSA)})
			}
		default:
			c = lu.commands.find(reqOp, []byte{reqOp})
		}
		data := []byte{0, 0x01, 0, 0} // SUPPORT 001b: not supported
		if c != nil {
			data[1] = 0x03 // supported as the standard says
			be.PutUint16(data[2:], uint16(len(c.usage)))
			data = append(data, c.usage...)
			if rctd {
				data[1] |= 0x80 // CTDP
				data = timeouts(data)
			}
		}
		return good(data, alloc)
	}
	return lu.fail(badCDB(2, 2))
}

// reportSupportedTMFs is REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.36).
func reportSupportedTMFs(lu *LogicalUnit, cmd *Command) Response {
	alloc := be.Uint32(cmd.CDB[6:])
	// ABORT TASK, ABORT TASK SET, LOGICAL UNIT RESET, TARGET RESET (warm).
	data := []byte{0x80 | 0x40 | 0x08 | 0x02, 0, 0, 0}
	if cmd.CDB[2]&0x80 != 0 { // REPD: extended format
		data = append(data, make([]byte, 12)...)
		data[3] = 0x0c
	}
	return good(data, alloc)
}
