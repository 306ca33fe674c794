package scsi

// DataOutLength is the number of Data-Out bytes cdb asks the initiator to
// send (0 for commands that take none), so that the session can report a
// write's residual against ExpectedDataTransferLength (RFC 7143 11.4.5.2).
func DataOutLength(cdb []byte) uint64 {
	if len(cdb) == 0 || len(cdb) < cdbLength(cdb[0]) {
		return 0
	}
	switch cdb[0] {
	case 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e, 0x8b, 0x9c: // writes
		_, n, _ := rwArgs(cdb)
		return n << blockShift
	case 0x89: // COMPARE AND WRITE: compare and write data
		_, n, _ := rwArgs(cdb)
		return 2 * n << blockShift
	case 0x41, 0x93: // WRITE SAME: one block unless NDOB
		if cdb[0] == 0x93 && cdb[1]&0x01 != 0 {
			return 0
		}
		return blockSize
	case 0x2f, 0xaf, 0x8f: // VERIFY: by BYTCHK
		_, n, _ := rwArgs(cdb)
		switch cdb[1] >> 1 & 0x03 {
		case 1:
			return n << blockShift
		case 3:
			return blockSize
		}
		return 0
	case 0x15: // MODE SELECT(6)
		return uint64(cdb[4])
	case 0x42, 0x55: // UNMAP, MODE SELECT(10)
		return uint64(be.Uint16(cdb[7:]))
	case 0x5f: // PERSISTENT RESERVE OUT
		return uint64(be.Uint32(cdb[5:]))
	case 0x83: // EXTENDED COPY
		return uint64(be.Uint32(cdb[10:]))
	}
	return 0
}

// cdbLength is the CDB length of an opcode by its group code (SPC-4 4.2.5.1).
func cdbLength(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 16
}
