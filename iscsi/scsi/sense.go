package scsi

import "encoding/binary"

// Sense keys (SPC-4 table 49).
const (
	keyNoSense        = 0x00
	keyMediumError    = 0x03
	keyHardwareError  = 0x04
	keyIllegalRequest = 0x05
	keyUnitAttention  = 0x06
	keyDataProtect    = 0x07
	keyCopyAborted    = 0x0a
	keyMiscompare     = 0x0e
)

// sense is one sense condition; it is encoded fixed or descriptor format
// when the response is built, as the control page's D_SENSE asks.
type sense struct {
	key, asc, ascq byte
	// info is the INFORMATION field, valid when infoValid.
	info      uint64
	infoValid bool
	// sks is the sense-key-specific field (SKSV set when sksValid).
	sks      [3]byte
	sksValid bool
}

// Additional sense codes used here, as ASC<<8|ASCQ.
var (
	senseNoSense                = sense{key: keyNoSense}
	senseInvalidOpcode          = sense{key: keyIllegalRequest, asc: 0x20}
	senseLBAOutOfRange          = sense{key: keyIllegalRequest, asc: 0x21}
	senseInvalidFieldInCDB      = sense{key: keyIllegalRequest, asc: 0x24}
	senseLUNotSupported         = sense{key: keyIllegalRequest, asc: 0x25}
	senseInvalidFieldInParam    = sense{key: keyIllegalRequest, asc: 0x26}
	senseTooManyTargets         = sense{key: keyIllegalRequest, asc: 0x26, ascq: 0x06}
	senseUnsupportedTarget      = sense{key: keyIllegalRequest, asc: 0x26, ascq: 0x07}
	senseTooManySegments        = sense{key: keyIllegalRequest, asc: 0x26, ascq: 0x08}
	senseUnsupportedSegment     = sense{key: keyIllegalRequest, asc: 0x26, ascq: 0x09}
	senseCopyAborted            = sense{key: keyCopyAborted}
	senseCopyTargetUnreachable  = sense{key: keyCopyAborted, asc: 0x0d, ascq: 0x02}
	senseInvalidRelease         = sense{key: keyIllegalRequest, asc: 0x26, ascq: 0x04}
	senseParamListLength        = sense{key: keyIllegalRequest, asc: 0x1a}
	senseSavingNotSupported     = sense{key: keyIllegalRequest, asc: 0x39}
	senseRemovalPrevented       = sense{key: keyIllegalRequest, asc: 0x53, ascq: 0x02}
	senseWriteProtected         = sense{key: keyDataProtect, asc: 0x27}
	senseSoftWriteProtected     = sense{key: keyDataProtect, asc: 0x27, ascq: 0x02}
	senseReadError              = sense{key: keyMediumError, asc: 0x11}
	senseWriteError             = sense{key: keyMediumError, asc: 0x0c}
	senseInternalFailure        = sense{key: keyHardwareError, asc: 0x44}
	senseMiscompare             = sense{key: keyMiscompare, asc: 0x1d}
	sensePowerOn                = sense{key: keyUnitAttention, asc: 0x29}
	senseResetOccurred          = sense{key: keyUnitAttention, asc: 0x29, ascq: 0x03}
	senseModeChanged            = sense{key: keyUnitAttention, asc: 0x2a, ascq: 0x01}
	senseReservationsPreempted  = sense{key: keyUnitAttention, asc: 0x2a, ascq: 0x03}
	senseReservationsReleased   = sense{key: keyUnitAttention, asc: 0x2a, ascq: 0x04}
	senseRegistrationsPreempted = sense{key: keyUnitAttention, asc: 0x2a, ascq: 0x05}
	senseLUNsChanged            = sense{key: keyUnitAttention, asc: 0x3f, ascq: 0x0e}
)

// fieldPointer returns s with a sense-key-specific field pointer to byte
// (and bit, when bit >= 0) of the CDB (cdb true) or parameter list.
func (s sense) fieldPointer(cdb bool, byteOff, bit int) sense {
	s.sksValid = true
	s.sks[0] = 0
	if cdb {
		s.sks[0] |= 0x40 // C/D
	}
	if bit >= 0 {
		s.sks[0] |= 0x08 | byte(bit&7) // BPV, bit pointer
	}
	binary.BigEndian.PutUint16(s.sks[1:], uint16(byteOff))
	return s
}

func (s sense) withInfo(v uint64) sense {
	s.info, s.infoValid = v, true
	return s
}

// encode returns the sense data: fixed format (70h) or descriptor format (72h).
func (s sense) encode(descriptor bool) []byte {
	if !descriptor {
		b := make([]byte, 18)
		b[0] = 0x70
		if s.infoValid {
			b[0] |= 0x80
			binary.BigEndian.PutUint32(b[3:], uint32(s.info))
		}
		b[2] = s.key
		b[7] = 10
		b[12], b[13] = s.asc, s.ascq
		if s.sksValid {
			copy(b[15:], s.sks[:])
			b[15] |= 0x80
		}
		return b
	}
	b := make([]byte, 8, 8+12+8)
	b[0] = 0x72
	b[1], b[2], b[3] = s.key, s.asc, s.ascq
	if s.infoValid {
		d := make([]byte, 12)
		d[0], d[1], d[2] = 0x00, 0x0a, 0x80
		binary.BigEndian.PutUint64(d[4:], s.info)
		b = append(b, d...)
	}
	if s.sksValid {
		b = append(b, 0x02, 0x06, 0, 0, s.sks[0]|0x80, s.sks[1], s.sks[2], 0)
	}
	b[7] = byte(len(b) - 8)
	return b
}

func badCDB(byteOff, bit int) sense {
	return senseInvalidFieldInCDB.fieldPointer(true, byteOff, bit)
}

func badParam(byteOff, bit int) sense {
	return senseInvalidFieldInParam.fieldPointer(false, byteOff, bit)
}
