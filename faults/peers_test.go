package faults

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// sessionKeys is what these initiators ask of a session, as Linux's does:
// immediate data and 256 KiB data segments; then extra.
func sessionKeys(extra ...login.KV) []login.KV {
	return append([]login.KV{{Key: "ImmediateData", Value: "Yes"}, {Key: "MaxRecvDataSegmentLength", Value: "262144"}}, extra...)
}

// normalLogin is the first Login Request's text of a normal session.
func normalLogin(initiator, target string, extra ...login.KV) []login.KV {
	return iscsitest.NormalKeys(initiator, target, sessionKeys(extra...)...)
}

// afterLogin is one logged-in connection of a protocol-abuse case.
func (l *iscsiLab) afterLogin(t *testing.T, i byte, extra ...login.KV) *iscsitest.Initiator {
	t.Helper()
	in := l.dial(t)
	if _, err := in.Login([6]byte{0x80, 0, 0, 0x77, 0, i}, 0, normalLogin(l.initiator, l.target, extra...)...); err != nil {
		t.Fatal(err)
	}
	if res, err := in.CommandPastUA(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
		t.Fatalf("TEST UNIT READY: %v %#x", err, res.Status)
	}
	return in
}

// readBlock reads block lba through a fresh session (ISID suffix i).
func (l *iscsiLab) readBlock(t *testing.T, i byte, lba uint32) []byte {
	t.Helper()
	chk, err := iscsitest.Dial(l.portal)
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	if _, err := chk.Login([6]byte{0x80, 0, 0, 0x78, 0, i}, 0, normalLogin(l.initiator, l.target)...); err != nil {
		t.Fatal(err)
	}
	res, err := chk.CommandPastUA(0, iscsitest.Read10(lba, 1), nil, 512)
	if err != nil || res.Status != 0 || len(res.Data) != 512 {
		t.Fatalf("READ(10) of block %d: %v status %#x, %d bytes", lba, err, res.Status, len(res.Data))
	}
	return res.Data
}

// servesOrClosed: after abuse a connection either still serves commands
// or was closed by the target; it never hangs or answers nonsense.
func servesOrClosed(t *testing.T, in *iscsitest.Initiator) string {
	t.Helper()
	res, err := in.Command(0, iscsitest.TUR(), nil, 0)
	switch {
	case err == nil && res.Status == 0:
		return "kept serving"
	case err != nil && !isTimeout(err):
		return "closed by the target"
	default:
		t.Fatalf("connection neither serving nor closed: %v status %#x", err, res.Status)
		return ""
	}
}

// TestISCSIProtocolAbuse: after login, PDUs a broken or hostile initiator
// sends — CmdSN outside the window, Data-Out for a task that does not
// exist, Data-Out overrunning its R2T, a data segment beyond the negotiated
// MaxRecvDataSegmentLength — and logins with parameters out of their RFC
// 7143 ranges. The target survives each, a write overrun never reaches the
// next block on disk, and afterwards goroutines are at baseline and
// iscsi-inq is answered.
func TestISCSIProtocolAbuse(t *testing.T) {
	l := startISCSI(t, "")
	base := l.baseline()

	t.Run("CmdSN outside the window", func(t *testing.T) {
		in := l.afterLogin(t, 1)
		for _, off := range []uint32{1000, 1 << 31, ^uint32(0) - 500} {
			h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal, InitiatorTaskTag: 0x7000 + off&0xff,
				CmdSN: in.CmdSN + off, ExpStatSN: in.ExpStatSN}
			if err := in.Send(h, nil); err != nil {
				t.Fatal(err)
			}
		}
		// The next in-window command is answered, and only it.
		in.ITT = 0x100
		res, err := in.Command(0, iscsitest.TUR(), nil, 0)
		if err != nil || res.Status != 0 {
			t.Fatalf("in-window TEST UNIT READY after out-of-window ones: %v %#x", err, res.Status)
		}
	})

	t.Run("Data-Out for an unknown task", func(t *testing.T) {
		in := l.afterLogin(t, 2)
		h := pdu.Header{Opcode: pdu.OpSCSIDataOut, Flags: pdu.FlagFinal, InitiatorTaskTag: 0xdead, TargetTransferTag: 0xbeef,
			ExpStatSN: in.ExpStatSN}
		if err := in.Send(h, make([]byte, 512)); err != nil {
			t.Fatal(err)
		}
		t.Log(servesOrClosed(t, in))
	})

	t.Run("Data-Out overruns its R2T", func(t *testing.T) {
		in := l.afterLogin(t, 3)
		// Block 11 must stay as it is whatever happens to block 10's write.
		marker := bytes.Repeat([]byte{0x5a}, 512)
		if res, err := in.Command(0, iscsitest.Write10(11, 1), marker, 0); err != nil || res.Status != 0 {
			t.Fatalf("marker write: %v %#x", err, res.Status)
		}
		h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite | 1, InitiatorTaskTag: in.NextITT(),
			ExpectedDataTransferLength: 512, CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}
		in.CmdSN++
		copy(h.CDB[:], iscsitest.Write10(10, 1))
		if err := in.Send(h, nil); err != nil {
			t.Fatal(err)
		}
		p, err := in.RecvOp(pdu.OpR2T)
		if err != nil {
			t.Fatalf("want an R2T: %v", err)
		}
		d := pdu.Header{Opcode: pdu.OpSCSIDataOut, Flags: pdu.FlagFinal, InitiatorTaskTag: h.InitiatorTaskTag,
			TargetTransferTag: p.TargetTransferTag, ExpStatSN: in.ExpStatSN}
		if err := in.Send(d, bytes.Repeat([]byte{0xee}, 4096)); err != nil {
			t.Fatal(err)
		}
		// And one far beyond the transfer.
		d.BufferOffset = 1 << 20
		in.Send(d, bytes.Repeat([]byte{0xee}, 512))
		in.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		var seen []string
		for {
			q := new(pdu.PDU)
			if err := in.R.Read(q); err != nil {
				break
			}
			seen = append(seen, fmt.Sprintf("%v(%#x/%#x)", q.Opcode, q.Byte2, q.Byte3))
		}
		t.Logf("target answered the overrun with %v", seen)
		if got := l.readBlock(t, 3, 11); !bytes.Equal(got, marker) {
			t.Fatalf("block 11 overwritten by an overrun of block 10")
		}
	})

	t.Run("data segment beyond MaxRecvDataSegmentLength", func(t *testing.T) {
		in := l.afterLogin(t, 4)
		h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite | 1, InitiatorTaskTag: in.NextITT(),
			ExpectedDataTransferLength: 1 << 20, CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}
		in.CmdSN++
		copy(h.CDB[:], iscsitest.Write10(100, 2048))
		in.Send(h, make([]byte, 1<<20)) // 1 MiB of immediate data
		t.Log(servesOrClosed(t, in))
	})

	t.Run("login parameters out of range", func(t *testing.T) {
		ranges := map[string][2]int{ // RFC 7143 §13
			"MaxRecvDataSegmentLength": {512, 1<<24 - 1}, "MaxBurstLength": {512, 1<<24 - 1},
			"FirstBurstLength": {512, 1<<24 - 1}, "MaxConnections": {1, 65535}, "DefaultTime2Wait": {0, 3600},
			"DefaultTime2Retain": {0, 3600}, "MaxOutstandingR2T": {1, 65535}, "ErrorRecoveryLevel": {0, 2},
		}
		huge := string(bytes.Repeat([]byte{'9'}, 4000))
		for i, kv := range []login.KV{
			{Key: "MaxRecvDataSegmentLength", Value: "1"}, {Key: "MaxRecvDataSegmentLength", Value: "4294967296"},
			{Key: "MaxBurstLength", Value: "0"}, {Key: "FirstBurstLength", Value: "99999999"},
			{Key: "MaxConnections", Value: "0"}, {Key: "DefaultTime2Wait", Value: "99999"},
			{Key: "MaxOutstandingR2T", Value: "-1"}, {Key: "ErrorRecoveryLevel", Value: "7"},
			{Key: "HeaderDigest", Value: "Bogus"}, {Key: "MaxBurstLength", Value: huge},
			{Key: "ImmediateData", Value: "Maybe"}, {Key: "X-unknown", Value: "1"},
		} {
			in, err := iscsitest.Dial(l.portal)
			if err != nil {
				t.Fatal(err)
			}
			in.NextITT()
			var kvs []login.KV
			for _, n := range normalLogin(l.initiator, l.target) {
				if n.Key != kv.Key {
					kvs = append(kvs, n)
				}
			}
			if err := in.Send(in.LoginRequest([6]byte{0x80, 0, 0, 0x79, 0, byte(i)}, 0, append(kvs, kv)...)); err != nil {
				t.Fatal(err)
			}
			p, err := in.Recv()
			outcome := ""
			switch {
			case err != nil:
				outcome = "connection closed"
			case p.Opcode != pdu.OpLoginResponse:
				t.Errorf("%s=%.20s: got %v", kv.Key, kv.Value, p.Opcode)
			case p.StatusClass != 0:
				outcome = fmt.Sprintf("refused %#02x%02x", p.StatusClass, p.StatusDetail)
			default:
				kvs, err := login.ParseText(p.Data)
				if err != nil {
					t.Errorf("%s=%.20s: response text: %v", kv.Key, kv.Value, err)
				}
				outcome = "login completed, answered"
				for _, r := range kvs {
					if rg, ok := ranges[r.Key]; ok && r.Value != "Reject" {
						v, err := strconv.Atoi(r.Value)
						if err != nil || v < rg[0] || v > rg[1] {
							t.Errorf("%s=%.20s: target answered %s=%s, outside [%d, %d]", kv.Key, kv.Value, r.Key, r.Value, rg[0], rg[1])
						}
					}
					if r.Key == kv.Key {
						outcome += fmt.Sprintf(" %s=%.20s", r.Key, r.Value)
					}
				}
				in.CmdSN = p.ExpCmdSN
				if res, err := in.CommandPastUA(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
					t.Errorf("%s=%.20s: accepted, then TEST UNIT READY: %v %#x", kv.Key, kv.Value, err, res.Status)
				}
			}
			t.Logf("%s=%.20s: %s", kv.Key, kv.Value, outcome)
			in.Close()
		}
	})
	l.afterAbuse("protocol abuse after login", base)
}

// TestISCSIMisbehavingInitiators: initiators that break RFC 7143 at login
// or after it — out of turn, naming what does not exist, unauthorised,
// truncated, corrupted. Each gets exactly the answer our target gives (a
// Login Response status, a Reject reason, or the connection dropped
// without a word), no corrupted write reaches the disk, and after each
// case, repeated, the target is back to its baseline and serves iscsi-inq.
func TestISCSIMisbehavingInitiators(t *testing.T) {
	const (
		chapInitiator = testBase + ":db1"
		chapTarget    = testBase + ":data"
		chapUser      = "db1"
		chapSecret    = "db1-secret-3c9e0a71"
	)
	l := startISCSI(t, fmt.Sprintf(`
[[target]]
name = "data"
luns = [ { lun = 0, image = "data/db.img", size = "16MiB" } ]
[[target.acl]]
initiator = %q
chap = { user = %q, secret = %q }
`, chapInitiator, chapUser, chapSecret))
	base := l.baseline()
	marker := bytes.Repeat([]byte{0x5a}, 512)

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"SCSI Command before login", func(t *testing.T) {
			in := l.dial(t)
			if err := in.Send(tur(in), nil); err != nil {
				t.Fatal(err)
			}
			refused(t, in, 0x020b) // invalid request during login
		}},
		{"login naming a TSIH that does not exist", func(t *testing.T) {
			in := l.dial(t)
			h, data := l.firstLogin(in, [6]byte{0x80, 0, 0, 0x60, 0, 1}, l.initiator)
			h.TSIH = 0x4242
			if err := in.Send(h, data); err != nil {
				t.Fatal(err)
			}
			refused(t, in, 0x020a) // session does not exist
		}},
		{"initiator outside the ACL", func(t *testing.T) {
			in := l.dial(t)
			if err := in.Send(l.firstLogin(in, [6]byte{0x80, 0, 0, 0x60, 0, 2}, testBase+":intruder")); err != nil {
				t.Fatal(err)
			}
			refused(t, in, 0x0202) // authorization failure
		}},
		{"wrong CHAP", func(t *testing.T) {
			// The right secret logs in: the refusals below are CHAP's.
			in := l.dial(t)
			if _, err := in.LoginCHAP([6]byte{0x80, 0, 0, 0x60, 0, 3}, chapInitiator, chapTarget, chapUser, chapSecret, sessionKeys()...); err != nil {
				t.Fatalf("right CHAP secret: %v", err)
			}
			if res, err := in.CommandPastUA(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
				t.Fatalf("TEST UNIT READY after CHAP: %v %#x", err, res.Status)
			}
			if err := in.Logout(); err != nil {
				t.Fatal(err)
			}
			for i, cred := range [][2]string{
				{chapUser, chapSecret[:len(chapSecret)-1] + "2"}, // a typo
				{"db2", chapSecret}, // a user the target does not know
			} {
				in := l.dial(t)
				_, err := in.LoginCHAP([6]byte{0x80, 0, 0, 0x60, 1, byte(i)}, chapInitiator, chapTarget, cred[0], cred[1], sessionKeys()...)
				var le *iscsitest.LoginError
				if !errors.As(err, &le) || le.Class != 2 || le.Detail != 1 {
					t.Fatalf("CHAP_N=%s with a wrong response: %v, want status 0x0201 (authentication failure)", cred[0], err)
				}
				dropped(t, in)
			}
		}},
		{"half a BHS then EOF, before login", func(t *testing.T) {
			in := l.dial(t)
			h, data := l.firstLogin(in, [6]byte{0x80, 0, 0, 0x60, 0, 4}, l.initiator)
			truncate(t, in, h, data, pdu.BHSLength/2)
			dropped(t, in)
		}},
		{"half a BHS then EOF, after login", func(t *testing.T) {
			in := l.afterLogin(t, 0x10)
			truncate(t, in, tur(in), nil, pdu.BHSLength/2)
			dropped(t, in)
		}},
		{"DataSegmentLength beyond the bytes sent, before login", func(t *testing.T) {
			in := l.dial(t)
			h, data := l.firstLogin(in, [6]byte{0x80, 0, 0, 0x60, 0, 5}, l.initiator)
			truncate(t, in, h, data, pdu.BHSLength+len(data)/2)
			dropped(t, in)
		}},
		{"DataSegmentLength beyond the bytes sent, after login", func(t *testing.T) {
			in := l.afterLogin(t, 0x11)
			if res, err := in.Command(0, iscsitest.Write10(20, 1), marker, 0); err != nil || res.Status != 0 {
				t.Fatalf("marker write: %v %#x", err, res.Status)
			}
			// 16 KiB of immediate data promised, 4 KiB sent.
			truncate(t, in, immediateWrite(in, 20, bytes.Repeat([]byte{0xee}, 16<<10)), bytes.Repeat([]byte{0xee}, 16<<10), pdu.BHSLength+4<<10)
			dropped(t, in)
			if !bytes.Equal(l.readBlock(t, 0x11, 20), marker) {
				t.Fatal("block 20 written by a truncated WRITE")
			}
		}},
		{"unknown opcode after login", func(t *testing.T) {
			in := l.afterLogin(t, 0x12)
			var bhs [pdu.BHSLength]byte
			bhs[0] = 0x1c // no such initiator opcode (RFC 7143 §11.1.1)
			bhs[1] = pdu.FlagFinal
			binary.BigEndian.PutUint32(bhs[16:], 0x7777)
			if _, err := in.Conn.Write(bhs[:]); err != nil {
				t.Fatal(err)
			}
			p, err := in.Recv()
			if err != nil || p.Opcode != pdu.OpReject || p.Byte2 != 0x05 || !bytes.Equal(p.Data, bhs[:]) {
				t.Fatalf("want Reject, reason 0x05 (command not supported) carrying the BHS; got %s, %v", iscsitest.Describe([]*pdu.PDU{p}), err)
			}
			// The connection goes on.
			if res, err := in.Command(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
				t.Fatalf("TEST UNIT READY after the Reject: %v %#x", err, res.Status)
			}
		}},
		{"header digest error", func(t *testing.T) {
			in := l.afterLogin(t, 0x13, login.KV{Key: "HeaderDigest", Value: "CRC32C"})
			if !in.W.HeaderDigest {
				t.Fatal("target refused HeaderDigest=CRC32C")
			}
			// A NOP-Out ping the target would answer, were its digest right.
			if _, err := in.SendBadDigest(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal,
				InitiatorTaskTag: 0x99, TargetTransferTag: iscsitest.ReservedTag, CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}, nil, true); err != nil {
				t.Fatal(err)
			}
			dropped(t, in) // ErrorRecoveryLevel 0: the stream is unframed
		}},
		{"data digest error", func(t *testing.T) {
			in := l.afterLogin(t, 0x14, login.KV{Key: "DataDigest", Value: "CRC32C"})
			if !in.W.DataDigest {
				t.Fatal("target refused DataDigest=CRC32C")
			}
			if res, err := in.Command(0, iscsitest.Write10(30, 1), marker, 0); err != nil || res.Status != 0 {
				t.Fatalf("marker write with data digests: %v %#x", err, res.Status)
			}
			bad := bytes.Repeat([]byte{0xee}, 512)
			bhs, err := in.SendBadDigest(immediateWrite(in, 30, bad), bad, false)
			if err != nil {
				t.Fatal(err)
			}
			// RFC 7143 §7.8: a Reject, reason 0x02 (data digest error),
			// carrying the BHS; at ErrorRecoveryLevel 0 the target then
			// drops the connection.
			seen, err := in.UntilClosed()
			rejected := len(seen) == 1 && seen[0].Opcode == pdu.OpReject && seen[0].Byte2 == 0x02 && bytes.Equal(seen[0].Data, bhs)
			if err != nil || !rejected {
				t.Errorf("want Reject 0x02 carrying the BHS, then close; got %s and %v", iscsitest.Describe(seen), err)
			}
			t.Logf("target sent %s, then closed", iscsitest.Describe(seen))
			if !bytes.Equal(l.readBlock(t, 0x14, 30), marker) {
				t.Fatal("block 30 written with data that failed its digest")
			}
		}},
	}
	// Each case several times over, so that a goroutine or descriptor left
	// behind per connection outgrows the slack of settle.
	const rounds = 8
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range rounds {
				if c.run(t); t.Failed() {
					return
				}
			}
		})
		l.afterAbuse(fmt.Sprintf("%s ×%d", c.name, rounds), base)
	}
}

// dial connects a raw initiator to the lab's portal, closed when t ends.
func (l *iscsiLab) dial(t *testing.T) *iscsitest.Initiator {
	t.Helper()
	in, err := iscsitest.Dial(l.portal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

// firstLogin is the first Login Request of a new session of initiator.
func (l *iscsiLab) firstLogin(in *iscsitest.Initiator, isid [6]byte, initiator string) (pdu.Header, []byte) {
	in.NextITT()
	return in.LoginRequest(isid, 0, normalLogin(initiator, l.target)...)
}

// refused: one Login Response with status want (class<<8 | detail), then
// the target closes the connection.
func refused(t *testing.T, in *iscsitest.Initiator, want uint16) {
	t.Helper()
	seen, err := in.UntilClosed()
	if err != nil {
		t.Fatalf("want a Login Response %#04x and close; got %s and %v", want, iscsitest.Describe(seen), err)
	}
	if len(seen) != 1 || seen[0].Opcode != pdu.OpLoginResponse || iscsitest.LoginStatus(seen[0]) != want {
		t.Fatalf("want a Login Response %#04x and close; got %s", want, iscsitest.Describe(seen))
	}
}

// dropped: the target closes the connection without a word.
func dropped(t *testing.T, in *iscsitest.Initiator) {
	t.Helper()
	seen, err := in.UntilClosed()
	if err != nil || len(seen) > 0 {
		t.Fatalf("want the connection closed with nothing sent; got %s and %v", iscsitest.Describe(seen), err)
	}
}

// truncate sends h with data but stops keep bytes into the encoded PDU,
// then half-closes: the target sees EOF mid-PDU.
func truncate(t *testing.T, in *iscsitest.Initiator, h pdu.Header, data []byte, keep int) {
	t.Helper()
	if err := in.SendTruncated(h, data, keep); err != nil {
		t.Fatal(err)
	}
}

// tur is the header of a TEST UNIT READY with the next task tag.
func tur(in *iscsitest.Initiator) pdu.Header {
	return pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal, InitiatorTaskTag: in.NextITT(),
		CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}
}

// immediateWrite is the header of a WRITE(10) of len(data) bytes at lba,
// all of them immediate data.
func immediateWrite(in *iscsitest.Initiator, lba uint32, data []byte) pdu.Header {
	h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite | 1, InitiatorTaskTag: in.NextITT(),
		ExpectedDataTransferLength: uint32(len(data)), CmdSN: in.CmdSN, ExpStatSN: in.ExpStatSN}
	copy(h.CDB[:], iscsitest.Write10(lba, uint16(len(data)/512)))
	return h
}
