package scsi

import (
	"bytes"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/backstore"
)

// rwArgs decodes the LBA and transfer length of the block commands and
// the CDB byte offset of the length field.
func rwArgs(cdb []byte) (lba, n uint64, nOff int) {
	switch cdb[0] {
	case 0x08, 0x0a: // READ(6), WRITE(6): a length of 0 means 256
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(be.Uint16(cdb[2:]))
		if n = uint64(cdb[4]); n == 0 {
			n = 256
		}
		return lba, n, 4
	case 0x89: // COMPARE AND WRITE
		return be.Uint64(cdb[2:]), uint64(cdb[13]), 13
	case 0x9c: // WRITE ATOMIC(16)
		return be.Uint64(cdb[2:]), uint64(be.Uint16(cdb[12:])), 12
	}
	switch cdb[0] >> 5 {
	case 1, 2: // 10-byte
		return uint64(be.Uint32(cdb[2:])), uint64(be.Uint16(cdb[7:])), 7
	case 5: // 12-byte
		return uint64(be.Uint32(cdb[2:])), uint64(be.Uint32(cdb[6:])), 6
	default: // 16-byte
		return be.Uint64(cdb[2:]), uint64(be.Uint32(cdb[10:])), 10
	}
}

// checkRange is the LBA OUT OF RANGE check of SBC-3 4.5.
func (lu *LogicalUnit) checkRange(lba, n uint64) *sense {
	if n > lu.nblocks || lba > lu.nblocks-n {
		return &senseLBAOutOfRange
	}
	return nil
}

// blockArgs decodes and validates a block command: no protection
// information (RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT must be zero), the
// range inside the medium, at most limit blocks.
func (lu *LogicalUnit) blockArgs(cdb []byte, limit uint64) (lba, n uint64, s *sense) {
	lba, n, nOff := rwArgs(cdb)
	if cdb[0] >= 0x20 && cdb[1]&0xe0 != 0 {
		e := badCDB(1, 7)
		return 0, 0, &e
	}
	if s := lu.checkRange(lba, n); s != nil {
		return 0, 0, s
	}
	if n > limit {
		e := badCDB(nOff, 7)
		return 0, 0, &e
	}
	return lba, n, nil
}

func (lu *LogicalUnit) ioError(op string, err error, lba uint64, s sense) Response {
	lu.log.Error("backing store", zap.String("op", op), zap.Uint64("lba", lba), zap.Error(err))
	return lu.fail(s.withInfo(lba))
}

// readBlocks is READ(6/10/12/16) (SBC-3 5.8-5.11). DPO and FUA need nothing:
// reads come from the page cache, which is coherent with the medium.
func readBlocks(lu *LogicalUnit, cmd *Command) Response {
	lba, n, s := lu.blockArgs(cmd.CDB, maxTransfer)
	if s != nil {
		return lu.fail(*s)
	}
	if n == 0 {
		return Response{Status: StatusGood}
	}
	buf, release := lu.bufs.get(int(n << blockShift))
	if _, err := lu.store.ReadAt(buf, int64(lba<<blockShift)); err != nil {
		release()
		return lu.ioError("read", err, lba, senseReadError)
	}
	return Response{Status: StatusGood, Data: buf, release: release}
}

// writeBlocks is WRITE(6/10/12/16), WRITE AND VERIFY(10/12/16) and WRITE
// ATOMIC(16). Data the initiator did not send (an expected transfer length
// below the CDB's) leaves the blocks it would have covered untouched.
func writeBlocks(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	atomic := cdb[0] == 0x9c
	limit := uint64(maxTransfer)
	if atomic {
		if be.Uint16(cdb[10:]) != 0 { // ATOMIC BOUNDARY: boundaries not supported
			return lu.fail(badCDB(10, 7))
		}
		limit = maxAtomic
	}
	lba, n, s := lu.blockArgs(cdb, limit)
	if s != nil {
		return lu.fail(*s)
	}
	n = min(n, uint64(len(cmd.DataOut))>>blockShift)
	if n == 0 {
		return Response{Status: StatusGood}
	}
	unlock := lu.ranges.lock(lba, n, atomic)
	_, err := lu.store.WriteAt(cmd.DataOut[:n<<blockShift], int64(lba<<blockShift))
	unlock()
	if err != nil {
		return lu.ioError("write", err, lba, senseWriteError)
	}
	verify := cdb[0] == 0x2e || cdb[0] == 0xae || cdb[0] == 0x8e
	fua := cdb[0] != 0x0a && cdb[1]&0x08 != 0
	return lu.durable(fua || verify, lba)
}

// durable makes completed writes stable when the command asks (FUA, WRITE
// AND VERIFY) or the write cache is disabled (WCE=0).
func (lu *LogicalUnit) durable(force bool, lba uint64) Response {
	if force || !lu.wce.Load() {
		if err := lu.store.Sync(); err != nil {
			return lu.ioError("sync", err, lba, senseWriteError)
		}
	}
	return Response{Status: StatusGood}
}

// verify is VERIFY(10/12/16) (SBC-3 5.33): BYTCHK 00b checks the range
// only, 01b compares the Data-Out buffer, 11b compares one block against
// every block of the range.
func verify(lu *LogicalUnit, cmd *Command) Response {
	lba, n, s := lu.blockArgs(cmd.CDB, maxTransfer)
	if s != nil {
		return lu.fail(*s)
	}
	bytchk := cmd.CDB[1] >> 1 & 0x03
	if bytchk == 2 {
		return lu.fail(badCDB(1, 2))
	}
	if bytchk == 0 || n == 0 {
		return Response{Status: StatusGood}
	}
	want := cmd.DataOut
	need := n << blockShift
	if bytchk == 3 {
		need = blockSize
	}
	if uint64(len(want)) < need {
		return lu.fail(badCDB(1, 2))
	}
	buf, release := lu.bufs.get(int(n << blockShift))
	defer release()
	if _, err := lu.store.ReadAt(buf, int64(lba<<blockShift)); err != nil {
		return lu.ioError("verify", err, lba, senseReadError)
	}
	for off := uint64(0); off < n<<blockShift; off += blockSize {
		exp := want[off : off+blockSize]
		if bytchk == 3 {
			exp = want[:blockSize]
		}
		if i := mismatch(buf[off:off+blockSize], exp); i >= 0 {
			return lu.fail(senseMiscompare.withInfo(off + uint64(i)))
		}
	}
	return Response{Status: StatusGood}
}

// mismatch is the offset of the first differing byte, or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// compareAndWrite is COMPARE AND WRITE (SBC-3 5.2): atomic against every
// other command writing the range.
func compareAndWrite(lu *LogicalUnit, cmd *Command) Response {
	lba, n, s := lu.blockArgs(cmd.CDB, maxCAWBlocks)
	if s != nil {
		return lu.fail(*s)
	}
	size := n << blockShift
	// Checked first: a 256-block request wraps the one-byte field to 0.
	if uint64(len(cmd.DataOut)) != 2*size {
		return lu.fail(badCDB(13, 7))
	}
	if n == 0 {
		return Response{Status: StatusGood}
	}
	return lu.readModifyWrite(cmd, "compare and write", lba, n, func(blocks []byte) *sense {
		if i := mismatch(blocks, cmd.DataOut[:size]); i >= 0 {
			s := senseMiscompare.withInfo(uint64(i))
			return &s
		}
		copy(blocks, cmd.DataOut[size:])
		return nil
	})
}

// orWrite is ORWRITE(16) (SBC-3 5.7): medium |= data, atomically.
func orWrite(lu *LogicalUnit, cmd *Command) Response {
	lba, n, s := lu.blockArgs(cmd.CDB, maxTransfer)
	if s != nil {
		return lu.fail(*s)
	}
	n = min(n, uint64(len(cmd.DataOut))>>blockShift)
	if n == 0 {
		return Response{Status: StatusGood}
	}
	return lu.readModifyWrite(cmd, "orwrite", lba, n, func(blocks []byte) *sense {
		for i, b := range cmd.DataOut[:len(blocks)] {
			blocks[i] |= b
		}
		return nil
	})
}

// readModifyWrite reads n blocks at lba under the range's write lock, so
// that no other command writes them meanwhile, lets modify change them
// in place (or refuse, with the sense it returns), writes them back and
// honours FUA: COMPARE AND WRITE and ORWRITE.
func (lu *LogicalUnit) readModifyWrite(cmd *Command, op string, lba, n uint64, modify func(blocks []byte) *sense) Response {
	unlock := lu.ranges.lock(lba, n, true)
	defer unlock()
	buf, release := lu.bufs.get(int(n << blockShift))
	defer release()
	if _, err := lu.store.ReadAt(buf, int64(lba<<blockShift)); err != nil {
		return lu.ioError(op+" read", err, lba, senseReadError)
	}
	if s := modify(buf); s != nil {
		return lu.fail(*s)
	}
	if _, err := lu.store.WriteAt(buf, int64(lba<<blockShift)); err != nil {
		return lu.ioError(op, err, lba, senseWriteError)
	}
	return lu.durable(cmd.CDB[1]&0x08 != 0, lba)
}

// writeSame is WRITE SAME(10/16) (SBC-3 5.41, 5.42). With the UNMAP bit
// the range is deallocated whatever the block holds, as LIO and tgt do and
// libiscsi expects (reads then return zeros, LBPRZ); without it the block
// is written to every LBA of the range. A length of 0 means up to the last
// LBA.
func writeSame(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	lba, n, nOff := rwArgs(cdb)
	if cdb[1]&0xe0 != 0 {
		return lu.fail(badCDB(1, 7))
	}
	if cdb[1]&0x10 != 0 { // ANCHOR: anchored state not supported
		return lu.fail(badCDB(1, 4))
	}
	unmapBit := cdb[1]&0x08 != 0
	ndob := cdb[0] == 0x93 && cdb[1]&0x01 != 0
	if n == 0 {
		if lba > lu.nblocks {
			return lu.fail(senseLBAOutOfRange)
		}
		n = lu.nblocks - lba
	}
	if s := lu.checkRange(lba, n); s != nil {
		return lu.fail(*s)
	}
	if n > maxWriteSame {
		return lu.fail(badCDB(nOff, 7))
	}
	if n == 0 {
		return Response{Status: StatusGood}
	}
	block := make([]byte, blockSize)
	if !ndob {
		if len(cmd.DataOut) != blockSize {
			return lu.fail(badCDB(nOff, 7))
		}
		copy(block, cmd.DataOut)
	}
	unlock := lu.ranges.lock(lba, n, false)
	defer unlock()
	if unmapBit && lu.mapper != nil {
		if err := lu.store.Unmap(int64(lba<<blockShift), int64(n<<blockShift)); err != nil {
			return lu.ioError("unmap", err, lba, senseWriteError)
		}
		return lu.durable(false, lba)
	}
	chunk := make([]byte, min(n, 2048)<<blockShift)
	for off := 0; off < len(chunk); off += blockSize {
		copy(chunk[off:], block)
	}
	for done := uint64(0); done < n; {
		k := min(n-done, uint64(len(chunk))>>blockShift)
		if _, err := lu.store.WriteAt(chunk[:k<<blockShift], int64((lba+done)<<blockShift)); err != nil {
			return lu.ioError("write same", err, lba+done, senseWriteError)
		}
		done += k
	}
	return lu.durable(false, lba)
}

// unmap is UNMAP (SBC-3 5.28).
func unmap(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	if cdb[1]&0x01 != 0 { // ANCHOR
		return lu.fail(badCDB(1, 0))
	}
	if lu.mapper == nil {
		return lu.fail(senseInvalidOpcode)
	}
	plen := int(be.Uint16(cdb[7:]))
	if plen == 0 {
		return Response{Status: StatusGood}
	}
	if plen < 8 || len(cmd.DataOut) < plen {
		return lu.fail(senseParamListLength)
	}
	p := cmd.DataOut[:plen]
	bdlen := min(int(be.Uint16(p[2:])), plen-8)
	count := bdlen / 16
	if count > maxUnmapDescs {
		return lu.fail(badParam(2, 7))
	}
	var total uint64
	for i := 0; i < count; i++ {
		d := p[8+16*i:]
		lba, n := be.Uint64(d), uint64(be.Uint32(d[8:]))
		if s := lu.checkRange(lba, n); s != nil {
			return lu.fail(*s)
		}
		if total += n; total > maxUnmapBlocks {
			return lu.fail(badParam(8+16*i+8, 7))
		}
	}
	for i := 0; i < count; i++ {
		d := p[8+16*i:]
		lba, n := be.Uint64(d), uint64(be.Uint32(d[8:]))
		if n == 0 {
			continue
		}
		unlock := lu.ranges.lock(lba, n, false)
		err := lu.store.Unmap(int64(lba<<blockShift), int64(n<<blockShift))
		unlock()
		if err != nil {
			return lu.ioError("unmap", err, lba, senseWriteError)
		}
	}
	return lu.durable(false, 0)
}

// getLBAStatus is GET LBA STATUS (SBC-3 5.6): mapped and deallocated
// extents from lba on, as many as the allocation length holds.
func getLBAStatus(lu *LogicalUnit, cmd *Command) Response {
	lba := be.Uint64(cmd.CDB[2:])
	alloc := be.Uint32(cmd.CDB[10:])
	if lba >= lu.nblocks {
		return lu.fail(senseLBAOutOfRange)
	}
	descs := 1 // at least one, even when the allocation length cuts it
	if alloc > 24 {
		descs = min(int(alloc-8)/16, 64)
	}
	data := make([]byte, 8, 8+16*descs)
	for i := 0; i < descs && lba < lu.nblocks; i++ {
		mapped, ext := true, int64((lu.nblocks-lba)<<blockShift)
		if lu.mapper != nil {
			var err error
			mapped, ext, err = lu.mapper.Allocated(int64(lba<<blockShift), ext)
			if err != nil {
				return lu.ioError("get lba status", err, lba, senseReadError)
			}
		}
		blocks := max(uint64(ext)>>blockShift, 1)
		blocks = min(blocks, 0xffffffff, lu.nblocks-lba)
		d := make([]byte, 16)
		be.PutUint64(d, lba)
		be.PutUint32(d[8:], uint32(blocks))
		if !mapped {
			d[12] = 0x01 // deallocated
		}
		data = append(data, d...)
		lba += blocks
	}
	be.PutUint32(data, uint32(len(data)-4))
	return good(data, alloc)
}

// preFetch is PRE-FETCH(10/16) (SBC-3 5.3): the kernel is asked to read
// the range ahead; the page cache holds any amount, so CONDITION MET.
// A length of 0 means up to the last LBA.
func preFetch(lu *LogicalUnit, cmd *Command) Response {
	lba, n, _ := rwArgs(cmd.CDB)
	if s := lu.checkRange(lba, n); s != nil {
		return lu.fail(*s)
	}
	if n == 0 {
		n = lu.nblocks - lba
	}
	if p, ok := lu.store.(backstore.Prefetcher); ok && n > 0 {
		if err := p.Prefetch(int64(lba<<blockShift), int64(n<<blockShift)); err != nil {
			lu.log.Warn("prefetch", zap.Uint64("lba", lba), zap.Error(err))
		}
	}
	return Response{Status: StatusConditionMet}
}

// synchronizeCache is SYNCHRONIZE CACHE(10/16) (SBC-3 5.22, 5.23).
func synchronizeCache(lu *LogicalUnit, cmd *Command) Response {
	lba, n, _ := rwArgs(cmd.CDB)
	if s := lu.checkRange(lba, n); s != nil {
		return lu.fail(*s)
	}
	return lu.durable(true, lba)
}

// readDefectData is READ DEFECT DATA(10/12): the list is always empty.
func readDefectData(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	if cdb[0] == 0x37 {
		return good([]byte{0, cdb[2] & 0x1f, 0, 0}, uint32(be.Uint16(cdb[7:])))
	}
	return good([]byte{0, cdb[1] & 0x1f, 0, 0, 0, 0, 0, 0}, be.Uint32(cdb[6:]))
}

// readCapacity10 is READ CAPACITY(10) (SBC-3 5.15).
func readCapacity10(lu *LogicalUnit, cmd *Command) Response {
	if cmd.CDB[8]&0x01 == 0 && be.Uint32(cmd.CDB[2:]) != 0 {
		return lu.fail(badCDB(2, 7))
	}
	data := make([]byte, 8)
	be.PutUint32(data, uint32(min(lu.nblocks-1, 0xffffffff)))
	be.PutUint32(data[4:], blockSize)
	return Response{Status: StatusGood, Data: data}
}

// readCapacity16 is READ CAPACITY(16) (SBC-3 5.16).
func readCapacity16(lu *LogicalUnit, cmd *Command) Response {
	data := make([]byte, 32)
	be.PutUint64(data, lu.nblocks-1)
	be.PutUint32(data[8:], blockSize)
	data[13] = physExponent
	if lu.mapper != nil {
		data[14] = 0x80 | 0x40 // LBPME, LBPRZ
	}
	return good(data, be.Uint32(cmd.CDB[10:]))
}
