package scsi

import (
	"fmt"

	"go.uber.org/zap"
)

const (
	vendorID   = "NETSAN"
	productID  = "netsan disk"
	revision   = "0001"
	t10Version = 0x06 // SPC-4
)

func testUnitReady(lu *LogicalUnit, cmd *Command) Response {
	return Response{Status: StatusGood}
}

// inquiry is INQUIRY (SPC-4 6.6) with the VPD pages of SPC-4 7.8 and SBC-3 6.5.
func inquiry(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	evpd := cdb[1]&0x01 != 0
	page := cdb[2]
	alloc := uint32(be.Uint16(cdb[3:]))
	if !evpd {
		if page != 0 {
			return lu.fail(badCDB(2, 7))
		}
		return good(standardInquiry(0x00), alloc)
	}
	var body []byte
	switch page {
	case 0x00:
		body = []byte{0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2}
	case 0x80:
		body = []byte(lu.cfg.SerialNumber)
	case 0x83:
		body = lu.deviceIdentification(cmd.Nexus)
	case 0x8f:
		body = thirdPartyCopyVPD()
	case 0xb0:
		body = lu.blockLimits()
	case 0xb1:
		body = make([]byte, 0x3c)
		be.PutUint16(body[0:], 1) // MEDIUM ROTATION RATE: non-rotating
	case 0xb2:
		body = make([]byte, 4)
		if lu.mapper != nil {
			// LBPU, LBPWS, LBPWS10, LBPRZ; provisioning type thin.
			body[1] = 0x80 | 0x40 | 0x20 | 0x04
			body[2] = 0x02
		}
	default:
		return lu.fail(badCDB(2, 7))
	}
	data := make([]byte, 4, 4+len(body))
	data[1] = page
	be.PutUint16(data[2:], uint16(len(body)))
	return good(append(data, body...), alloc)
}

// standardInquiry is the standard INQUIRY data with peripheral byte b0.
func standardInquiry(b0 byte) []byte {
	d := make([]byte, 96)
	d[0] = b0
	d[2] = t10Version
	d[3] = 0x10 | 0x02 // HISUP, response data format 2
	d[4] = byte(len(d) - 5)
	d[5] = 0x08 // 3PC: EXTENDED COPY
	d[7] = 0x02 // CMDQUE
	copy(d[8:16], fmt.Sprintf("%-8s", vendorID))
	copy(d[16:32], fmt.Sprintf("%-16s", productID))
	copy(d[32:36], fmt.Sprintf("%-4s", revision))
	// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
	for i, v := range []uint16{0x00a0, 0x0960, 0x0460, 0x04c0} {
		be.PutUint16(d[58+2*i:], v)
	}
	return d
}

// deviceIdentification is VPD page 83h: the LU's NAA and T10 vendor ID
// designators, and the target port and device the command came through.
func (lu *LogicalUnit) deviceIdentification(n Nexus) []byte {
	var b []byte
	add := func(codeSet, assocType byte, piv bool, id []byte) {
		h := []byte{codeSet, assocType, 0, byte(len(id))}
		if piv {
			h[0] |= 0x50 // protocol identifier iSCSI
			h[1] |= 0x80 // PIV
		}
		b = append(append(b, h...), id...)
	}
	add(0x01, 0x03, false, lu.naa())
	add(0x02, 0x01, false, lu.t10VendorID())
	if n.TargetName != "" {
		rtp := []byte{0, 0, 0, 1}
		add(0x01, 0x10|0x04, true, rtp) // relative target port 1
		port := scsiName(fmt.Sprintf("%s,t,0x%04x", n.TargetName, n.TPGT))
		add(0x03, 0x10|0x08, true, port) // target port name
		add(0x03, 0x20|0x08, true, scsiName(n.TargetName))
	}
	return b
}

// naa is the LU's NAA designator: locally assigned (3h), 60 bits of DeviceID.
func (lu *LogicalUnit) naa() []byte {
	naa := make([]byte, 8)
	be.PutUint64(naa, 3<<60|lu.cfg.DeviceID&(1<<60-1))
	return naa
}

// t10VendorID is the LU's T10 vendor ID designator.
func (lu *LogicalUnit) t10VendorID() []byte {
	return []byte(fmt.Sprintf("%-8s%s", vendorID, lu.cfg.SerialNumber))
}

// scsiName is a SCSI name string: null-terminated, padded to a multiple of 4.
func scsiName(s string) []byte {
	n := (len(s) + 4) &^ 3
	b := make([]byte, n)
	copy(b, s)
	return b
}

// blockLimits is VPD page B0h (SBC-3 6.5.3).
func (lu *LogicalUnit) blockLimits() []byte {
	b := make([]byte, 0x3c)
	b[1] = maxCAWBlocks
	be.PutUint16(b[2:], 8) // optimal transfer length granularity: 4 KiB
	be.PutUint32(b[4:], maxTransfer)
	be.PutUint32(b[8:], optTransfer)
	be.PutUint32(b[12:], maxTransfer) // maximum prefetch length
	if lu.mapper != nil {
		be.PutUint32(b[16:], maxUnmapBlocks)
		be.PutUint32(b[20:], maxUnmapDescs)
		be.PutUint32(b[24:], 8)          // optimal unmap granularity: 4 KiB pages
		be.PutUint32(b[28:], 0x80000000) // UGAVALID, alignment 0
	}
	be.PutUint64(b[32:], maxWriteSame)
	be.PutUint32(b[40:], maxAtomic) // maximum atomic transfer length
	be.PutUint32(b[44:], 1)         // atomic alignment
	be.PutUint32(b[48:], 1)         // atomic transfer length granularity
	return b
}

// requestSense is REQUEST SENSE (SPC-4 6.39): a pending unit attention, or
// NO SENSE; with DESC set, descriptor format.
func requestSense(lu *LogicalUnit, cmd *Command) Response {
	desc := cmd.CDB[1]&0x01 != 0
	alloc := uint32(cmd.CDB[4])
	s := senseNoSense
	lu.mu.Lock()
	if ns := lu.nexusLocked(cmd.Nexus); len(ns.ua) > 0 {
		s = ns.ua[0]
		ns.ua = ns.ua[1:]
	}
	lu.mu.Unlock()
	return good(s.encode(desc), alloc)
}

// ReportLUNs answers REPORT LUNS (SPC-4 6.33) with the LUNs a nexus sees.
func ReportLUNs(cmd *Command, luns []uint64) Response {
	cdb := cmd.CDB
	if len(cdb) < 12 {
		return Response{Status: StatusCheckCondition, Sense: badCDB(0, -1).encode(false)}
	}
	alloc := be.Uint32(cdb[6:])
	if alloc < 16 {
		return Response{Status: StatusCheckCondition, Sense: badCDB(6, -1).encode(false)}
	}
	switch cdb[2] {
	case 0x00, 0x02:
	case 0x01: // well-known LUNs only: there are none
		luns = nil
	default:
		return Response{Status: StatusCheckCondition, Sense: badCDB(2, 7).encode(false)}
	}
	data := make([]byte, 8, 8+8*len(luns))
	for _, l := range luns {
		data = append(data, EncodeLUN(l)...)
	}
	be.PutUint32(data, uint32(len(data)-8))
	return good(data, alloc)
}

// EncodeLUN is the 8-byte single-level LUN of SAM-5 4.7: peripheral device
// addressing below 256, flat space addressing up to 16383.
func EncodeLUN(l uint64) []byte {
	b := make([]byte, 8)
	if l < 256 {
		b[1] = byte(l)
	} else {
		b[0] = 0x40 | byte(l>>8)&0x3f
		b[1] = byte(l)
	}
	return b
}

// DecodeLUN is the inverse of EncodeLUN for the single-level addressing
// methods; ok is false for anything else.
func DecodeLUN(b [8]byte) (l uint64, ok bool) {
	for _, x := range b[2:] {
		if x != 0 {
			return 0, false
		}
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0]&0x3f)<<8 | uint64(b[1]), b[0] == 0
	case 1:
		return uint64(b[0]&0x3f)<<8 | uint64(b[1]), true
	}
	return 0, false
}

// reportLUNsOfLU answers REPORT LUNS sent to a LU when the session did not
// answer it itself: only LUN 0 is known here.
func reportLUNsOfLU(lu *LogicalUnit, cmd *Command) Response {
	return ReportLUNs(cmd, []uint64{0})
}

// NoSuchLUN answers a command addressed to a LUN the nexus has no access to
// (SPC-4 6.6.2, SAM-5 5.8.4).
func NoSuchLUN(cmd *Command) Response {
	if len(cmd.CDB) == 0 {
		return Response{Status: StatusCheckCondition, Sense: senseInvalidOpcode.encode(false)}
	}
	switch cmd.CDB[0] {
	case 0x12:
		if len(cmd.CDB) < 6 {
			break
		}
		alloc := uint32(be.Uint16(cmd.CDB[3:]))
		if cmd.CDB[1]&0x01 != 0 {
			// VPD: the supported pages page only, qualifier 011b.
			if cmd.CDB[2] != 0 {
				break
			}
			return good([]byte{0x7f, 0, 0, 1, 0}, alloc)
		}
		return good(standardInquiry(0x7f), alloc)
	case 0x03:
		if len(cmd.CDB) < 6 {
			break
		}
		return good(senseLUNotSupported.encode(cmd.CDB[1]&0x01 != 0), uint32(cmd.CDB[4]))
	}
	return Response{Status: StatusCheckCondition, Sense: senseLUNotSupported.encode(false)}
}

// reserve6 is RESERVE(6) (SPC-2 7.21): the whole LU for this nexus.
func reserve6(lu *LogicalUnit, cmd *Command) Response {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.reserved != nil && *lu.reserved != cmd.Nexus {
		return Response{Status: StatusReservationConflict}
	}
	n := cmd.Nexus
	lu.reserved = &n
	return Response{Status: StatusGood}
}

// release6 is RELEASE(6): ends this nexus's reservation; anything else is
// a no-op that succeeds (SPC-2 7.17).
func release6(lu *LogicalUnit, cmd *Command) Response {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.reserved != nil && *lu.reserved == cmd.Nexus {
		lu.reserved = nil
	}
	return Response{Status: StatusGood}
}

// startStopUnit is START STOP UNIT (SBC-3 5.25). The medium is not
// removable and always ready; an eject is refused only while prevented.
func startStopUnit(lu *LogicalUnit, cmd *Command) Response {
	b4 := cmd.CDB[4]
	loej, start := b4&0x02 != 0, b4&0x01 != 0
	if b4>>4 == 0 && loej && !start {
		lu.mu.Lock()
		prevented := false
		for _, ns := range lu.nexuses {
			prevented = prevented || ns.prevent
		}
		lu.mu.Unlock()
		if prevented {
			return lu.fail(senseRemovalPrevented)
		}
	}
	if b4&0x04 == 0 && !start { // stopping without NO_FLUSH: flush the cache
		if err := lu.store.Sync(); err != nil {
			lu.log.Error("sync", zap.Error(err))
			return lu.fail(senseWriteError)
		}
	}
	return Response{Status: StatusGood}
}

// preventAllow is PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.11).
func preventAllow(lu *LogicalUnit, cmd *Command) Response {
	lu.mu.Lock()
	lu.nexusLocked(cmd.Nexus).prevent = cmd.CDB[4]&0x01 != 0
	lu.mu.Unlock()
	return Response{Status: StatusGood}
}
