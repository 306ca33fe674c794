package faults

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

func write10(lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = 0x2a
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

func read10(lba uint32, blocks uint16) []byte {
	c := write10(lba, blocks)
	c[0] = 0x28
	return c
}

// afterLogin is one logged-in connection of a protocol-abuse case.
func (l *iscsiLab) afterLogin(t *testing.T, i byte) *initiator {
	t.Helper()
	in, err := dialInitiator(l.portal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	if err := in.login(l.initiator, l.target, [6]byte{0x80, 0, 0, 0x77, 0, i}); err != nil {
		t.Fatal(err)
	}
	if res, err := in.commandPastUA(0, make([]byte, 6), nil, 0); err != nil || res.status != 0 {
		t.Fatalf("TEST UNIT READY: %v %#x", err, res.status)
	}
	return in
}

// servesOrClosed: after abuse a connection either still serves commands
// or was closed by the target; it never hangs or answers nonsense.
func servesOrClosed(t *testing.T, in *initiator) string {
	t.Helper()
	res, err := in.command(0, make([]byte, 6), nil, 0)
	switch {
	case err == nil && res.status == 0:
		return "kept serving"
	case err != nil && !isTimeout(err):
		return "closed by the target"
	default:
		t.Fatalf("connection neither serving nor closed: %v status %#x", err, res.status)
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
				CmdSN: in.cmdSN + off, ExpStatSN: in.expStatSN}
			if err := in.w.Write(&h, nil); err != nil {
				t.Fatal(err)
			}
		}
		// The next in-window command is answered, and only it.
		in.itt = 0x100
		res, err := in.command(0, make([]byte, 6), nil, 0)
		if err != nil || res.status != 0 {
			t.Fatalf("in-window TEST UNIT READY after out-of-window ones: %v %#x", err, res.status)
		}
	})

	t.Run("Data-Out for an unknown task", func(t *testing.T) {
		in := l.afterLogin(t, 2)
		h := pdu.Header{Opcode: pdu.OpSCSIDataOut, Flags: pdu.FlagFinal, InitiatorTaskTag: 0xdead, TargetTransferTag: 0xbeef,
			ExpStatSN: in.expStatSN}
		if err := in.w.Write(&h, make([]byte, 512)); err != nil {
			t.Fatal(err)
		}
		t.Log(servesOrClosed(t, in))
	})

	t.Run("Data-Out overruns its R2T", func(t *testing.T) {
		in := l.afterLogin(t, 3)
		// Block 11 must stay as it is whatever happens to block 10's write.
		marker := bytes.Repeat([]byte{0x5a}, 512)
		if res, err := in.command(0, write10(11, 1), marker, 0); err != nil || res.status != 0 {
			t.Fatalf("marker write: %v %#x", err, res.status)
		}
		in.itt++
		h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite | 1, InitiatorTaskTag: in.itt,
			ExpectedDataTransferLength: 512, CmdSN: in.cmdSN, ExpStatSN: in.expStatSN}
		in.cmdSN++
		copy(h.CDB[:], write10(10, 1))
		if err := in.w.Write(&h, nil); err != nil {
			t.Fatal(err)
		}
		p, err := in.recv()
		if err != nil || p.Opcode != pdu.OpR2T {
			t.Fatalf("want an R2T: %v %v", err, p)
		}
		d := pdu.Header{Opcode: pdu.OpSCSIDataOut, Flags: pdu.FlagFinal, InitiatorTaskTag: h.InitiatorTaskTag,
			TargetTransferTag: p.TargetTransferTag, ExpStatSN: in.expStatSN}
		if err := in.w.Write(&d, bytes.Repeat([]byte{0xee}, 4096)); err != nil {
			t.Fatal(err)
		}
		// And one far beyond the transfer.
		d.BufferOffset = 1 << 20
		in.w.Write(&d, bytes.Repeat([]byte{0xee}, 512))
		in.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		var seen []string
		for {
			q := new(pdu.PDU)
			if err := in.r.Read(q); err != nil {
				break
			}
			seen = append(seen, fmt.Sprintf("%v(%#x/%#x)", q.Opcode, q.Byte2, q.Byte3))
		}
		t.Logf("target answered the overrun with %v", seen)
		chk, err := dialInitiator(l.portal)
		if err != nil {
			t.Fatal(err)
		}
		defer chk.Close()
		if err := chk.login(l.initiator, l.target, [6]byte{0x80, 0, 0, 0x78, 0, 3}); err != nil {
			t.Fatal(err)
		}
		res, err := chk.commandPastUA(0, read10(11, 1), nil, 512)
		if err != nil || res.status != 0 || !bytes.Equal(res.data, marker) {
			t.Fatalf("block 11 after an overrun of block 10: %v status %#x, intact %v", err, res.status, bytes.Equal(res.data, marker))
		}
	})

	t.Run("data segment beyond MaxRecvDataSegmentLength", func(t *testing.T) {
		in := l.afterLogin(t, 4)
		in.itt++
		h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite | 1, InitiatorTaskTag: in.itt,
			ExpectedDataTransferLength: 1 << 20, CmdSN: in.cmdSN, ExpStatSN: in.expStatSN}
		in.cmdSN++
		copy(h.CDB[:], write10(100, 2048))
		in.w.Write(&h, make([]byte, 1<<20)) // 1 MiB of immediate data
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
			in, err := dialInitiator(l.portal)
			if err != nil {
				t.Fatal(err)
			}
			in.itt++
			var kvs []login.KV
			for _, n := range normalLogin(l.initiator, l.target) {
				if n.Key != kv.Key {
					kvs = append(kvs, n)
				}
			}
			h, data := loginRequest([6]byte{0x80, 0, 0, 0x79, 0, byte(i)}, in.itt, append(kvs, kv))
			if err := in.w.Write(&h, data); err != nil {
				t.Fatal(err)
			}
			p, err := in.recv()
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
				in.expStatSN, in.cmdSN = p.StatSN+1, p.ExpCmdSN
				if res, err := in.commandPastUA(0, make([]byte, 6), nil, 0); err != nil || res.status != 0 {
					t.Errorf("%s=%.20s: accepted, then TEST UNIT READY: %v %#x", kv.Key, kv.Value, err, res.status)
				}
			}
			t.Logf("%s=%.20s: %s", kv.Key, kv.Value, outcome)
			in.Close()
		}
	})
	l.afterAbuse("protocol abuse after login", base)
}
