// Package pdu encodes and decodes iSCSI PDUs (RFC 7143 §11): the 48-byte
// Basic Header Segment, additional header segments, the data segment with its
// padding, and the CRC32C header and data digests. It keeps no session state.
package pdu

import (
	"encoding/binary"
	"fmt"
)

// Opcode is the PDU opcode (RFC 7143 §11.2.1.2).
type Opcode uint8

// Initiator opcodes.
const (
	OpNOPOut          Opcode = 0x00
	OpSCSICommand     Opcode = 0x01
	OpTaskMgmtRequest Opcode = 0x02
	OpLoginRequest    Opcode = 0x03
	OpTextRequest     Opcode = 0x04
	OpSCSIDataOut     Opcode = 0x05
	OpLogoutRequest   Opcode = 0x06
	OpSNACKRequest    Opcode = 0x10
)

// Target opcodes.
const (
	OpNOPIn            Opcode = 0x20
	OpSCSIResponse     Opcode = 0x21
	OpTaskMgmtResponse Opcode = 0x22
	OpLoginResponse    Opcode = 0x23
	OpTextResponse     Opcode = 0x24
	OpSCSIDataIn       Opcode = 0x25
	OpLogoutResponse   Opcode = 0x26
	OpR2T              Opcode = 0x31
	OpAsyncMessage     Opcode = 0x32
	OpReject           Opcode = 0x3f
)

// BHSLength is the size of the Basic Header Segment.
const BHSLength = 48

// Flag bits of byte 1.
const (
	FlagFinal    = 0x80 // F: final PDU of a sequence (T: transit in login PDUs)
	FlagContinue = 0x40 // C: text/login continues
	FlagRead     = 0x40 // R: SCSI Command expects Data-In
	FlagWrite    = 0x20 // W: SCSI Command carries Data-Out
	FlagAttrMask = 0x07 // ATTR: task attribute of a SCSI Command

	FlagAck         = 0x40 // A: Data-In acknowledge requested
	FlagBidiOver    = 0x10 // o: SCSI Response bidirectional read overflow
	FlagBidiUnder   = 0x08 // u
	FlagOverflow    = 0x04 // O: residual overflow
	FlagUnderflow   = 0x02 // U: residual underflow
	FlagStatus      = 0x01 // S: Data-In carries status
	FlagTransit     = 0x80 // T: login stage transition
	FlagLoginCSG    = 0x0c
	FlagLoginNSG    = 0x03
	FlagLogoutMask  = 0x7f // reason code of a Logout Request
	FlagTMFFunction = 0x7f // function of a Task Management Request
)

// Header is a decoded Basic Header Segment. Fields are named as in RFC 7143;
// which of them a PDU uses depends on its opcode (see layouts).
type Header struct {
	Opcode    Opcode
	Immediate bool // I bit (initiator PDUs)
	Flags     byte // byte 1, F bit included

	// Bytes 2 and 3 of the BHS, raw; fields.go names them for each PDU
	// (VersionMax, Response, Status, Reason…).
	Byte2, Byte3 byte

	TotalAHSLength    uint8 // in 4-byte words
	DataSegmentLength uint32

	LUN  uint64
	ISID [6]byte // login: bytes 8-13
	TSIH uint16  // login: bytes 14-15

	InitiatorTaskTag  uint32
	TargetTransferTag uint32
	CID               uint16 // login, logout

	CmdSN     uint32
	ExpStatSN uint32
	StatSN    uint32
	ExpCmdSN  uint32
	MaxCmdSN  uint32

	ExpectedDataTransferLength uint32
	CDB                        [16]byte

	ReferencedTaskTag uint32
	RefCmdSN          uint32
	ExpDataSN         uint32

	DataSN                    uint32 // also R2TSN
	BufferOffset              uint32
	DesiredDataTransferLength uint32
	ResidualCount             uint32
	BidiReadResidualCount     uint32
	SNACKTag                  uint32
	BegRun, RunLength         uint32

	StatusClass, StatusDetail byte // login response

	Time2Wait, Time2Retain uint16 // logout response

	AsyncEvent, AsyncVCode             byte
	Parameter1, Parameter2, Parameter3 uint16
}

// Final reports the F (or T) bit.
func (h *Header) Final() bool { return h.Flags&FlagFinal != 0 }

// field is one BHS field at a fixed offset: width is 1, 2, 4, 6, 8 or 16 bytes.
type field struct {
	off   int
	width int
	ptr   func(h *Header) any
}

func f8(off int, p func(h *Header) *byte) field {
	return field{off, 1, func(h *Header) any { return p(h) }}
}
func f16(off int, p func(h *Header) *uint16) field {
	return field{off, 2, func(h *Header) any { return p(h) }}
}
func f32(off int, p func(h *Header) *uint32) field {
	return field{off, 4, func(h *Header) any { return p(h) }}
}

var (
	fByte2    = f8(2, func(h *Header) *byte { return &h.Byte2 })
	fByte3    = f8(3, func(h *Header) *byte { return &h.Byte3 })
	fLUN      = field{8, 8, func(h *Header) any { return &h.LUN }}
	fISID     = field{8, 6, func(h *Header) any { return &h.ISID }}
	fTSIH     = f16(14, func(h *Header) *uint16 { return &h.TSIH })
	fTTT      = f32(20, func(h *Header) *uint32 { return &h.TargetTransferTag })
	fCID      = f16(20, func(h *Header) *uint16 { return &h.CID })
	fCmdSN    = f32(24, func(h *Header) *uint32 { return &h.CmdSN })
	fExpStat  = f32(28, func(h *Header) *uint32 { return &h.ExpStatSN })
	fStatSN   = f32(24, func(h *Header) *uint32 { return &h.StatSN })
	fExpCmdSN = f32(28, func(h *Header) *uint32 { return &h.ExpCmdSN })
	fMaxCmdSN = f32(32, func(h *Header) *uint32 { return &h.MaxCmdSN })
	fDataSN   = f32(36, func(h *Header) *uint32 { return &h.DataSN })
	fOffset   = f32(40, func(h *Header) *uint32 { return &h.BufferOffset })
	fResidual = f32(44, func(h *Header) *uint32 { return &h.ResidualCount })
)

// layouts lists, per opcode, the fields beyond bytes 0, 1, 4-7 and 16-19
// (opcode, flags, lengths and Initiator Task Tag), which every PDU has.
var layouts = map[Opcode][]field{
	OpNOPOut: {fLUN, fTTT, fCmdSN, fExpStat},
	OpNOPIn:  {fLUN, fTTT, fStatSN, fExpCmdSN, fMaxCmdSN},
	OpSCSICommand: {fLUN, f32(20, func(h *Header) *uint32 { return &h.ExpectedDataTransferLength }),
		fCmdSN, fExpStat, field{32, 16, func(h *Header) any { return &h.CDB }}},
	OpSCSIResponse: {fByte2, fByte3, f32(20, func(h *Header) *uint32 { return &h.SNACKTag }),
		fStatSN, fExpCmdSN, fMaxCmdSN, f32(36, func(h *Header) *uint32 { return &h.ExpDataSN }),
		f32(40, func(h *Header) *uint32 { return &h.BidiReadResidualCount }), fResidual},
	OpTaskMgmtRequest: {fLUN, f32(20, func(h *Header) *uint32 { return &h.ReferencedTaskTag }),
		fCmdSN, fExpStat, f32(32, func(h *Header) *uint32 { return &h.RefCmdSN }),
		f32(36, func(h *Header) *uint32 { return &h.ExpDataSN })},
	OpTaskMgmtResponse: {fByte2, fStatSN, fExpCmdSN, fMaxCmdSN},
	OpLoginRequest:     {fByte2, fByte3, fISID, fTSIH, fCID, fCmdSN, fExpStat},
	OpLoginResponse: {fByte2, fByte3, fISID, fTSIH, fStatSN, fExpCmdSN, fMaxCmdSN,
		f8(36, func(h *Header) *byte { return &h.StatusClass }),
		f8(37, func(h *Header) *byte { return &h.StatusDetail })},
	OpTextRequest:   {fLUN, fTTT, fCmdSN, fExpStat},
	OpTextResponse:  {fLUN, fTTT, fStatSN, fExpCmdSN, fMaxCmdSN},
	OpSCSIDataOut:   {fLUN, fTTT, fExpStat, fDataSN, fOffset},
	OpSCSIDataIn:    {fByte3, fLUN, fTTT, fStatSN, fExpCmdSN, fMaxCmdSN, fDataSN, fOffset, fResidual},
	OpLogoutRequest: {fCID, fCmdSN, fExpStat},
	OpLogoutResponse: {fByte2, fStatSN, fExpCmdSN, fMaxCmdSN,
		f16(40, func(h *Header) *uint16 { return &h.Time2Wait }),
		f16(42, func(h *Header) *uint16 { return &h.Time2Retain })},
	OpR2T: {fLUN, fTTT, fStatSN, fExpCmdSN, fMaxCmdSN, fDataSN, fOffset,
		f32(44, func(h *Header) *uint32 { return &h.DesiredDataTransferLength })},
	OpAsyncMessage: {fLUN, fStatSN, fExpCmdSN, fMaxCmdSN,
		f8(36, func(h *Header) *byte { return &h.AsyncEvent }),
		f8(37, func(h *Header) *byte { return &h.AsyncVCode }),
		f16(38, func(h *Header) *uint16 { return &h.Parameter1 }),
		f16(40, func(h *Header) *uint16 { return &h.Parameter2 }),
		f16(42, func(h *Header) *uint16 { return &h.Parameter3 })},
	OpSNACKRequest: {fLUN, fTTT, fExpStat,
		f32(40, func(h *Header) *uint32 { return &h.BegRun }),
		f32(44, func(h *Header) *uint32 { return &h.RunLength })},
	OpReject: {fByte2, fStatSN, fExpCmdSN, fMaxCmdSN, fDataSN},
}

// Known reports whether op is an opcode of RFC 7143.
func Known(op Opcode) bool {
	_, ok := layouts[op]
	return ok
}

// ErrUnknownOpcode is wrapped by Decode for opcodes RFC 7143 does not define.
var ErrUnknownOpcode = fmt.Errorf("unknown opcode")

// Decode parses a 48-byte BHS. For an unknown opcode it fills the common
// fields (so the caller can Reject with the right tag) and returns an error
// wrapping ErrUnknownOpcode.
func (h *Header) Decode(b []byte) error {
	if len(b) < BHSLength {
		return fmt.Errorf("bhs: %d bytes, need %d", len(b), BHSLength)
	}
	*h = Header{
		Opcode:            Opcode(b[0] & 0x3f),
		Immediate:         b[0]&0x40 != 0,
		Flags:             b[1],
		TotalAHSLength:    b[4],
		DataSegmentLength: uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]),
		InitiatorTaskTag:  binary.BigEndian.Uint32(b[16:]),
	}
	fields, ok := layouts[h.Opcode]
	if !ok {
		return fmt.Errorf("bhs: opcode %#x: %w", byte(h.Opcode), ErrUnknownOpcode)
	}
	for _, f := range fields {
		s := b[f.off : f.off+f.width]
		switch p := f.ptr(h).(type) {
		case *byte:
			*p = s[0]
		case *uint16:
			*p = binary.BigEndian.Uint16(s)
		case *uint32:
			*p = binary.BigEndian.Uint32(s)
		case *uint64:
			*p = binary.BigEndian.Uint64(s)
		case *[6]byte:
			copy(p[:], s)
		case *[16]byte:
			copy(p[:], s)
		}
	}
	return nil
}

// Encode writes the BHS into b (at least 48 bytes); bytes a layout does not
// name are zeroed (reserved).
func (h *Header) Encode(b []byte) {
	b = b[:BHSLength]
	clear(b)
	b[0] = byte(h.Opcode) & 0x3f
	if h.Immediate {
		b[0] |= 0x40
	}
	b[1] = h.Flags
	b[4] = h.TotalAHSLength
	b[5], b[6], b[7] = byte(h.DataSegmentLength>>16), byte(h.DataSegmentLength>>8), byte(h.DataSegmentLength)
	binary.BigEndian.PutUint32(b[16:], h.InitiatorTaskTag)
	for _, f := range layouts[h.Opcode] {
		s := b[f.off : f.off+f.width]
		switch p := f.ptr(h).(type) {
		case *byte:
			s[0] = *p
		case *uint16:
			binary.BigEndian.PutUint16(s, *p)
		case *uint32:
			binary.BigEndian.PutUint32(s, *p)
		case *uint64:
			binary.BigEndian.PutUint64(s, *p)
		case *[6]byte:
			copy(s, p[:])
		case *[16]byte:
			copy(s, p[:])
		}
	}
}

func (op Opcode) String() string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("Opcode(%#x)", byte(op))
}

var opNames = map[Opcode]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI Command", OpTaskMgmtRequest: "Task Management Function Request",
	OpLoginRequest: "Login Request", OpTextRequest: "Text Request", OpSCSIDataOut: "SCSI Data-Out",
	OpLogoutRequest: "Logout Request", OpSNACKRequest: "SNACK Request", OpNOPIn: "NOP-In",
	OpSCSIResponse: "SCSI Response", OpTaskMgmtResponse: "Task Management Function Response",
	OpLoginResponse: "Login Response", OpTextResponse: "Text Response", OpSCSIDataIn: "SCSI Data-In",
	OpLogoutResponse: "Logout Response", OpR2T: "Ready To Transfer", OpAsyncMessage: "Asynchronous Message",
	OpReject: "Reject",
}
