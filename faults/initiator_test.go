package faults

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// initiator is the smallest iSCSI initiator that can carry one SCSI command
// at a time: a login without security negotiation, then commands with
// immediate data (or Data-Out on R2T) and their responses. It reuses
// iscsi/pdu's codec and iscsi/login's text encoding, nothing of the target.
type initiator struct {
	nc        net.Conn
	r         pdu.Reader
	w         pdu.Writer
	cmdSN     uint32
	expStatSN uint32
	itt       uint32
}

func dialInitiator(addr string) (*initiator, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &initiator{nc: nc, r: pdu.Reader{R: nc, Pool: new(pdu.Pool), MaxRecvDataSegmentLength: 1 << 20},
		w: pdu.Writer{W: nc}, cmdSN: 1}, nil
}

func (in *initiator) Close() error { return in.nc.Close() }

// recv reads one PDU, skipping NOP-In pings (answered when they ask).
func (in *initiator) recv() (*pdu.PDU, error) {
	for {
		in.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		p := new(pdu.PDU)
		if err := in.r.Read(p); err != nil {
			return nil, err
		}
		if p.Opcode == pdu.OpNOPIn && p.InitiatorTaskTag == 0xffffffff {
			if p.TargetTransferTag != 0xffffffff {
				h := pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: 0xffffffff,
					TargetTransferTag: p.TargetTransferTag, CmdSN: in.cmdSN, ExpStatSN: in.expStatSN}
				if err := in.w.Write(&h, nil); err != nil {
					return nil, err
				}
			}
			continue
		}
		if p.Opcode != pdu.OpR2T && p.Opcode != pdu.OpSCSIDataIn {
			in.expStatSN = p.StatSN + 1
		}
		return p, nil
	}
}

// loginRequest is the first (and, for our keys, only) Login Request:
// operational stage straight to full feature phase.
func loginRequest(isid [6]byte, itt uint32, kvs []login.KV) (pdu.Header, []byte) {
	h := pdu.Header{Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.FlagTransit | 1<<2 | 3,
		ISID: isid, InitiatorTaskTag: itt, CmdSN: 1}
	return h, login.EncodeText(nil, kvs)
}

func normalLogin(initiatorName, target string) []login.KV {
	return []login.KV{
		{Key: "InitiatorName", Value: initiatorName}, {Key: "TargetName", Value: target},
		{Key: "SessionType", Value: "Normal"}, {Key: "ImmediateData", Value: "Yes"},
		{Key: "MaxRecvDataSegmentLength", Value: "262144"},
	}
}

// loginError is a Login Response with a non-zero status class.
type loginError struct{ class, detail byte }

func (e *loginError) Error() string {
	return fmt.Sprintf("login refused: status %#02x%02x", e.class, e.detail)
}

// login logs in to target as initiatorName with session ISID isid, with
// extra keys besides normalLogin's, and adopts the digests the target
// agreed to, as a real initiator does.
func (in *initiator) login(initiatorName, target string, isid [6]byte, extra ...login.KV) error {
	in.itt++
	h, data := loginRequest(isid, in.itt, append(normalLogin(initiatorName, target), extra...))
	return in.finishLogin(&h, data)
}

// finishLogin sends the Login Request that moves to full feature phase and
// checks the answer.
func (in *initiator) finishLogin(h *pdu.Header, data []byte) error {
	if err := in.w.Write(h, data); err != nil {
		return err
	}
	p, err := in.recv()
	if err != nil {
		return fmt.Errorf("login response: %w", err)
	}
	if p.Opcode != pdu.OpLoginResponse {
		return fmt.Errorf("login: got %v", p.Opcode)
	}
	if p.StatusClass != 0 {
		return &loginError{p.StatusClass, p.StatusDetail}
	}
	if p.Flags&pdu.FlagTransit == 0 || p.Flags&3 != 3 {
		return fmt.Errorf("login: target did not move to full feature phase (flags %#x)", p.Flags)
	}
	kvs, err := login.ParseText(p.Data)
	if err != nil {
		return fmt.Errorf("login response text: %w", err)
	}
	for _, kv := range kvs {
		switch kv.Key {
		case "HeaderDigest":
			in.r.HeaderDigest, in.w.HeaderDigest = kv.Value == "CRC32C", kv.Value == "CRC32C"
		case "DataDigest":
			in.r.DataDigest, in.w.DataDigest = kv.Value == "CRC32C", kv.Value == "CRC32C"
		}
	}
	in.expStatSN = p.StatSN + 1
	in.cmdSN = p.ExpCmdSN
	return nil
}

// loginCHAP logs in through the security stage with one-way CHAP (MD5,
// RFC 1994) as user with secret, then the operational stage.
func (in *initiator) loginCHAP(initiatorName, target string, isid [6]byte, user, secret string) error {
	in.itt++
	security := func(kvs []login.KV) (map[string]string, error) {
		h := pdu.Header{Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.FlagTransit | 1, // CSG security, NSG operational
			ISID: isid, InitiatorTaskTag: in.itt, CmdSN: 1, ExpStatSN: in.expStatSN}
		if err := in.w.Write(&h, login.EncodeText(nil, kvs)); err != nil {
			return nil, err
		}
		p, err := in.recv()
		switch {
		case err != nil:
			return nil, fmt.Errorf("security stage: %w", err)
		case p.Opcode != pdu.OpLoginResponse:
			return nil, fmt.Errorf("security stage: got %v", p.Opcode)
		case p.StatusClass != 0:
			return nil, &loginError{p.StatusClass, p.StatusDetail}
		}
		in.expStatSN = p.StatSN + 1
		out, err := login.ParseText(p.Data)
		m := map[string]string{}
		for _, kv := range out {
			m[kv.Key] = kv.Value
		}
		return m, err
	}
	m, err := security([]login.KV{{Key: "InitiatorName", Value: initiatorName}, {Key: "TargetName", Value: target},
		{Key: "SessionType", Value: "Normal"}, {Key: "AuthMethod", Value: "CHAP"}})
	if err != nil {
		return err
	}
	if m["AuthMethod"] != "CHAP" {
		return fmt.Errorf("target answered AuthMethod=%q", m["AuthMethod"])
	}
	if m, err = security([]login.KV{{Key: "CHAP_A", Value: "5"}}); err != nil {
		return err
	}
	id, err := strconv.Atoi(m["CHAP_I"])
	if err != nil || m["CHAP_A"] != "5" {
		return fmt.Errorf("target's CHAP_A=%q CHAP_I=%q", m["CHAP_A"], m["CHAP_I"])
	}
	challenge, err := login.DecodeBinary(m["CHAP_C"])
	if err != nil {
		return fmt.Errorf("target's CHAP_C: %w", err)
	}
	sum := md5.Sum(append(append([]byte{byte(id)}, secret...), challenge...))
	if _, err := security([]login.KV{{Key: "CHAP_N", Value: user}, {Key: "CHAP_R", Value: "0x" + hex.EncodeToString(sum[:])}}); err != nil {
		return err
	}
	h, data := loginRequest(isid, in.itt, normalLogin(initiatorName, target)[3:])
	h.ExpStatSN = in.expStatSN
	return in.finishLogin(&h, data)
}

// untilClosed reads what the target sends until it closes the connection
// (EOF or reset), NOP-In pings aside; any other end, a read timeout
// included, is an error.
func (in *initiator) untilClosed() ([]*pdu.PDU, error) {
	var seen []*pdu.PDU
	for range 16 {
		p, err := in.recv()
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			return seen, nil
		case err != nil:
			return seen, err
		}
		seen = append(seen, p)
	}
	return seen, fmt.Errorf("still open after %d PDUs", len(seen))
}

// result is one SCSI command's outcome.
type result struct {
	status byte   // SAM status: 0 GOOD, 2 CHECK CONDITION, 0x18 RESERVATION CONFLICT
	data   []byte // Data-In
	sense  []byte // sense data of a CHECK CONDITION
}

// senseKey returns the sense key of fixed or descriptor sense data.
func (r result) senseKey() byte {
	s := r.sense
	if len(s) > 2 && s[0]&0x7f >= 0x72 {
		return s[1] & 0x0f
	}
	if len(s) > 2 {
		return s[2] & 0x0f
	}
	return 0
}

// command sends one SCSI command on LUN lun and waits for its status.
func (in *initiator) command(lun uint64, cdb []byte, out []byte, readLen uint32) (result, error) {
	in.itt++
	h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | 1 /* SIMPLE */, LUN: lun << 48,
		InitiatorTaskTag: in.itt, CmdSN: in.cmdSN, ExpStatSN: in.expStatSN}
	in.cmdSN++
	copy(h.CDB[:], cdb)
	if out != nil {
		h.Flags |= pdu.FlagWrite
		h.ExpectedDataTransferLength = uint32(len(out))
	} else if readLen > 0 {
		h.Flags |= pdu.FlagRead
		h.ExpectedDataTransferLength = readLen
	}
	if err := in.w.Write(&h, out); err != nil {
		return result{}, err
	}
	var res result
	for {
		p, err := in.recv()
		if err != nil {
			return res, fmt.Errorf("cdb %#02x: %w", cdb[0], err)
		}
		switch p.Opcode {
		case pdu.OpR2T:
			// Only if the target refused immediate data: send what it asks.
			d := pdu.Header{Opcode: pdu.OpSCSIDataOut, Flags: pdu.FlagFinal, InitiatorTaskTag: h.InitiatorTaskTag,
				TargetTransferTag: p.TargetTransferTag, BufferOffset: p.BufferOffset, ExpStatSN: in.expStatSN}
			end := min(int(p.BufferOffset+p.DesiredDataTransferLength), len(out))
			if err := in.w.Write(&d, out[p.BufferOffset:end]); err != nil {
				return res, err
			}
		case pdu.OpSCSIDataIn:
			res.data = append(res.data, p.Data...)
			if p.Flags&pdu.FlagStatus != 0 {
				res.status = p.Byte3
				return res, nil
			}
		case pdu.OpSCSIResponse:
			res.status = p.Byte3
			if p.Byte2 != 0 {
				return res, fmt.Errorf("cdb %#02x: iSCSI response %#x", cdb[0], p.Byte2)
			}
			if len(p.Data) >= 2 {
				n := int(binary.BigEndian.Uint16(p.Data))
				res.sense = p.Data[2:min(2+n, len(p.Data))]
			}
			return res, nil
		default:
			return res, fmt.Errorf("cdb %#02x: unexpected %v", cdb[0], p.Opcode)
		}
	}
}

// commandPastUA retries a command past the unit attentions a new nexus
// (power on, reservations preempted…) reports first; bounded.
func (in *initiator) commandPastUA(lun uint64, cdb []byte, out []byte, readLen uint32) (result, error) {
	var res result
	var err error
	for range 8 {
		res, err = in.command(lun, cdb, out, readLen)
		if err != nil || res.status != 2 || res.senseKey() != 6 {
			return res, err
		}
	}
	return res, err
}

// logout ends the session politely.
func (in *initiator) logout() error {
	in.itt++
	h := pdu.Header{Opcode: pdu.OpLogoutRequest, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: in.itt,
		CmdSN: in.cmdSN, ExpStatSN: in.expStatSN}
	if err := in.w.Write(&h, nil); err != nil {
		return err
	}
	p, err := in.recv()
	if err != nil {
		return err
	}
	if p.Opcode != pdu.OpLogoutResponse || p.Byte2 != 0 {
		return fmt.Errorf("logout: %v response %#x", p.Opcode, p.Byte2)
	}
	return nil
}
