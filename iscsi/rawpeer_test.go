package iscsi

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// rawInit is iscsitest's initiator bound to a test: an I/O error, or an
// answer a method cannot take, fails it.
type rawInit struct {
	*iscsitest.Initiator
	t *testing.T
}

func dial(t *testing.T, addr string) *rawInit {
	t.Helper()
	in, err := iscsitest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return &rawInit{Initiator: in, t: t}
}

func (ri *rawInit) send(h pdu.Header, data []byte) {
	ri.t.Helper()
	if err := ri.Send(h, data); err != nil {
		ri.t.Fatal(err)
	}
}

func (ri *rawInit) mustRecv(op pdu.Opcode) *pdu.PDU {
	ri.t.Helper()
	p, err := ri.RecvOp(op)
	if err != nil {
		ri.t.Fatal(err)
	}
	return p
}

// closed reports whether the target closed the connection.
func (ri *rawInit) closed() bool {
	_, err := ri.UntilClosed()
	return err == nil
}

var testISID = [6]byte{0x80, 0, 0, 0, 0, 1}

// login logs in (no security stage) with the given keys; it returns the
// final Login Response, a refusal included.
func (ri *rawInit) login(isid [6]byte, tsih uint16, kvs ...login.KV) *pdu.PDU {
	ri.t.Helper()
	p, err := ri.Login(isid, tsih, kvs...)
	if err != nil && (p == nil || p.Opcode != pdu.OpLoginResponse) {
		ri.t.Fatal(err)
	}
	return p
}

// sendBadHeaderDigest sends a NOP-Out whose header digest is wrong.
func (ri *rawInit) sendBadHeaderDigest() {
	ri.t.Helper()
	if _, err := ri.SendBadDigest(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: 99,
		TargetTransferTag: reservedTag}, nil, true); err != nil {
		ri.t.Fatal(err)
	}
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

func (ri *rawInit) loginOK(extra ...login.KV) *pdu.PDU {
	ri.t.Helper()
	return ri.loginAs(testInitiator, extra...)
}

// loginAs logs initiator in to testTarget and fails the test unless the
// target lets it in.
func (ri *rawInit) loginAs(initiator string, extra ...login.KV) *pdu.PDU {
	ri.t.Helper()
	p, err := ri.Login(testISID, 0, iscsitest.NormalKeys(initiator, testTarget, extra...)...)
	if err != nil {
		ri.t.Fatalf("login %s: %v", initiator, err)
	}
	return p
}

// command is Initiator.Command; an error fails the test.
func (ri *rawInit) command(lun uint64, cdb, out []byte, readLen uint32) iscsitest.Result {
	ri.t.Helper()
	res, err := ri.Command(lun, cdb, out, readLen)
	if err != nil {
		ri.t.Fatal(err)
	}
	return res
}

// turGood retries TEST UNIT READY past the unit attentions of a new nexus.
func (ri *rawInit) turGood() {
	ri.t.Helper()
	if res, err := ri.CommandPastUA(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
		ri.t.Fatalf("TEST UNIT READY never GOOD: %v, status %#x sense % x", err, res.Status, res.Sense)
	}
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
	p = ri.login(testISID, 0x1234, iscsitest.NormalKeys(testInitiator, testTarget)...)
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
		{"unknown target", iscsitest.NormalKeys(testInitiator, testBase+":nope"), statusNotFound},
		{"not in ACL", iscsitest.NormalKeys(otherInit, testTarget), statusAuthorization},
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
	if err := ri.SendTruncated(pdu.Header{}, nil, 20); err != nil {
		t.Fatal(err)
	}
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
	ri.Conn.Write(bad[:])
	p = ri.mustRecv(pdu.OpReject)
	if p.Reason() != pdu.RejectCommandNotSupported || !bytes.Equal(p.Data, bad[:]) {
		t.Errorf("unknown opcode: reason %#x, data % x", p.Reason(), p.Data)
	}
	big := make([]byte, login.OurMaxRecvDataSegmentLength+4)
	ri.send(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.NextITT(),
		TargetTransferTag: reservedTag, CmdSN: ri.CmdSN}, big)
	p = ri.mustRecv(pdu.OpReject)
	if p.Reason() != pdu.RejectProtocolError {
		t.Errorf("over-long data segment: reason %#x", p.Reason())
	}
	ri.turGood()

	// A well-behaved initiator is served throughout.
	good := dial(t, ts.addr)
	good.login([6]byte{0x80, 0, 0, 0, 0, 2}, 0, iscsitest.NormalKeys(testInitiator, testTarget)...)
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
		ri.send(pdu.Header{Opcode: pdu.OpNOPOut, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.NextITT(),
			TargetTransferTag: reservedTag, CmdSN: ri.CmdSN, ExpStatSN: ri.ExpStatSN}, []byte("ping"))
		ri.CmdSN++
		p := ri.mustRecv(pdu.OpNOPIn)
		if p.ExpCmdSN != ri.CmdSN || string(p.Data) != "ping" || p.InitiatorTaskTag != ri.ITT {
			t.Fatalf("NOP-In %d: ExpCmdSN %d want %d, data %q", i, p.ExpCmdSN, ri.CmdSN, p.Data)
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
	h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite, InitiatorTaskTag: ri.NextITT(),
		ExpectedDataTransferLength: n, CmdSN: ri.CmdSN, ExpStatSN: ri.ExpStatSN}
	ri.CmdSN++
	copy(h.CDB[:], iscsitest.Write10(8, n/512))
	ri.send(h, nil)
	var covered uint32
	var r2tSN uint32
	for done := false; !done; {
		p, err := ri.Recv()
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
					DataSN: sn, BufferOffset: off, ExpStatSN: ri.ExpStatSN}
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
	res := ri.command(0, iscsitest.Read10(8, n/512), nil, n)
	if res.Status != 0 || !bytes.Equal(res.Data, payload) {
		t.Fatalf("read back: status %#x, %d bytes, equal %v", res.Status, len(res.Data), bytes.Equal(res.Data, payload))
	}
	if last := res.Last; last.DataSN != 15 || last.Flags&pdu.FlagFinal == 0 {
		t.Errorf("last Data-In: %+v", last.Header)
	}
	// An allocation shorter than EDTL: underflow residual.
	res = ri.command(0, iscsitest.Read10(0, 1), nil, 4096)
	if last := res.Last; res.Status != 0 || last.Flags&pdu.FlagUnderflow == 0 || last.ResidualCount != 4096-512 {
		t.Errorf("underflow: status %#x flags %#x residual %d", res.Status, last.Flags, last.ResidualCount)
	}
	// EDTL shorter than the data: overflow, only EDTL bytes sent.
	res = ri.command(0, iscsitest.Read10(0, 2), nil, 512)
	if last := res.Last; res.Status != 0 || len(res.Data) != 512 || last.Flags&pdu.FlagOverflow == 0 || last.ResidualCount != 512 {
		t.Errorf("overflow: status %#x, %d bytes, flags %#x residual %d", res.Status, len(res.Data), last.Flags, last.ResidualCount)
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
	// Login took the digests up: what follows is framed with them.
	if !ri.R.HeaderDigest || !ri.R.DataDigest || !ri.W.HeaderDigest || !ri.W.DataDigest {
		t.Fatal("initiator not using the digests it negotiated")
	}
	ri.turGood()
	if res := ri.command(0, iscsitest.Read10(0, 8), nil, 4096); res.Status != 0 || len(res.Data) != 4096 {
		t.Fatalf("read with digests: status %#x, %d bytes", res.Status, len(res.Data))
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
	if p := c.login([6]byte{0x80, 0, 0, 0, 0, 9}, 0, iscsitest.NormalKeys(testInitiator, testTarget)...); p.StatusClass != 0 {
		t.Fatalf("second session: %d/%d", p.StatusClass, p.StatusDetail)
	}
	d := dial(t, ts.addr)
	p := d.login([6]byte{0x80, 0, 0, 0, 0, 10}, 0, iscsitest.NormalKeys(testInitiator, testTarget)...)
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
	ri.KeepPings = true // this test answers them, then stops
	ri.loginOK()
	for range 5 {
		p := ri.mustRecv(pdu.OpNOPIn)
		if p.InitiatorTaskTag != reservedTag || p.TargetTransferTag == reservedTag {
			t.Fatalf("ping %+v", p.Header)
		}
		ri.send(pdu.Header{Opcode: pdu.OpNOPOut, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: reservedTag,
			TargetTransferTag: p.TargetTransferTag, CmdSN: ri.CmdSN, ExpStatSN: ri.ExpStatSN}, nil)
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
	res := a.command(0, iscsitest.TUR(), nil, 0)
	if sense := res.Sense; res.Status != 2 || len(sense) < 14 || sense[2]&0x0f != 6 || sense[12] != 0x3f || sense[13] != 0x0e {
		t.Errorf("after adding a LUN: status %#x sense % x, want REPORTED LUNS DATA HAS CHANGED", res.Status, sense)
	}
	if res := a.command(0, iscsitest.ReportLUNs(255), nil, 255); res.Status != 0 || len(res.Data) != 24 || res.Data[17] != 1 {
		t.Errorf("REPORT LUNS after adding LUN 1: status %#x data % x", res.Status, res.Data)
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
	if err := ri.Logout(); err != nil {
		t.Error(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("tcp", ri.Conn.RemoteAddr().String()); err == nil {
		t.Error("still listening after Serve returned")
	}
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

	res := ri.command(3, iscsitest.ReportLUNs(255), nil, 255)
	if data := res.Data; res.Status != 0 || len(data) != 16 || data[3] != 8 || data[9] != 3 {
		t.Fatalf("REPORT LUNS: status %#x data % x", res.Status, data)
	}
	// Initiator LUN 3 is target LUN 1: what it writes lands in l1.img.
	ri.CommandPastUA(3, iscsitest.TUR(), nil, 0)
	block := bytes.Repeat([]byte{0x3c}, 512)
	if res := ri.command(3, iscsitest.Write10(1, 1), block, 0); res.Status != 0 {
		t.Fatalf("write through the map: status %#x sense % x", res.Status, res.Sense)
	}
	img, err := os.ReadFile(filepath.Join(ts.dir, "l1.img"))
	if err != nil || !bytes.Equal(img[512:1024], block) {
		t.Fatalf("l1.img does not hold the write (%v)", err)
	}
	// Unmapped LUN 0: LOGICAL UNIT NOT SUPPORTED (ILLEGAL REQUEST, 25h).
	res = ri.command(0, iscsitest.Read10(0, 1), nil, 512)
	if sense := res.Sense; res.Status != 2 || len(sense) < 14 || sense[2]&0x0f != 5 || sense[12] != 0x25 {
		t.Errorf("unmapped LUN: status %#x sense % x", res.Status, sense)
	}

	// otherInit sees both LUNs, read-only.
	wp := dial(t, ts.addr)
	wp.login(testISID, 0, iscsitest.NormalKeys(otherInit, testTarget)...)
	wp.CommandPastUA(1, iscsitest.TUR(), nil, 0)
	if res := wp.command(1, iscsitest.Read10(1, 1), nil, 512); res.Status != 0 || !bytes.Equal(res.Data, block) {
		t.Errorf("read-only read: status %#x", res.Status)
	}
	res = wp.command(1, iscsitest.Write10(1, 1), block, 0)
	if sense := res.Sense; res.Status != 2 || len(sense) < 14 || sense[2]&0x0f != 7 || sense[12] != 0x27 {
		t.Errorf("write through a write_protect ACL: status %#x sense % x", res.Status, sense)
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
	if err := ri.Logout(); err != nil {
		t.Fatal(err)
	}
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
	res := fresh.command(0, iscsitest.Read10(0, 1), nil, 512)
	if res.Status != 0 || !bytes.Equal(res.Data, bytes.Repeat([]byte{0x77}, 512)) {
		t.Fatalf("after reopen: status %#x data % x…", res.Status, res.Data[:min(8, len(res.Data))])
	}
}

// TestSessionBytes checks Sessions counts each session's own data exactly:
// Data-Out received for writes, Data-In sent for reads (no more than the
// initiator's expected length), nothing for commands without data.
func TestSessionBytes(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit}))
	a, b := loginBoth(t, ts.addr)

	if res := a.command(0, iscsitest.Write10(0, 8), bytes.Repeat([]byte{0x5a}, 4096), 0); res.Status != 0 {
		t.Fatalf("write: status %#x", res.Status)
	}
	if res := a.command(0, iscsitest.Read10(0, 24), nil, 12288); res.Status != 0 || len(res.Data) != 12288 {
		t.Fatalf("read: status %#x, %d bytes", res.Status, len(res.Data))
	}
	if res := b.command(0, iscsitest.Read10(0, 2), nil, 1024); res.Status != 0 || len(res.Data) != 1024 {
		t.Fatalf("read: status %#x, %d bytes", res.Status, len(res.Data))
	}
	// Two blocks asked for, 512 bytes expected: 512 go out (overflow).
	if res := b.command(0, iscsitest.Read10(0, 2), nil, 512); res.Status != 0 || len(res.Data) != 512 {
		t.Fatalf("short read: status %#x, %d bytes", res.Status, len(res.Data))
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
