package iscsi

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/netsantest"
)

// halfLogin sends a first Login Request that stays in the operational
// stage (no transit), reads its answer, and then says nothing more.
func (ri *rawInit) halfLogin(isid [6]byte) {
	ri.t.Helper()
	ri.NextITT()
	h, text := ri.LoginRequest(isid, 0, iscsitest.NormalKeys(testInitiator, testTarget)...)
	h.Flags = pdu.LoginFlags(pdu.StageOperational, 0, false)
	ri.send(h, text)
	if p := ri.mustRecv(pdu.OpLoginResponse); p.StatusClass != 0 || p.Transit() {
		ri.t.Fatalf("half login: status %d/%d flags %#x", p.StatusClass, p.StatusDetail, p.Flags)
	}
}

// loginGauges reads the pending and evicted logins from the Server's
// collector, as /metrics shows them.
func loginGauges(t *testing.T, s *Server) (pending, evicted float64) {
	t.Helper()
	for _, mf := range netsantest.Gather(t, s) {
		switch mf.GetName() {
		case "netsan_iscsi_logins_pending":
			pending = mf.GetMetric()[0].GetGauge().GetValue()
		case "netsan_iscsi_logins_evicted_total":
			evicted = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return pending, evicted
}

// TestPendingLoginsBound: three times MaxPendingLogins half-finished
// logins. The target holds at most the bound, closes the oldest first, and
// a real initiator arriving during the flood logs in while the newest half
// logins are still held open.
func TestPendingLoginsBound(t *testing.T) {
	const bound = 8
	ts := startServer(t, oneDisk(8<<20), func(s *Server) { s.MaxPendingLogins = bound })

	var flood []*rawInit
	for i := range 3 * bound {
		ri := dial(t, ts.addr)
		ri.halfLogin([6]byte{0x80, 0, 0, 0x70, 0, byte(i)})
		flood = append(flood, ri)
	}
	pending, evicted := loginGauges(t, ts.Server)
	if pending != bound || evicted != 2*bound {
		t.Fatalf("after %d half logins: %v pending, %v evicted; want %d and %d", 3*bound, pending, evicted, bound, 2*bound)
	}
	for i, ri := range flood[:2*bound] {
		if !ri.closed() {
			t.Errorf("half login %d (of the oldest) not closed by the target", i)
		}
	}

	// The good initiator is the newest: it evicts the oldest pending half
	// login and completes, while the other newest ones stay open.
	good := dial(t, ts.addr)
	good.loginOK()
	good.turGood()
	pending, evicted = loginGauges(t, ts.Server)
	if pending != bound-1 || evicted != 2*bound+1 {
		t.Errorf("after the good login: %v pending, %v evicted; want %d and %d", pending, evicted, bound-1, 2*bound+1)
	}
	held := 0
	ts.portal.each(func(c *conn) {
		if c.pending != nil {
			held++
		}
	})
	if held != bound-1 {
		t.Errorf("%d connections pending in the server, want %d", held, bound-1)
	}
	// The held ones are not closed: a Login Request on them still works.
	last := flood[len(flood)-1]
	last.NextITT()
	h, _ := last.LoginRequest([6]byte{0x80, 0, 0, 0x70, 0, 3*bound - 1}, 0)
	last.send(h, nil)
	if p := last.mustRecv(pdu.OpLoginResponse); p.StatusClass != 0 || p.TSIH == 0 {
		t.Errorf("newest half login could not finish: status %d/%d", p.StatusClass, p.StatusDetail)
	}
	last.turGood()
}

// TestPendingLoginMemory: the heap a half-finished login holds. A flood of
// MaxPendingLogins such connections is what an unauthenticated peer can
// make the target keep, so each must cost little until it logs in: no
// full-feature read buffer, no output queue.
func TestPendingLoginMemory(t *testing.T) {
	const n = 200
	ts := startServer(t, oneDisk(8<<20))

	// The peers are plain sockets, so that the heap measured is the target's.
	text := login.EncodeText(nil, iscsitest.NormalKeys(testInitiator, testTarget))
	peers := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, nc := range peers {
			nc.Close()
		}
	})
	before, stackBefore := heapInUse()
	for i := range n {
		nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, nc)
		halfLoginRaw(t, nc, [6]byte{0x80, 0, 0, 0x71, byte(i >> 8), byte(i)}, text)
	}
	if pending, _ := loginGauges(t, ts.Server); pending != n {
		t.Fatalf("%v logins pending, want %d", pending, n)
	}
	after, stackAfter := heapInUse()
	per := (int64(after) - int64(before)) / n
	t.Logf("heap in use: %d KiB before, %d KiB with %d pending logins: %d bytes each (and %d bytes of goroutine stack)",
		before>>10, after>>10, n, per, (int64(stackAfter)-int64(stackBefore))/n)
	// About 14 KiB are measured: the 4 KiB login buffer, the conn, the
	// socket, the login state and loggers. Either full-feature cost made
	// during login, the 64 KiB read buffer or the output queue (24 KiB with
	// the default QueueDepth), goes past the bound.
	const bound = 24 << 10
	if per > bound {
		t.Errorf("a pending login holds %d bytes of heap, want at most %d", per, bound)
	}
	runtime.KeepAlive(peers)
}

// heapInUse is the heap in use once garbage is collected (the second GC
// empties the sync.Pools the first one only moved aside), and the memory
// of goroutine stacks, which is apart from the heap.
func heapInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

// halfLoginRaw is halfLogin on a bare socket: a first Login Request that
// stays in the operational stage, then its answer read and nothing more.
func halfLoginRaw(t *testing.T, nc net.Conn, isid [6]byte, text []byte) {
	t.Helper()
	w := pdu.Writer{W: nc}
	if err := w.Write(&pdu.Header{
		Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.LoginFlags(pdu.StageOperational, 0, false),
		ISID: isid, InitiatorTaskTag: 1, CmdSN: 1,
	}, text); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var bhs [pdu.BHSLength]byte
	if _, err := io.ReadFull(nc, bhs[:]); err != nil {
		t.Fatalf("login response: %v", err)
	}
	var h pdu.Header
	if err := h.Decode(bhs[:]); err != nil {
		t.Fatal(err)
	}
	if h.Opcode != pdu.OpLoginResponse || h.StatusClass != 0 || h.Transit() {
		t.Fatalf("half login: %v status %d/%d flags %#x", h.Opcode, h.StatusClass, h.StatusDetail, h.Flags)
	}
	if _, err := io.CopyN(io.Discard, nc, int64(h.DataSegmentLength+pdu.Pad(h.DataSegmentLength))); err != nil {
		t.Fatalf("login response data: %v", err)
	}
}

// TestCommandsPipelinedBehindLogin: an initiator may send commands right
// behind its last Login Request, without waiting for the Login Response.
// They land in the small login buffer, more than it holds, and must all
// survive the switch to the full-feature buffer.
func TestCommandsPipelinedBehindLogin(t *testing.T) {
	ts := startServer(t, oneDisk(8<<20))
	ri := dial(t, ts.addr)
	ri.NextITT()
	h, text := ri.LoginRequest(testISID, 0, iscsitest.NormalKeys(testInitiator, testTarget)...)
	ri.W.Queue(&h, text)
	var pings [][]byte
	for i := range 6 {
		ping := bytes.Repeat([]byte{'a' + byte(i)}, 1000+i)
		pings = append(pings, ping)
		ri.W.Queue(&pdu.Header{Opcode: pdu.OpNOPOut, Flags: pdu.FlagFinal, InitiatorTaskTag: ri.NextITT(),
			TargetTransferTag: reservedTag, CmdSN: ri.CmdSN}, ping)
		ri.CmdSN++
	}
	if n := ri.W.Queued(); n <= loginBuffer {
		t.Fatalf("%d bytes pipelined, want more than the %d-byte login buffer", n, loginBuffer)
	}
	if err := ri.W.Flush(); err != nil {
		t.Fatal(err)
	}
	if p := ri.mustRecv(pdu.OpLoginResponse); p.StatusClass != 0 || !p.Transit() {
		t.Fatalf("login: status %d/%d flags %#x", p.StatusClass, p.StatusDetail, p.Flags)
	}
	for i, ping := range pings {
		p := ri.mustRecv(pdu.OpNOPIn)
		if p.InitiatorTaskTag != uint32(i+2) || !bytes.Equal(p.Data, ping) {
			t.Fatalf("NOP-In %d: ITT %d, %d bytes of data, want ITT %d and the %d bytes sent", i, p.InitiatorTaskTag, len(p.Data), i+2, len(ping))
		}
		p.Release()
	}
	ri.turGood()
}
