package scsi

import (
	"bytes"
)

// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): a copy
// manager for block-to-block copies inside this logical unit, the offload
// behind VMware's XCOPY and sg_xcopy.

const (
	xcopyMaxTargets    = 2
	xcopyMaxSegments   = 8
	xcopyMaxListLength = 1024
	xcopyMaxSegment    = maxTransfer * blockSize // bytes per segment
	xcopyHeaderLen     = 16
	xcopyTargetLen     = 32
	xcopyB2BLen        = 28
	xcopyIdentTarget   = 0xe4 // identification descriptor CSCD
	xcopyBlockToBlock  = 0x02
	xcopyStatusKeep    = 64 // held copy results per nexus
)

// copyResult is what RECEIVE COPY RESULTS reports for a finished copy.
type copyResult struct {
	segments uint16
	blocks   uint64
}

// xcopyTarget is one parsed copy target: this LU, or unreachable.
type xcopyTarget struct {
	self bool
}

// thirdPartyCopyVPD is VPD page 8Fh: the Supported Commands descriptor.
func thirdPartyCopyVPD() []byte {
	cmds := []byte{
		0x83, 1, 0x00, // EXTENDED COPY(LID1)
		0x84, 2, 0x00, 0x03, // RECEIVE COPY RESULTS: COPY STATUS, OPERATING PARAMETERS
	}
	d := []byte{0x00, 0x01, 0, 0, byte(len(cmds))}
	d = append(d, cmds...)
	for len(d)%4 != 0 {
		d = append(d, 0)
	}
	be.PutUint16(d[2:], uint16(len(d)-4))
	return d
}

// extendedCopy is EXTENDED COPY(LID1). The whole parameter list is
// checked before a block moves.
func extendedCopy(lu *LogicalUnit, cmd *Command) Response {
	plen := be.Uint32(cmd.CDB[10:])
	if plen == 0 {
		return Response{Status: StatusGood}
	}
	if plen < xcopyHeaderLen || uint64(len(cmd.DataOut)) < uint64(plen) {
		return lu.fail(senseParamListLength)
	}
	p := cmd.DataOut[:plen]
	listID, usage := p[0], p[1]>>3&0x03
	tdl, sdl, inl := int(be.Uint16(p[2:])), int(be.Uint32(p[8:])), be.Uint32(p[12:])
	if usage == 0x03 && listID != 0 {
		return lu.fail(badParam(0, 7))
	}
	if inl != 0 { // no inline data
		return lu.fail(badParam(12, 7))
	}
	if tdl+sdl > xcopyMaxListLength || xcopyHeaderLen+tdl+sdl > int(plen) {
		return lu.fail(senseParamListLength)
	}
	if tdl%xcopyTargetLen != 0 {
		return lu.fail(badParam(2, 7))
	}
	if tdl/xcopyTargetLen > xcopyMaxTargets {
		return lu.fail(senseTooManyTargets)
	}
	var targets []xcopyTarget
	for off := xcopyHeaderLen; off < xcopyHeaderLen+tdl; off += xcopyTargetLen {
		t, s := lu.xcopyParseTarget(p[off:off+xcopyTargetLen], off)
		if s != nil {
			return lu.fail(*s)
		}
		targets = append(targets, t)
	}
	type segment struct{ src, dst, n uint64 }
	var segs []segment
	for off, end := xcopyHeaderLen+tdl, xcopyHeaderLen+tdl+sdl; off < end; {
		if off+4 > end {
			return lu.fail(senseParamListLength)
		}
		d := p[off:]
		size := 4 + int(be.Uint16(d[2:]))
		if off+size > end {
			return lu.fail(senseParamListLength)
		}
		if len(segs) == xcopyMaxSegments {
			return lu.fail(senseTooManySegments)
		}
		if d[0] != xcopyBlockToBlock {
			return lu.fail(senseUnsupportedSegment.fieldPointer(false, off, 7))
		}
		if size != xcopyB2BLen {
			return lu.fail(badParam(off+2, 7))
		}
		si, di := int(be.Uint16(d[4:])), int(be.Uint16(d[6:]))
		for _, i := range []int{si, di} {
			if i >= len(targets) || !targets[i].self {
				return lu.fail(senseCopyTargetUnreachable)
			}
		}
		n, src, dst := uint64(be.Uint16(d[10:])), be.Uint64(d[12:]), be.Uint64(d[20:])
		if n<<blockShift > xcopyMaxSegment {
			return lu.fail(badParam(off+10, 7))
		}
		// Out of range: COPY ABORTED (SPC-4 6.4.3), no more specific code.
		if lu.checkRange(src, n) != nil || lu.checkRange(dst, n) != nil {
			return lu.fail(senseCopyAborted)
		}
		segs = append(segs, segment{src, dst, n})
		off += size
	}
	var res copyResult
	for _, sg := range segs {
		if r := lu.copyBlocks(sg.src, sg.dst, sg.n); r.Status != StatusGood {
			return r
		}
		res.segments++
		res.blocks += sg.n
	}
	if usage == 0x00 { // results held for RECEIVE COPY RESULTS
		lu.mu.Lock()
		ns := lu.nexusLocked(cmd.Nexus)
		if ns.copies == nil {
			ns.copies = make(map[byte]copyResult)
		}
		if len(ns.copies) < xcopyStatusKeep {
			ns.copies[listID] = res
		}
		lu.mu.Unlock()
	}
	return lu.durable(false, 0)
}

// xcopyParseTarget checks an identification CSCD descriptor and resolves
// it: this LU when its designator is one of ours.
func (lu *LogicalUnit) xcopyParseTarget(d []byte, off int) (xcopyTarget, *sense) {
	if d[0] != xcopyIdentTarget {
		s := senseUnsupportedTarget.fieldPointer(false, off, 7)
		return xcopyTarget{}, &s
	}
	// LU ID TYPE (byte 1 bits 7:6) names the form of an LU IDENTIFIER
	// field, which this descriptor type does not have: ignored.
	if d[1]&0x1f != 0 { // peripheral device type: block devices only
		s := senseUnsupportedTarget.fieldPointer(false, off+1, 4)
		return xcopyTarget{}, &s
	}
	null := d[1]&0x20 != 0
	assoc, idType, n := d[5]>>4&0x03, d[5]&0x0f, int(d[7])
	if n > 20 {
		s := badParam(off+7, 7)
		return xcopyTarget{}, &s
	}
	id := d[8 : 8+n]
	self := !null && assoc == 0 && be.Uint32(d[28:])&0xffffff == blockSize &&
		(idType == 3 && bytes.Equal(id, lu.naa()) || idType == 1 && bytes.Equal(id, lu.t10VendorID()))
	return xcopyTarget{self: self}, nil
}

// copyBlocks copies n blocks from src to dst through a pooled buffer.
func (lu *LogicalUnit) copyBlocks(src, dst, n uint64) Response {
	const chunk = 2048 // blocks (1 MiB)
	buf, release := lu.bufs.get(int(min(n, chunk) << blockShift))
	defer release()
	for done := uint64(0); done < n; {
		k := min(n-done, chunk)
		b := buf[:k<<blockShift]
		if _, err := lu.store.ReadAt(b, int64((src+done)<<blockShift)); err != nil {
			return lu.ioError("copy read", err, src+done, senseReadError)
		}
		unlock := lu.ranges.lock(dst+done, k, false)
		_, err := lu.store.WriteAt(b, int64((dst+done)<<blockShift))
		unlock()
		if err != nil {
			return lu.ioError("copy write", err, dst+done, senseWriteError)
		}
		done += k
	}
	return Response{Status: StatusGood}
}

// receiveCopyResults is RECEIVE COPY RESULTS: COPY STATUS of a held list
// identifier (then forgotten, as it has been reported) and OPERATING
// PARAMETERS.
func receiveCopyResults(lu *LogicalUnit, cmd *Command) Response {
	alloc := be.Uint32(cmd.CDB[10:])
	if cmd.CDB[1]&0x1f == 0x03 {
		d := make([]byte, 44, 46)
		d[4] = 0x00 // SNLID: a list identifier is needed
		be.PutUint16(d[8:], xcopyMaxTargets)
		be.PutUint16(d[10:], xcopyMaxSegments)
		be.PutUint32(d[12:], xcopyMaxListLength)
		be.PutUint32(d[16:], xcopyMaxSegment)
		// maximum inline data, held data limit, stream transfer size: 0
		be.PutUint16(d[34:], 1) // total concurrent copies
		d[36] = 1               // maximum concurrent copies
		d[37] = blockShift      // data segment granularity (log2 bytes)
		d = append(d, xcopyBlockToBlock, xcopyIdentTarget)
		d[43] = 2 // implemented descriptor list length
		be.PutUint32(d, uint32(len(d)-4))
		return good(d, alloc)
	}
	listID := cmd.CDB[2]
	lu.mu.Lock()
	ns := lu.nexusLocked(cmd.Nexus)
	res, ok := ns.copies[listID]
	delete(ns.copies, listID)
	lu.mu.Unlock()
	if !ok {
		return lu.fail(badCDB(2, 7))
	}
	d := make([]byte, 12)
	be.PutUint32(d, 8)
	d[4] = 0x01 // completed without errors
	be.PutUint16(d[5:], res.segments)
	d[7] = 0xf1 // transfer count in KiB
	be.PutUint32(d[8:], uint32(min(res.blocks>>1, 0xffffffff)))
	return good(d, alloc)
}
