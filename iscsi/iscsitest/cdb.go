package iscsitest

import "encoding/binary"

// The CDBs tests send most (SBC-3, SPC-4), built here and not by
// iscsi/scsi, which is what they test.

// TUR is TEST UNIT READY.
func TUR() []byte { return make([]byte, 6) }

// Read10 is READ(10) of blocks blocks at lba.
func Read10(lba uint32, blocks uint16) []byte { return rw10(0x28, lba, blocks) }

// Write10 is WRITE(10) of blocks blocks at lba.
func Write10(lba uint32, blocks uint16) []byte { return rw10(0x2a, lba, blocks) }

func rw10(op byte, lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

// ReportLUNs is REPORT LUNS with an allocation length of alloc bytes.
func ReportLUNs(alloc uint32) []byte {
	c := make([]byte, 12)
	c[0] = 0xa0
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

// Persistent reservation service actions and types (SPC-4 6.15, 6.16).
const (
	PRInReadKeys         = 0x00
	PRInReadReservation  = 0x01
	PROutRegister        = 0x00
	PROutReserve         = 0x01
	PROutPreempt         = 0x04
	PROutPreemptAndAbort = 0x05
	PRWriteExclusive     = 0x01
)

// PRIn is PERSISTENT RESERVE IN with service action sa and an allocation
// length of alloc bytes.
func PRIn(sa byte, alloc uint16) []byte {
	c := make([]byte, 10)
	c[0], c[1] = 0x5e, sa
	binary.BigEndian.PutUint16(c[7:], alloc)
	return c
}

// PROut is PERSISTENT RESERVE OUT with service action sa and type typ, for
// PROutParams' 24-byte parameter list.
func PROut(sa, typ byte) []byte {
	c := make([]byte, 10)
	c[0], c[1], c[2] = 0x5f, sa, typ
	binary.BigEndian.PutUint32(c[5:], 24)
	return c
}

// PROutParams is the basic parameter list of PERSISTENT RESERVE OUT:
// reservation key key, service action key saKey, and APTPL (keep them
// across power loss) when aptpl.
func PROutParams(key, saKey uint64, aptpl bool) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p, key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	if aptpl {
		p[20] = 0x01
	}
	return p
}
