// Package scsi implements SCSI logical units per SPC-4 and SBC-3: one function
// per command, sense data, unit attentions and persistent reservations. It
// knows nothing of iSCSI PDUs; the session layer hands it a Command and sends
// back the Response.
package scsi

import "sync/atomic"

// Nexus identifies an I_T nexus (SPC-4 3.1.45): the initiator port and the
// target port. Reservations and unit attentions are kept per nexus.
type Nexus struct {
	InitiatorName string  // initiator IQN
	ISID          [6]byte // session's initiator session ID
	TargetName    string  // target IQN
	TPGT          uint16  // target portal group tag
}

// Command is one SCSI command addressed to a logical unit.
type Command struct {
	CDB   []byte
	Nexus Nexus
	// ReadOnly is set when the nexus's ACL write-protects the LU.
	ReadOnly bool
	// Attr is the SAM task attribute (0 untagged/simple, 1 simple, 2 ordered, 3 head of queue, 4 ACA).
	Attr byte
	// ExpectedDataTransferLength is the initiator's buffer size for this command.
	ExpectedDataTransferLength uint32
	// DataOut is all the data the initiator sent (writes); at most
	// ExpectedDataTransferLength bytes.
	DataOut []byte
	// Aborted, when set, is the transport's mark that it aborted the
	// command meanwhile. The LU reads it once it holds its lock, so that a
	// command aborted by a PREEMPT AND ABORT it waited behind neither runs
	// nor takes a unit attention its nexus would never see.
	Aborted *atomic.Bool
}

// SAM status codes.
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusACAActive           = 0x30
	StatusTaskAborted         = 0x40
)

// Response is the outcome of a Command.
type Response struct {
	Status byte
	// Sense is fixed-format sense data, set with StatusCheckCondition.
	Sense []byte
	// Data is the data-in for the initiator. The session sends at most
	// ExpectedDataTransferLength of it and reports the residual.
	Data []byte
	// release returns Data's buffer to its pool; nil when Data is not pooled.
	release func()
}

// Release returns the response's data buffer to its pool. The caller must
// not touch Data afterwards. Safe to call on a zero Response.
func (r *Response) Release() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
	r.Data = nil
}
