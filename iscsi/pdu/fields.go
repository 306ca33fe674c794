package pdu

import "fmt"

// Bytes 1 to 3 of the BHS mean something else in each PDU. Header keeps
// them raw (Flags, Byte2, Byte3) so that Decode and Encode need no opcode
// switch; the accessors here give them the names RFC 7143 gives them.

// Stage is a login stage: a Login PDU's CSG or NSG (RFC 7143 §11.12.3).
type Stage uint8

// Login stages.
const (
	StageSecurity    Stage = 0
	StageOperational Stage = 1
	StageFullFeature Stage = 3
)

// CSG is a Login Request's or Response's current stage.
func (h *Header) CSG() Stage { return Stage(h.Flags&FlagLoginCSG) >> 2 }

// NSG is a Login Request's or Response's next stage, meaningful with Transit.
func (h *Header) NSG() Stage { return Stage(h.Flags & FlagLoginNSG) }

// Transit is a Login PDU's T bit: the sender is ready to move to NSG.
func (h *Header) Transit() bool { return h.Flags&FlagTransit != 0 }

// Continue is a Login or Text PDU's C bit: its text goes on in the next PDU.
func (h *Header) Continue() bool { return h.Flags&FlagContinue != 0 }

// SetStages sets a Login PDU's CSG and, when transit, its T bit and NSG.
func (h *Header) SetStages(csg, nsg Stage, transit bool) {
	h.Flags = h.Flags&^(FlagTransit|FlagLoginCSG|FlagLoginNSG) | LoginFlags(csg, nsg, transit)
}

// LoginFlags is the flags byte of a Login PDU in stage csg, with T and
// NSG when transit.
func LoginFlags(csg, nsg Stage, transit bool) byte {
	f := byte(csg) << 2 & FlagLoginCSG
	if transit {
		f |= FlagTransit | byte(nsg)&FlagLoginNSG
	}
	return f
}

// VersionMax is byte 2 of a Login Request or Response.
func (h *Header) VersionMax() byte { return h.Byte2 }

// VersionMin is byte 3 of a Login Request.
func (h *Header) VersionMin() byte { return h.Byte3 }

// VersionActive is byte 3 of a Login Response.
func (h *Header) VersionActive() byte { return h.Byte3 }

// Response is byte 2 of a SCSI Response (the iSCSI service response, 0 for
// Command Completed at Target), a Task Management Function Response (see
// TMFResponse) or a Logout Response (0 for closed successfully).
func (h *Header) Response() byte { return h.Byte2 }

// SetResponse sets Response.
func (h *Header) SetResponse(r byte) { h.Byte2 = r }

// Status is byte 3 of a SCSI Response, and of a SCSI Data-In with the S
// bit: the command's SCSI status.
func (h *Header) Status() byte { return h.Byte3 }

// SetStatus sets Status.
func (h *Header) SetStatus(s byte) { h.Byte3 = s }

// RejectReason is a Reject's reason (RFC 7143 §11.17.1).
type RejectReason uint8

// Reject reasons the target gives.
const (
	RejectDataDigest          RejectReason = 0x02
	RejectSNACK               RejectReason = 0x03
	RejectProtocolError       RejectReason = 0x04
	RejectCommandNotSupported RejectReason = 0x05
	RejectInvalidPDUField     RejectReason = 0x09
)

// Reason is byte 2 of a Reject.
func (h *Header) Reason() RejectReason { return RejectReason(h.Byte2) }

// SetReason sets Reason.
func (h *Header) SetReason(r RejectReason) { h.Byte2 = byte(r) }

// TMFFunction is a Task Management Function Request's function (RFC 7143
// §11.5.1).
type TMFFunction uint8

// Task management functions, numbered from 1 in RFC 7143's order.
const (
	TMFAbortTask TMFFunction = iota + 1
	TMFAbortTaskSet
	TMFClearACA
	TMFClearTaskSet
	TMFLUNReset
	TMFTargetWarmReset
	TMFTargetColdReset
	TMFTaskReassign
)

func (f TMFFunction) String() string { return name(tmfFunctionNames, f, "TMFFunction") }

var tmfFunctionNames = map[TMFFunction]string{
	TMFAbortTask: "ABORT TASK", TMFAbortTaskSet: "ABORT TASK SET", TMFClearACA: "CLEAR ACA",
	TMFClearTaskSet: "CLEAR TASK SET", TMFLUNReset: "LOGICAL UNIT RESET", TMFTargetWarmReset: "TARGET WARM RESET",
	TMFTargetColdReset: "TARGET COLD RESET", TMFTaskReassign: "TASK REASSIGN",
}

// Function is the function of a Task Management Function Request.
func (h *Header) Function() TMFFunction { return TMFFunction(h.Flags & FlagTMFFunction) }

// SetFunction sets Function, keeping the F bit.
func (h *Header) SetFunction(f TMFFunction) {
	h.Flags = h.Flags&^FlagTMFFunction | byte(f)&FlagTMFFunction
}

// TMFResponse is a Task Management Function Response's Response (RFC 7143
// §11.6.1).
type TMFResponse uint8

// Task management responses, numbered from 0 in RFC 7143's order but for
// the last.
const (
	TMFComplete TMFResponse = iota
	TMFTaskNotExist
	TMFLUNNotExist
	TMFTaskStillAllegiant
	TMFReassignNotSupported
	TMFNotSupported
	TMFAuthorizationFailed

	TMFRejected TMFResponse = 255
)

func (r TMFResponse) String() string { return name(tmfResponseNames, r, "TMFResponse") }

var tmfResponseNames = map[TMFResponse]string{
	TMFComplete: "Function complete", TMFTaskNotExist: "Task does not exist", TMFLUNNotExist: "LUN does not exist",
	TMFTaskStillAllegiant: "Task still allegiant", TMFReassignNotSupported: "Task allegiance reassignment not supported",
	TMFNotSupported: "Task management function not supported", TMFAuthorizationFailed: "Function authorization failed",
	TMFRejected: "Function rejected",
}

// name is v's name in names, or kind(v) for a value without one.
func name[T ~uint8](names map[T]string, v T, kind string) string {
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("%s(%d)", kind, uint8(v))
}

// TMFResponse is byte 2 of a Task Management Function Response.
func (h *Header) TMFResponse() TMFResponse { return TMFResponse(h.Byte2) }

// SetTMFResponse sets TMFResponse.
func (h *Header) SetTMFResponse(r TMFResponse) { h.Byte2 = byte(r) }

// ReasonCode is a Logout Request's reason (RFC 7143 §11.14.1): 0 closes the
// session, 1 the connection, 2 removes the connection for recovery.
func (h *Header) ReasonCode() byte { return h.Flags & FlagLogoutMask }

// Attr is a SCSI Command's task attribute (RFC 7143 §11.3.1, SAM-5).
func (h *Header) Attr() byte { return h.Flags & FlagAttrMask }
