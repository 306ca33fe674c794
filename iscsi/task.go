package iscsi

import (
	"sync/atomic"

	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/iscsi/scsi"
)

// task is one SCSI command from arrival to response.
type task struct {
	itt         uint32
	lun         uint64 // as the initiator addressed it
	cmdSN       uint32
	cdb         [16]byte
	attr        byte
	edtl        uint32
	read, write bool
	buf         []byte // Data-Out gathered here
	received    uint32

	unsolicited uint32 // bytes the initiator sends without R2T
	unsolDataSN uint32
	nextR2T     uint32 // offset of the next R2T
	r2tSN       uint32
	r2ts        map[uint32]*r2t // by Target Transfer Tag
	executing   bool
	aborted     atomic.Bool // stored under session.mu; read anywhere (the LU asks it)
	done        chan struct{}
	finished    bool
}

// r2t is one outstanding Ready To Transfer.
type r2t struct {
	offset, length, received uint32
	nextDataSN               uint32
}

// residual returns the residual flag and count of a command that
// produced n bytes of Data-In (RFC 7143 §11.4.5): against the Data-In it
// produced for reads, against the Data-Out its CDB asks for for writes.
func (t *task) residual(n uint32) (byte, uint32) {
	want := uint64(n)
	if !t.read {
		if n > 0 {
			return pdu.FlagOverflow, n
		}
		if !t.write {
			return 0, 0
		}
		want = scsi.DataOutLength(t.cdb[:])
	}
	switch edtl := uint64(t.edtl); {
	case want < edtl:
		return pdu.FlagUnderflow, uint32(edtl - want)
	case want > edtl:
		return pdu.FlagOverflow, uint32(min(want-edtl, 1<<32-1))
	}
	return 0, 0
}
