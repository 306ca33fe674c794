package iscsi

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// halfLogin sends a first Login Request that stays in the operational
// stage (no transit), reads its answer, and then says nothing more.
func (ri *rawInit) halfLogin(isid [6]byte) {
	ri.t.Helper()
	ri.send(pdu.Header{
		Opcode: pdu.OpLoginRequest, Immediate: true, Flags: stageOperational << 2,
		ISID: isid, InitiatorTaskTag: ri.nextITT(), CmdSN: ri.cmdSN,
	}, login.EncodeText(nil, normalKeys(testInitiator, testTarget)))
	if p := ri.mustRecv(pdu.OpLoginResponse); p.StatusClass != 0 || p.Flags&pdu.FlagTransit != 0 {
		ri.t.Fatalf("half login: status %d/%d flags %#x", p.StatusClass, p.StatusDetail, p.Flags)
	}
}

// loginGauges reads the pending and evicted logins from the Server's
// collector, as /metrics shows them.
func loginGauges(t *testing.T, s *Server) (pending, evicted float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
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
	ts.mu.Lock()
	held := 0
	for c := range ts.conns {
		if c.pending != nil {
			held++
		}
	}
	ts.mu.Unlock()
	if held != bound-1 {
		t.Errorf("%d connections pending in the server, want %d", held, bound-1)
	}
	// The held ones are not closed: a Login Request on them still works.
	last := flood[len(flood)-1]
	last.send(pdu.Header{
		Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.FlagTransit | stageOperational<<2 | stageFullFeature,
		ISID: [6]byte{0x80, 0, 0, 0x70, 0, 3*bound - 1}, InitiatorTaskTag: last.nextITT(), CmdSN: last.cmdSN,
	}, nil)
	if p := last.mustRecv(pdu.OpLoginResponse); p.StatusClass != 0 || p.TSIH == 0 {
		t.Errorf("newest half login could not finish: status %d/%d", p.StatusClass, p.StatusDetail)
	}
	last.turGood()
}
