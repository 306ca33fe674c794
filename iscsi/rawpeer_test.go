package iscsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// rawInit is a hand-driven initiator: it sends exactly the PDUs a test
// builds, well-formed or not.
type rawInit struct {
	t         *testing.T
	nc        net.Conn
	r         pdu.Reader
	w         pdu.Writer
	cmdSN     uint32
	expStatSN uint32
	itt       uint32
}

func dial(t *testing.T, addr string) *rawInit {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawInit{t: t, nc: nc, r: pdu.Reader{R: nc, Pool: new(pdu.Pool), MaxRecvDataSegmentLength: 1 << 20}, w: pdu.Writer{W: nc}, cmdSN: 1}
}

func (ri *rawInit) send(h pdu.Header, data []byte) {
	ri.t.Helper()
	if err := ri.w.Write(&h, data); err != nil {
		ri.t.Fatalf("send %v: %v", h.Opcode, err)
	}
}

// recv reads one PDU, skipping NOP-In pings unless keepPings.
func (ri *rawInit) recv() (*pdu.PDU, error) {
	ri.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	p := new(pdu.PDU)
	err := ri.r.Read(p)
	if err == nil && p.Opcode != pdu.OpR2T && p.Opcode != pdu.OpSCSIDataIn && p.Opcode != pdu.OpLoginResponse {
		ri.expStatSN = p.StatSN + 1
	}
	return p, err
}

func (ri *rawInit) mustRecv(op pdu.Opcode) *pdu.PDU {
	ri.t.Helper()
	p, err := ri.recv()
	if err != nil {
		ri.t.Fatalf("waiting for %v: %v", op, err)
	}
	if p.Opcode != op {
		ri.t.Fatalf("got %v, want %v (%+v)", p.Opcode, op, p.Header)
	}
	return p
}

// closed reports whether the target closed the connection.
func (ri *rawInit) closed() bool {
	for range 100 {
		p, err := ri.recv()
		if err != nil {
			return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset")
		}
		p.Release()
	}
	return false
}

var testISID = [6]byte{0x80, 0, 0, 0, 0, 1}

// login logs in (no security stage) with the given keys; it returns the
// final Login Response.
func (ri *rawInit) login(isid [6]byte, tsih uint16, kvs ...login.KV) *pdu.PDU {
	ri.t.Helper()
	h := pdu.Header{
		Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.LoginFlags(pdu.StageOperational, pdu.StageFullFeature, true),
		ISID: isid, TSIH: tsih, InitiatorTaskTag: ri.nextITT(), CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN,
	}
	ri.send(h, login.EncodeText(nil, kvs))
	p := ri.mustRecv(pdu.OpLoginResponse)
	ri.expStatSN = p.StatSN + 1
	return p
}

// sendBadHeaderDigest sends a NOP-Out whose header digest is wrong.
func (ri *rawInit) sendBadHeaderDigest() {
	var b bytes.Buffer
	w := pdu.Writer{W: &b, HeaderDigest: true}
	w.Write(&pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: 99, TargetTransferTag: reservedTag}, nil)
	raw := b.Bytes()
	raw[pdu.BHSLength] ^= 0xff
	ri.nc.Write(raw)
}

// loginBoth logs testInitiator and otherInit in to testTarget, each past
// the unit attentions of its new nexus.
func loginBoth(t *testing.T, addr string) (a, b *rawInit) {
	t.Helper()
	a, b = dial(t, addr), dial(t, addr)
	a.loginOK()
	a.turGood()
	b.loginAs(otherInit)
	b.turGood()
	return a, b
}

func (ri *rawInit) nextITT() uint32 {
	ri.itt++
	return ri.itt
}

func normalKeys(initiator, target string, extra ...login.KV) []login.KV {
	return append([]login.KV{{Key: "InitiatorName", Value: initiator}, {Key: "TargetName", Value: target},
		{Key: "SessionType", Value: "Normal"}}, extra...)
}

func (ri *rawInit) loginOK(extra ...login.KV) *pdu.PDU {
	ri.t.Helper()
	return ri.loginAs(testInitiator, extra...)
}

// loginAs logs initiator in to testTarget and fails the test unless the
// target lets it in.
func (ri *rawInit) loginAs(initiator string, extra ...login.KV) *pdu.PDU {
	ri.t.Helper()
	p := ri.login(testISID, 0, normalKeys(initiator, testTarget, extra...)...)
	if p.StatusClass != 0 || p.TSIH == 0 || !p.Transit() {
		ri.t.Fatalf("login %s: status %d/%d TSIH %d flags %#x", initiator, p.StatusClass, p.StatusDetail, p.TSIH, p.Flags)
	}
	return p
}

// command sends a SCSI Command and collects Data-In until the status.
func (ri *rawInit) command(cdb []byte, edtl uint32, read bool, immediate []byte) (status byte, data []byte, resp pdu.Header) {
	ri.t.Helper()
	status, data, last := ri.exchange(0, cdb, edtl, read, immediate)
	return status, data, last.Header
}

// exchange sends a SCSI Command to lun and collects its Data-In until
// the status, which it returns with the PDU that carried it. A response
// for any other task (one that should have ended or been aborted) fails
// the test.
func (ri *rawInit) exchange(lun uint64, cdb []byte, edtl uint32, read bool, immediate []byte) (status byte, data []byte, last *pdu.PDU) {
	ri.t.Helper()
	h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.nextITT(),
		ExpectedDataTransferLength: edtl, CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN, LUN: lun << 48}
	ri.cmdSN++
	if read {
		h.Flags |= pdu.FlagRead
	}
	if immediate != nil {
		h.Flags |= pdu.FlagWrite
	}
	copy(h.CDB[:], cdb)
	ri.send(h, immediate)
	for {
		p, err := ri.recv()
		if err != nil {
			ri.t.Fatalf("command %#x: %v", cdb[0], err)
		}
		if p.Opcode == pdu.OpNOPIn {
			continue
		}
		if p.InitiatorTaskTag != h.InitiatorTaskTag {
			ri.t.Fatalf("command %#x (ITT %d): got %v for ITT %d", cdb[0], h.InitiatorTaskTag, p.Opcode, p.InitiatorTaskTag)
		}
		switch p.Opcode {
		case pdu.OpSCSIDataIn:
			if int(p.BufferOffset) != len(data) {
				ri.t.Fatalf("Data-In at offset %d, want %d", p.BufferOffset, len(data))
			}
			data = append(data, p.Data...)
			if p.Flags&pdu.FlagStatus != 0 {
				return p.Status(), data, p
			}
		case pdu.OpSCSIResponse:
			return p.Status(), data, p
		default:
			ri.t.Fatalf("command %#x: unexpected %v", cdb[0], p.Opcode)
		}
	}
}

func tur() []byte { return make([]byte, 6) }

func read10(lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = 0x28
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

func write10(lba uint32, blocks uint16) []byte {
	c := read10(lba, blocks)
	c[0] = 0x2a
	return c
}

// turGood retries TEST UNIT READY past the unit attentions of a new nexus.
func (ri *rawInit) turGood() {
	ri.t.Helper()
	for range 5 {
		if st, _, _ := ri.command(tur(), 0, false, nil); st == 0 {
			return
		}
	}
	ri.t.Fatal("TEST UNIT READY never GOOD")
}

func TestMisbehavingPeers(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20))

	// A SCSI Command before any login: refused, connection closed.
	ri := dial(t, ts.addr)
	ri.send(pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal, CDB: [16]byte{}}, nil)
	p := ri.mustRecv(pdu.OpLoginResponse)
	if p.StatusClass != 2 || !ri.closed() {
		t.Errorf("command before login: status %d/%d", p.StatusClass, p.StatusDetail)
	}

	// A login naming a session that does not exist (gotgt crashed here).
	ri = dial(t, ts.addr)
	p = ri.login(testISID, 0x1234, normalKeys(testInitiator, testTarget)...)
	if p.StatusClass != 2 || p.StatusDetail != 0x0a || !ri.closed() {
		t.Errorf("unknown TSIH: status %d/%d", p.StatusClass, p.StatusDetail)
	}

	// Missing InitiatorName, unknown target, unknown version.
	for _, tc := range []struct {
		name   string
		kvs    []login.KV
		status uint16
	}{
		{"no InitiatorName", []login.KV{{Key: "TargetName", Value: testTarget}}, statusMissingParam},
		{"unknown target", normalKeys(testInitiator, testBase+":nope"), statusNotFound},
		{"not in ACL", normalKeys(otherInit, testTarget), statusAuthorization},
		{"bad SessionType", []login.KV{{Key: "InitiatorName", Value: testInitiator}, {Key: "SessionType", Value: "Weird"}}, statusSessionType},
		{"malformed text", []login.KV{{Key: "InitiatorName", Value: testInitiator}, {Key: "Bad Key", Value: "x"}}, statusInitiatorError},
	} {
		ri = dial(t, ts.addr)
		p = ri.login(testISID, 0, tc.kvs...)
		if got := uint16(p.StatusClass)<<8 | uint16(p.StatusDetail); got != tc.status || !ri.closed() {
			t.Errorf("%s: status %#04x, want %#04x", tc.name, got, tc.status)
		}
	}

	// A truncated PDU, then silence.
	ri = dial(t, ts.addr)
	ri.nc.Write(make([]byte, 20))
	ri.nc.(*net.TCPConn).CloseWrite()
	if !ri.closed() {
		t.Error("truncated PDU: connection not closed")
	}

	// After login: an unknown opcode and an over-long data segment are
	// rejected, and the connection goes on serving.
	ri = dial(t, ts.addr)
	ri.loginOK(login.KV{Key: "MaxRecvDataSegmentLength", Value: "65536"})
	var bad [pdu.BHSLength]byte
	bad[0] = 0x1c
	bad[16] = 0x77
	ri.nc.Write(bad[:])
	p = ri.mustRecv(pdu.OpReject)
	if p.Reason() != pdu.RejectCommandNotSupported || !bytes.Equal(p.Data, bad[:]) {
		t.Errorf("unknown opcode: reason %#x, data % x", p.Reason(), p.Data)
	}
	big := make([]byte, login.OurMaxRecvDataSegmentLength+4)
	ri.send(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.nextITT(),
		TargetTransferTag: reservedTag, CmdSN: ri.cmdSN}, big)
	p = ri.mustRecv(pdu.OpReject)
	if p.Reason() != pdu.RejectProtocolError {
		t.Errorf("over-long data segment: reason %#x", p.Reason())
	}
	ri.turGood()

	// A well-behaved initiator is served throughout.
	good := dial(t, ts.addr)
	good.login([6]byte{0x80, 0, 0, 0, 0, 2}, 0, normalKeys(testInitiator, testTarget)...)
	good.turGood()
}

// TestNOPOutTakesCmdSN checks a non-immediate NOP-Out advances ExpCmdSN
// (gotgt hung here) and that commands after it are served.
func TestNOPOutTakesCmdSN(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20))
	ri := dial(t, ts.addr)
	lr := ri.loginOK()
	if got := lr.MaxCmdSN - lr.ExpCmdSN + 1; got != DefaultQueueDepth {
		t.Errorf("CmdSN window %d, want %d", got, DefaultQueueDepth)
	}
	for i := range 3 {
		ri.send(pdu.Header{Opcode: pdu.OpNOPOut, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.nextITT(),
			TargetTransferTag: reservedTag, CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN}, []byte("ping"))
		ri.cmdSN++
		p := ri.mustRecv(pdu.OpNOPIn)
		if p.ExpCmdSN != ri.cmdSN || string(p.Data) != "ping" || p.InitiatorTaskTag != ri.itt {
			t.Fatalf("NOP-In %d: ExpCmdSN %d want %d, data %q", i, p.ExpCmdSN, ri.cmdSN, p.Data)
		}
	}
	ri.turGood()
}

// TestDataInAndR2T drives reads split at a small MaxRecvDataSegmentLength
// and writes through R2T with small bursts.
func TestDataInAndR2T(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20))
	ri := dial(t, ts.addr)
	ri.loginOK(
		login.KV{Key: "MaxRecvDataSegmentLength", Value: "4096"},
		login.KV{Key: "InitialR2T", Value: "Yes"},
		login.KV{Key: "ImmediateData", Value: "No"},
		login.KV{Key: "MaxBurstLength", Value: "16384"},
		login.KV{Key: "FirstBurstLength", Value: "8192"},
		login.KV{Key: "MaxOutstandingR2T", Value: "2"},
	)
	ri.turGood()

	// WRITE(10) of 64 KiB at LBA 8: R2Ts of at most 16 KiB, two at a time.
	const n = 64 << 10
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite, InitiatorTaskTag: ri.nextITT(),
		ExpectedDataTransferLength: n, CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN}
	ri.cmdSN++
	copy(h.CDB[:], write10(8, n/512))
	ri.send(h, nil)
	var covered uint32
	var r2tSN uint32
	for done := false; !done; {
		p, err := ri.recv()
		if err != nil {
			t.Fatal(err)
		}
		switch p.Opcode {
		case pdu.OpR2T:
			if p.DataSN != r2tSN || p.DesiredDataTransferLength > 16384 || p.BufferOffset+p.DesiredDataTransferLength > n {
				t.Fatalf("R2T %+v", p.Header)
			}
			r2tSN++
			// Answer each R2T with 4 KiB Data-Outs.
			for off, sn := p.BufferOffset, uint32(0); off < p.BufferOffset+p.DesiredDataTransferLength; off, sn = off+4096, sn+1 {
				d := pdu.Header{Opcode: pdu.OpSCSIDataOut, InitiatorTaskTag: h.InitiatorTaskTag, TargetTransferTag: p.TargetTransferTag,
					DataSN: sn, BufferOffset: off, ExpStatSN: ri.expStatSN}
				if off+4096 == p.BufferOffset+p.DesiredDataTransferLength {
					d.Flags = pdu.FlagFinal
				}
				ri.send(d, payload[off:off+4096])
				covered += 4096
			}
		case pdu.OpSCSIResponse:
			if p.Status() != 0 || p.Response() != 0 {
				t.Fatalf("write status %#x response %#x", p.Status(), p.Response())
			}
			done = true
		default:
			t.Fatalf("unexpected %v", p.Opcode)
		}
	}
	if covered != n || r2tSN != 4 {
		t.Fatalf("R2Ts covered %d bytes in %d R2Ts", covered, r2tSN)
	}

	// READ(10) of the same: 16 Data-In PDUs of 4 KiB, status in the last.
	st, data, last := ri.command(read10(8, n/512), n, true, nil)
	if st != 0 || !bytes.Equal(data, payload) {
		t.Fatalf("read back: status %#x, %d bytes, equal %v", st, len(data), bytes.Equal(data, payload))
	}
	if last.DataSN != 15 || last.Flags&pdu.FlagFinal == 0 {
		t.Errorf("last Data-In: %+v", last)
	}
	// An allocation shorter than EDTL: underflow residual.
	st, _, last = ri.command(read10(0, 1), 4096, true, nil)
	if st != 0 || last.Flags&pdu.FlagUnderflow == 0 || last.ResidualCount != 4096-512 {
		t.Errorf("underflow: status %#x flags %#x residual %d", st, last.Flags, last.ResidualCount)
	}
	// EDTL shorter than the data: overflow, only EDTL bytes sent.
	st, data, last = ri.command(read10(0, 2), 512, true, nil)
	if st != 0 || len(data) != 512 || last.Flags&pdu.FlagOverflow == 0 || last.ResidualCount != 512 {
		t.Errorf("overflow: status %#x, %d bytes, flags %#x residual %d", st, len(data), last.Flags, last.ResidualCount)
	}
}

// TestDigestsRaw negotiates both digests and checks they are sent and
// checked: a corrupted header digest drops the connection.
func TestDigestsRaw(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20))
	ri := dial(t, ts.addr)
	lr := ri.loginOK(login.KV{Key: "HeaderDigest", Value: "CRC32C"}, login.KV{Key: "DataDigest", Value: "CRC32C,None"})
	kvs, _ := login.ParseText(lr.Data)
	want := map[string]string{"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}
	for _, kv := range kvs {
		if w, ok := want[kv.Key]; ok && kv.Value != w {
			t.Fatalf("%s=%s", kv.Key, kv.Value)
		}
		delete(want, kv.Key)
	}
	if len(want) != 0 {
		t.Fatalf("digests not answered: %v", kvs)
	}
	ri.r.HeaderDigest, ri.r.DataDigest, ri.w.HeaderDigest, ri.w.DataDigest = true, true, true, true
	ri.turGood()
	st, data, _ := ri.command(read10(0, 8), 4096, true, nil)
	if st != 0 || len(data) != 4096 {
		t.Fatalf("read with digests: status %#x, %d bytes", st, len(data))
	}
	// A header whose digest is wrong: the target drops the connection.
	ri.sendBadHeaderDigest()
	if !ri.closed() {
		t.Error("bad header digest: connection still open")
	}
}

func TestReinstatementAndMaxSessions(t *testing.T) {
	cfg := oneDisk(8 << 20)
	cfg.MaxSessions = 2
	ts := startServer(t, cfg)
	a := dial(t, ts.addr)
	a.loginOK()
	a.turGood()
	// Same initiator and ISID: the old session is closed, the new one works.
	b := dial(t, ts.addr)
	b.loginOK()
	if !a.closed() {
		t.Error("old session still open after reinstatement")
	}
	b.turGood()
	// A second ISID is a second session; a third is one too many.
	c := dial(t, ts.addr)
	if p := c.login([6]byte{0x80, 0, 0, 0, 0, 9}, 0, normalKeys(testInitiator, testTarget)...); p.StatusClass != 0 {
		t.Fatalf("second session: %d/%d", p.StatusClass, p.StatusDetail)
	}
	d := dial(t, ts.addr)
	p := d.login([6]byte{0x80, 0, 0, 0, 0, 10}, 0, normalKeys(testInitiator, testTarget)...)
	if got := uint16(p.StatusClass)<<8 | uint16(p.StatusDetail); got != statusOutOfResources {
		t.Errorf("session beyond MaxSessions: status %#04x", got)
	}
	if n := len(ts.Sessions()); n != 2 {
		t.Errorf("%d sessions listed, want 2", n)
	}
}

func TestTimeouts(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20), func(s *Server) {
		s.LoginTimeout = 200 * time.Millisecond
		s.NOPInterval = 100 * time.Millisecond
		s.NOPTimeout = 300 * time.Millisecond
	})

	// A login that never completes is dropped.
	idle := dial(t, ts.addr)
	if !idle.closed() {
		t.Error("silent connection not dropped")
	}

	// An idle session gets NOP-In pings; answering keeps it alive.
	ri := dial(t, ts.addr)
	ri.loginOK()
	for range 5 {
		p := ri.mustRecv(pdu.OpNOPIn)
		if p.InitiatorTaskTag != reservedTag || p.TargetTransferTag == reservedTag {
			t.Fatalf("ping %+v", p.Header)
		}
		ri.send(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: reservedTag,
			TargetTransferTag: p.TargetTransferTag, CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN}, nil)
	}
	ri.turGood()
	// Stop answering: the target drops the dead peer.
	if !ri.closed() {
		t.Error("unanswered pings: connection not dropped")
	}
}

func TestReload(t *testing.T) {
	cfg := oneDisk(8<<20, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit})
	ts := startServer(t, cfg)
	a, b := loginBoth(t, ts.addr)

	// Unchanged config: both sessions go on.
	if err := ts.Reload(cloneConfig(ts, cfg)); err != nil {
		t.Fatal(err)
	}
	a.turGood()
	b.turGood()

	// otherInit leaves the ACL and a target is added: its session is dropped,
	// testInitiator's is kept, the new target is listed.
	next := cloneConfig(ts, cfg)
	next.Targets[0].ACL = next.Targets[0].ACL[:1]
	next.Targets = append(next.Targets, Target{IQN: testBase + ":new", LUNs: []LUN{{Number: 0, Path: ts.dir + "/new.img", Size: 1 << 20}}})
	if err := ts.Reload(next); err != nil {
		t.Fatal(err)
	}
	if !b.closed() {
		t.Error("session of a removed ACL entry survived the reload")
	}
	a.turGood()
	if len(ts.Sessions()) != 1 {
		t.Errorf("sessions after reload: %+v", ts.Sessions())
	}
	// A LUN added to the target keeps the session: it learns of the new LUN
	// through REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh), then REPORT LUNS.
	grown := cloneConfig(ts, next)
	grown.Targets[0].LUNs = append(grown.Targets[0].LUNs, LUN{Number: 1, Path: ts.dir + "/lun1.img", Size: 1 << 20})
	if err := ts.Reload(grown); err != nil {
		t.Fatal(err)
	}
	st, _, sense := a.commandLUN(0, tur(), 0, false, nil)
	if st != 2 || len(sense) < 14 || sense[2]&0x0f != 6 || sense[12] != 0x3f || sense[13] != 0x0e {
		t.Errorf("after adding a LUN: status %#x sense % x, want REPORTED LUNS DATA HAS CHANGED", st, sense)
	}
	reportLUNs := make([]byte, 12)
	reportLUNs[0] = 0xa0
	reportLUNs[9] = 255
	if st, data, _ := a.commandLUN(0, reportLUNs, 255, true, nil); st != 0 || len(data) != 24 || data[17] != 1 {
		t.Errorf("REPORT LUNS after adding LUN 1: status %#x data % x", st, data)
	}
	next = grown

	// An invalid config changes nothing.
	bad := cloneConfig(ts, next)
	bad.Targets = append(bad.Targets, bad.Targets[0])
	if err := ts.Reload(bad); err == nil {
		t.Error("duplicate target accepted")
	}
	a.turGood()
}

// cloneConfig copies cfg with the absolute image paths startServer chose.
func cloneConfig(ts *testServer, cfg Config) Config {
	out := cfg
	out.Listen = []string{"127.0.0.1:0"}
	out.StateDir = ts.dir
	out.Targets = nil
	for _, tg := range cfg.Targets {
		tg.LUNs = append([]LUN(nil), tg.LUNs...)
		for i := range tg.LUNs {
			if !strings.HasPrefix(tg.LUNs[i].Path, "/") {
				tg.LUNs[i].Path = ts.dir + "/" + tg.LUNs[i].Path
			}
		}
		tg.ACL = append([]ACL(nil), tg.ACL...)
		out.Targets = append(out.Targets, tg)
	}
	return out
}

// TestShutdownAsksLogout checks Serve asks logged-in initiators to log out
// and returns once they have gone.
func TestShutdownAsksLogout(t *testing.T) {
	addr, cancel, done := serveOwn(t, nil)
	ri := dial(t, addr)
	ri.loginOK()
	ri.turGood()
	cancel()
	p := ri.mustRecv(pdu.OpAsyncMessage)
	if p.AsyncEvent != 1 {
		t.Fatalf("async event %d, want 1 (logout requested)", p.AsyncEvent)
	}
	ri.send(pdu.Header{Opcode: pdu.OpLogoutRequest, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.nextITT(),
		CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN}, nil)
	lp := ri.mustRecv(pdu.OpLogoutResponse)
	if lp.Response() != 0 {
		t.Errorf("logout response %d", lp.Response())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("tcp", ri.nc.RemoteAddr().String()); err == nil {
		t.Error("still listening after Serve returned")
	}
}

// commandLUN is command addressed to a LUN (single-level, SAM-5 4.7),
// returning the sense data of a SCSI Response (nil after a status carried
// in Data-In).
func (ri *rawInit) commandLUN(lun uint64, cdb []byte, edtl uint32, read bool, immediate []byte) (status byte, data, sense []byte) {
	ri.t.Helper()
	status, data, last := ri.exchange(lun, cdb, edtl, read, immediate)
	if last.Opcode == pdu.OpSCSIResponse {
		sense = responseSense(last)
	}
	return status, data, sense
}

// TestACLMapAndWriteProtect checks an ACL's LUN map (REPORT LUNS, which LU
// a LUN reaches, unmapped LUNs) and write protection.
func TestACLMapAndWriteProtect(t *testing.T) {
	cfg := Config{Targets: []Target{{
		IQN:  testTarget,
		LUNs: []LUN{{Number: 0, Path: "l0.img", Size: 1 << 20}, {Number: 1, Path: "l1.img", Size: 1 << 20}},
		ACL: []ACL{
			{Initiator: testInitiator, Map: map[uint64]uint64{3: 1}},
			{Initiator: otherInit, WriteProtect: true},
		},
	}}}
	ts := startServer(t, cfg)
	ri := dial(t, ts.addr)
	ri.loginOK()

	reportLUNs := make([]byte, 12)
	reportLUNs[0] = 0xa0
	reportLUNs[9] = 255
	st, data, _ := ri.commandLUN(3, reportLUNs, 255, true, nil)
	if st != 0 || len(data) != 16 || data[3] != 8 || data[9] != 3 {
		t.Fatalf("REPORT LUNS: status %#x data % x", st, data)
	}
	// Initiator LUN 3 is target LUN 1: what it writes lands in l1.img.
	for range 3 {
		if st, _, _ = ri.commandLUN(3, tur(), 0, false, nil); st == 0 {
			break
		}
	}
	block := bytes.Repeat([]byte{0x3c}, 512)
	if st, _, sense := ri.commandLUN(3, write10(1, 1), 512, false, block); st != 0 {
		t.Fatalf("write through the map: status %#x sense % x", st, sense)
	}
	img, err := os.ReadFile(filepath.Join(ts.dir, "l1.img"))
	if err != nil || !bytes.Equal(img[512:1024], block) {
		t.Fatalf("l1.img does not hold the write (%v)", err)
	}
	// Unmapped LUN 0: LOGICAL UNIT NOT SUPPORTED (ILLEGAL REQUEST, 25h).
	st, _, sense := ri.commandLUN(0, read10(0, 1), 512, true, nil)
	if st != 2 || len(sense) < 14 || sense[2]&0x0f != 5 || sense[12] != 0x25 {
		t.Errorf("unmapped LUN: status %#x sense % x", st, sense)
	}

	// otherInit sees both LUNs, read-only.
	wp := dial(t, ts.addr)
	wp.login(testISID, 0, normalKeys(otherInit, testTarget)...)
	for range 3 {
		if st, _, _ = wp.commandLUN(1, tur(), 0, false, nil); st == 0 {
			break
		}
	}
	if st, data, _ := wp.commandLUN(1, read10(1, 1), 512, true, nil); st != 0 || !bytes.Equal(data, block) {
		t.Errorf("read-only read: status %#x", st)
	}
	st, _, sense = wp.commandLUN(1, write10(1, 1), 512, false, block)
	if st != 2 || len(sense) < 14 || sense[2]&0x0f != 7 || sense[12] != 0x27 {
		t.Errorf("write through a write_protect ACL: status %#x sense % x", st, sense)
	}
}

// TestLogoutAndReopenTarget replaces a target's image under a running
// server, as `netsan image reset --force` does.
func TestLogoutAndReopenTarget(t *testing.T) {
	ts := startServer(t, oneDisk(1<<20), func(s *Server) { s.LogoutGrace = 2 * time.Second })
	ri := dial(t, ts.addr)
	ri.loginOK()
	ri.turGood()
	done := make(chan error, 1)
	go func() { done <- ts.LogoutTarget(testTarget) }()
	p := ri.mustRecv(pdu.OpAsyncMessage)
	if p.AsyncEvent != 1 {
		t.Fatalf("async event %d", p.AsyncEvent)
	}
	ri.send(pdu.Header{Opcode: pdu.OpLogoutRequest, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.nextITT(),
		CmdSN: ri.cmdSN, ExpStatSN: ri.expStatSN}, nil)
	ri.mustRecv(pdu.OpLogoutResponse)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ts.LogoutTarget(testBase + ":nope"); err == nil {
		t.Error("LogoutTarget of an unknown target: no error")
	}

	// Replace the image with one full of 0x77, reopen, read it.
	img := filepath.Join(ts.dir, "disk0.img")
	if err := os.WriteFile(img+".new", bytes.Repeat([]byte{0x77}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(img+".new", img); err != nil {
		t.Fatal(err)
	}
	stale := dial(t, ts.addr)
	stale.loginOK()
	stale.turGood()
	if err := ts.ReopenTarget(testTarget); err != nil {
		t.Fatal(err)
	}
	if !stale.closed() {
		t.Error("session on the old image survived the reopen")
	}
	fresh := dial(t, ts.addr)
	fresh.loginOK()
	fresh.turGood()
	st, data, _ := fresh.command(read10(0, 1), 512, true, nil)
	if st != 0 || !bytes.Equal(data, bytes.Repeat([]byte{0x77}, 512)) {
		t.Fatalf("after reopen: status %#x data % x…", st, data[:min(8, len(data))])
	}
}

// TestSessionBytes checks Sessions counts each session's own data exactly:
// Data-Out received for writes, Data-In sent for reads (no more than the
// initiator's expected length), nothing for commands without data.
func TestSessionBytes(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit}))
	a, b := loginBoth(t, ts.addr)

	if st, _, _ := a.command(write10(0, 8), 4096, false, bytes.Repeat([]byte{0x5a}, 4096)); st != 0 {
		t.Fatalf("write: status %#x", st)
	}
	if st, data, _ := a.command(read10(0, 24), 12288, true, nil); st != 0 || len(data) != 12288 {
		t.Fatalf("read: status %#x, %d bytes", st, len(data))
	}
	if st, data, _ := b.command(read10(0, 2), 1024, true, nil); st != 0 || len(data) != 1024 {
		t.Fatalf("read: status %#x, %d bytes", st, len(data))
	}
	// Two blocks asked for, 512 bytes expected: 512 go out (overflow).
	if st, data, _ := b.command(read10(0, 2), 512, true, nil); st != 0 || len(data) != 512 {
		t.Fatalf("short read: status %#x, %d bytes", st, len(data))
	}

	want := map[string][2]uint64{testInitiator: {12288, 4096}, otherInit: {1536, 0}}
	ss := ts.Sessions()
	if len(ss) != 2 {
		t.Fatalf("%d sessions: %+v", len(ss), ss)
	}
	for _, s := range ss {
		if got := [2]uint64{s.ReadBytes, s.WrittenBytes}; got != want[s.Initiator] {
			t.Errorf("%s: read %d written %d, want %d and %d", s.Initiator, got[0], got[1], want[s.Initiator][0], want[s.Initiator][1])
		}
	}
}
