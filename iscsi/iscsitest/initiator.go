// Package iscsitest is a raw iSCSI initiator for tests, as net/http/httptest
// is an HTTP server for them: it sends exactly the PDUs a test builds,
// well-formed or not, and reads what the target answers. It reuses
// iscsi/pdu's codec and iscsi/login's text encoding and nothing of the
// target, so that a test of the target cannot agree with it by sharing its
// mistakes. Its methods return errors rather than failing a test, so it
// serves retry loops and goroutines as well as test bodies.
package iscsitest

import (
	"bytes"
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

// ReservedTag is the tag value RFC 7143 reserves (§11.19, §11.18): a NOP-In
// with it as Initiator Task Tag is the target's ping, and a NOP-Out that
// wants no answer carries it as Target Transfer Tag.
const ReservedTag = 0xffffffff

// readTimeout bounds every read: a target that does not answer fails the
// test instead of hanging it.
const readTimeout = 20 * time.Second

// Initiator is one connection of a hand-driven initiator. Its fields are
// the connection's state, for tests that build PDUs of their own: CmdSN is
// the next command's, ITT the last Initiator Task Tag given out.
type Initiator struct {
	Conn      net.Conn
	R         pdu.Reader
	W         pdu.Writer
	CmdSN     uint32
	ExpStatSN uint32
	ITT       uint32

	// KeepPings makes Recv return the target's NOP-In pings instead of
	// answering them and passing over them, as a real initiator does:
	// for tests of the pings themselves, or of a peer that stops answering.
	KeepPings bool

	// FirstBurst and MaxSendSegment, when set, are what the login
	// negotiated (FirstBurstLength, the target's MaxRecvDataSegmentLength):
	// Command then sends at most FirstBurst bytes of a write as immediate
	// data and no PDU of more than MaxSendSegment bytes, as a real
	// initiator must. Zero sends a write's data whole, for tests of what a
	// target does with more than it declared.
	FirstBurst, MaxSendSegment uint32
}

// Dial connects to an iSCSI portal.
func Dial(addr string) (*Initiator, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return New(nc), nil
}

// New is an initiator on a connection the test made. It reads data
// segments up to 1 MiB, beyond any MaxRecvDataSegmentLength it declares,
// so that a target that sends too much is seen doing so.
func New(nc net.Conn) *Initiator {
	return &Initiator{Conn: nc, R: pdu.Reader{R: nc, Pool: new(pdu.Pool), MaxRecvDataSegmentLength: 1 << 20},
		W: pdu.Writer{W: nc}, CmdSN: 1}
}

func (in *Initiator) Close() error { return in.Conn.Close() }

// NextITT gives out the next Initiator Task Tag.
func (in *Initiator) NextITT() uint32 {
	in.ITT++
	return in.ITT
}

// Send writes one PDU.
func (in *Initiator) Send(h pdu.Header, data []byte) error {
	if err := in.W.Write(&h, data); err != nil {
		return fmt.Errorf("send %v: %w", h.Opcode, err)
	}
	return nil
}

// Recv reads one PDU and follows the StatSN it acknowledges. Unless
// KeepPings, a NOP-In ping is answered (when it asks to be) and passed
// over.
func (in *Initiator) Recv() (*pdu.PDU, error) {
	for {
		in.Conn.SetReadDeadline(time.Now().Add(readTimeout))
		p := new(pdu.PDU)
		if err := in.R.Read(p); err != nil {
			return p, err
		}
		ping := p.Opcode == pdu.OpNOPIn && p.InitiatorTaskTag == ReservedTag
		switch {
		case ping:
			// A ping carries the next StatSN without using it up (§11.19.2).
			in.ExpStatSN = p.StatSN
		case p.Opcode == pdu.OpR2T, p.Opcode == pdu.OpSCSIDataIn && p.Flags&pdu.FlagStatus == 0:
			// No StatSN in these.
		default:
			in.ExpStatSN = p.StatSN + 1
		}
		if !ping || in.KeepPings {
			return p, nil
		}
		if p.TargetTransferTag != ReservedTag {
			if err := in.Send(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: ReservedTag,
				TargetTransferTag: p.TargetTransferTag, CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}, nil); err != nil {
				return nil, err
			}
		}
	}
}

// RecvOp reads one PDU and fails unless it is an op.
func (in *Initiator) RecvOp(op pdu.Opcode) (*pdu.PDU, error) {
	p, err := in.Recv()
	switch {
	case err != nil:
		return p, fmt.Errorf("waiting for %v: %w", op, err)
	case p.Opcode != op:
		return p, fmt.Errorf("got %v, want %v (%+v)", p.Opcode, op, p.Header)
	}
	return p, nil
}

// UntilClosed reads what the target sends until it closes the connection
// (EOF or reset) and returns it. Any other end, a read timeout included,
// is an error; so are 100 PDUs without the end.
func (in *Initiator) UntilClosed() ([]*pdu.PDU, error) {
	var seen []*pdu.PDU
	for range 100 {
		p, err := in.Recv()
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
			return seen, nil
		case err != nil:
			return seen, err
		}
		seen = append(seen, p)
	}
	return seen, fmt.Errorf("still open after %d PDUs", len(seen))
}

// Describe names what a target sent, for failure messages.
func Describe(ps []*pdu.PDU) string {
	if len(ps) == 0 {
		return "nothing"
	}
	var b bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		switch {
		case p == nil:
			b.WriteString("nil")
		case p.Opcode == pdu.OpLoginResponse:
			fmt.Fprintf(&b, "%v status %#04x", p.Opcode, LoginStatus(p))
		default:
			fmt.Fprintf(&b, "%v(%#x/%#x) %d bytes", p.Opcode, p.Byte2, p.Byte3, len(p.Data))
		}
	}
	return b.String()
}

// SendBadDigest sends h with data, framed with the digests in use and
// with the one named (header, else data) wrong, and returns the BHS it
// sent, which a target's Reject carries back.
func (in *Initiator) SendBadDigest(h pdu.Header, data []byte, header bool) ([]byte, error) {
	var b bytes.Buffer
	(&pdu.Writer{W: &b, HeaderDigest: in.W.HeaderDigest || header, DataDigest: in.W.DataDigest || !header}).Write(&h, data)
	raw := b.Bytes()
	if header {
		raw[pdu.BHSLength] ^= 0xff
	} else {
		raw[len(raw)-1] ^= 0xff
	}
	if _, err := in.Conn.Write(raw); err != nil {
		return nil, err
	}
	return raw[:pdu.BHSLength], nil
}

// SendTruncated sends h with data but stops keep bytes into the encoded
// PDU, then half-closes: the target reads EOF mid-PDU.
func (in *Initiator) SendTruncated(h pdu.Header, data []byte, keep int) error {
	var b bytes.Buffer
	(&pdu.Writer{W: &b}).Write(&h, data)
	if _, err := in.Conn.Write(b.Bytes()[:keep]); err != nil {
		return err
	}
	return in.Conn.(*net.TCPConn).CloseWrite()
}

// NormalKeys are the declarations of a normal session's first Login
// Request, then extra.
func NormalKeys(initiator, target string, extra ...login.KV) []login.KV {
	return append([]login.KV{{Key: "InitiatorName", Value: initiator}, {Key: "TargetName", Value: target},
		{Key: "SessionType", Value: "Normal"}}, extra...)
}

// LoginError is a Login Response with a non-zero status class.
type LoginError struct{ Class, Detail byte }

func (e *LoginError) Error() string {
	return fmt.Sprintf("login refused: status %#02x%02x", e.Class, e.Detail)
}

// LoginStatus is a Login Response's status, class and detail as one
// number: 0x0201 is an authentication failure.
func LoginStatus(p *pdu.PDU) uint16 { return uint16(p.StatusClass)<<8 | uint16(p.StatusDetail) }

// LoginRequest is a Login Request of session isid (a new one when tsih is
// 0) from the operational stage straight to full feature phase, with the
// current ITT, and its text kvs; a test sets other stages in its Flags.
func (in *Initiator) LoginRequest(isid [6]byte, tsih uint16, kvs ...login.KV) (pdu.Header, []byte) {
	return pdu.Header{Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.LoginFlags(pdu.StageOperational, pdu.StageFullFeature, true),
		ISID: isid, TSIH: tsih, InitiatorTaskTag: in.ITT, CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}, login.EncodeText(nil, kvs)
}

// Login logs in without a security stage: one Login Request with kvs
// that asks for full feature phase. It returns the Login Response it read
// even with an error: a *LoginError when the target refused, another when
// it did not open the session. Once in, it uses the digests the target
// agreed to, as a real initiator does.
func (in *Initiator) Login(isid [6]byte, tsih uint16, kvs ...login.KV) (*pdu.PDU, error) {
	in.NextITT()
	return in.finishLogin(in.LoginRequest(isid, tsih, kvs...))
}

// loginStep sends one Login Request and reads its answer, which must not
// be a refusal.
func (in *Initiator) loginStep(h pdu.Header, text []byte) (*pdu.PDU, []login.KV, error) {
	if err := in.Send(h, text); err != nil {
		return nil, nil, err
	}
	p, err := in.RecvOp(pdu.OpLoginResponse)
	if err != nil {
		return p, nil, fmt.Errorf("login: %w", err)
	}
	if p.StatusClass != 0 {
		return p, nil, &LoginError{p.StatusClass, p.StatusDetail}
	}
	out, err := login.ParseText(p.Data)
	if err != nil {
		return p, nil, fmt.Errorf("login response text: %w", err)
	}
	return p, out, nil
}

// finishLogin sends the Login Request that moves to full feature phase and
// checks the answer.
func (in *Initiator) finishLogin(h pdu.Header, text []byte) (*pdu.PDU, error) {
	p, out, err := in.loginStep(h, text)
	if err != nil {
		return p, err
	}
	if !p.Transit() || p.NSG() != pdu.StageFullFeature || p.TSIH == 0 {
		return p, fmt.Errorf("login: target did not open the session (flags %#x, TSIH %d)", p.Flags, p.TSIH)
	}
	for _, kv := range out {
		switch kv.Key {
		case "HeaderDigest":
			in.R.HeaderDigest, in.W.HeaderDigest = kv.Value == "CRC32C", kv.Value == "CRC32C"
		case "DataDigest":
			in.R.DataDigest, in.W.DataDigest = kv.Value == "CRC32C", kv.Value == "CRC32C"
		}
	}
	in.CmdSN = p.ExpCmdSN
	return p, nil
}

// LoginCHAP logs in through the security stage with one-way CHAP (MD5,
// RFC 1994) as user with secret, then the operational stage with extra.
// Its errors are Login's.
func (in *Initiator) LoginCHAP(isid [6]byte, initiator, target, user, secret string, extra ...login.KV) (*pdu.PDU, error) {
	in.NextITT()
	security := func(kvs ...login.KV) (*pdu.PDU, map[string]string, error) {
		h, text := in.LoginRequest(isid, 0, kvs...)
		h.Flags = pdu.LoginFlags(pdu.StageSecurity, pdu.StageOperational, true)
		p, out, err := in.loginStep(h, text)
		m := map[string]string{}
		for _, kv := range out {
			m[kv.Key] = kv.Value
		}
		return p, m, err
	}
	p, m, err := security(NormalKeys(initiator, target, login.KV{Key: "AuthMethod", Value: "CHAP"})...)
	if err != nil {
		return p, err
	}
	if m["AuthMethod"] != "CHAP" {
		return p, fmt.Errorf("target answered AuthMethod=%q", m["AuthMethod"])
	}
	if p, m, err = security(login.KV{Key: "CHAP_A", Value: "5"}); err != nil {
		return p, err
	}
	id, err := strconv.Atoi(m["CHAP_I"])
	if err != nil || m["CHAP_A"] != "5" {
		return p, fmt.Errorf("target's CHAP_A=%q CHAP_I=%q", m["CHAP_A"], m["CHAP_I"])
	}
	challenge, err := login.DecodeBinary(m["CHAP_C"])
	if err != nil {
		return p, fmt.Errorf("target's CHAP_C: %w", err)
	}
	// Computed here, not by iscsi/login: the target's CHAP is under test.
	sum := md5.Sum(append(append([]byte{byte(id)}, secret...), challenge...))
	if p, _, err = security(login.KV{Key: "CHAP_N", Value: user}, login.KV{Key: "CHAP_R", Value: "0x" + hex.EncodeToString(sum[:])}); err != nil {
		return p, err
	}
	return in.finishLogin(in.LoginRequest(isid, 0, extra...))
}

// Logout ends the session politely.
func (in *Initiator) Logout() error {
	if err := in.Send(pdu.Header{Opcode: pdu.OpLogoutRequest, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: in.NextITT(),
		CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}, nil); err != nil {
		return err
	}
	p, err := in.RecvOp(pdu.OpLogoutResponse)
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if p.Response() != 0 {
		return fmt.Errorf("logout: response %#x", p.Response())
	}
	return nil
}

// Result is one SCSI command's outcome.
type Result struct {
	Status byte   // SAM status: 0 GOOD, 2 CHECK CONDITION, 0x18 RESERVATION CONFLICT
	Data   []byte // Data-In
	Sense  []byte // sense data of a CHECK CONDITION
	// Last is the PDU that carried the status: a SCSI Response, or the
	// last Data-In (its flags, DataSN and residual count).
	Last *pdu.PDU
}

// SenseKey returns the sense key of fixed or descriptor sense data.
func (r Result) SenseKey() byte {
	s := r.Sense
	switch {
	case len(s) > 2 && s[0]&0x7f >= 0x72:
		return s[1] & 0x0f
	case len(s) > 2:
		return s[2] & 0x0f
	}
	return 0
}

// Sense is the sense data a SCSI Response carries (RFC 7143 §11.4.7).
func Sense(p *pdu.PDU) []byte {
	if len(p.Data) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(p.Data))
	return p.Data[2:min(2+n, len(p.Data))]
}

// Command sends one SCSI command (task attribute SIMPLE) to LUN lun —
// writing out as immediate data, and what an R2T asks for as Data-Out,
// or reading up to readLen bytes — and waits for its status. Data-In out
// of order, or an answer for another task, is an error.
func (in *Initiator) Command(lun uint64, cdb, out []byte, readLen uint32) (Result, error) {
	h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | 1, LUN: lun << 48,
		InitiatorTaskTag: in.NextITT(), CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}
	in.CmdSN++
	copy(h.CDB[:], cdb)
	if out != nil {
		h.Flags |= pdu.FlagWrite
		h.ExpectedDataTransferLength = uint32(len(out))
	} else if readLen > 0 {
		h.Flags |= pdu.FlagRead
		h.ExpectedDataTransferLength = readLen
	}
	imm := out
	for _, limit := range []uint32{in.FirstBurst, in.MaxSendSegment} {
		if limit > 0 && len(imm) > int(limit) {
			imm = imm[:limit]
		}
	}
	if err := in.Send(h, imm); err != nil {
		return Result{}, err
	}
	var res Result
	for {
		p, err := in.Recv()
		if err != nil {
			return res, fmt.Errorf("cdb %#02x: %w", cdb[0], err)
		}
		if p.Opcode == pdu.OpNOPIn && p.InitiatorTaskTag == ReservedTag {
			continue // a ping the test keeps
		}
		if p.InitiatorTaskTag != h.InitiatorTaskTag {
			return res, fmt.Errorf("cdb %#02x (ITT %d): got %v for ITT %d", cdb[0], h.InitiatorTaskTag, p.Opcode, p.InitiatorTaskTag)
		}
		switch p.Opcode {
		case pdu.OpR2T:
			if err := in.dataOut(h.InitiatorTaskTag, p, out); err != nil {
				return res, err
			}
		case pdu.OpSCSIDataIn:
			if int(p.BufferOffset) != len(res.Data) {
				return res, fmt.Errorf("cdb %#02x: Data-In at offset %d, want %d", cdb[0], p.BufferOffset, len(res.Data))
			}
			res.Data = append(res.Data, p.Data...)
			if p.Flags&pdu.FlagStatus != 0 {
				res.Status, res.Last = p.Status(), p
				return res, nil
			}
		case pdu.OpSCSIResponse:
			res.Status, res.Sense, res.Last = p.Status(), Sense(p), p
			if p.Response() != 0 {
				return res, fmt.Errorf("cdb %#02x: iSCSI response %#x", cdb[0], p.Response())
			}
			return res, nil
		default:
			return res, fmt.Errorf("cdb %#02x: unexpected %v", cdb[0], p.Opcode)
		}
	}
}

// dataOut answers R2T r for task itt with the part of out it asks for, in
// PDUs of at most MaxSendSegment bytes when that is set.
func (in *Initiator) dataOut(itt uint32, r *pdu.PDU, out []byte) error {
	off := min(int(r.BufferOffset), len(out))
	end := min(int(r.BufferOffset+r.DesiredDataTransferLength), len(out))
	seg := end - off
	if in.MaxSendSegment > 0 {
		seg = min(seg, int(in.MaxSendSegment))
	}
	for sn := uint32(0); ; sn++ {
		next := min(off+seg, end)
		h := pdu.Header{Opcode: pdu.OpSCSIDataOut, InitiatorTaskTag: itt, TargetTransferTag: r.TargetTransferTag,
			BufferOffset: uint32(off), DataSN: sn, ExpStatSN: in.ExpStatSN}
		if next == end {
			h.Flags = pdu.FlagFinal
		}
		if err := in.Send(h, out[off:next]); err != nil {
			return err
		}
		if off = next; off == end {
			return nil
		}
	}
}

// CommandPastUA is Command retried past the unit attentions a new nexus
// (power on, reservations preempted, LUNs changed…) reports first; bounded.
func (in *Initiator) CommandPastUA(lun uint64, cdb, out []byte, readLen uint32) (Result, error) {
	var res Result
	var err error
	for range 8 {
		res, err = in.Command(lun, cdb, out, readLen)
		if err != nil || res.Status != 2 || res.SenseKey() != 6 {
			return res, err
		}
	}
	return res, err
}
