package faults

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/iscsi"
	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/pdu"
	"github.com/netsan/netsan/netsantest"
)

const testBase = "iqn.2026-11.example.faults"

// iscsiLab is one netsan serving node1's root over iSCSI on loopback.
type iscsiLab struct {
	*netsan
	portal    string
	initiator string
	target    string
}

func startISCSI(t *testing.T, extra string) *iscsiLab {
	t.Helper()
	netsantest.NeedTools(t, "iscsi-inq")
	dir := t.TempDir()
	httpPort, iscsiPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "tcp")
	path := writeInventory(t, dir, inventorytest.Loopback("data", httpPort, iscsiPort, testBase)+extra+`
[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
root = { image = "roots/node1.img", size = "16MiB" }
`)
	l := &iscsiLab{
		netsan:    startNetsan(t, path, "", fmt.Sprintf("http://127.0.0.1:%d", httpPort)),
		portal:    fmt.Sprintf("127.0.0.1:%d", iscsiPort),
		initiator: testBase + ":node1",
		target:    testBase + ":node1",
	}
	l.goodInitiator()
	return l
}

// goodInitiator is libiscsi's iscsi-inq, a well-behaved peer: it must be
// answered whatever came before.
func (l *iscsiLab) goodInitiator() {
	l.t.Helper()
	url := fmt.Sprintf("iscsi://%s/%s/0", l.portal, l.target)
	out, err := run(30*time.Second, nil, "iscsi-inq", "-i", l.initiator, url)
	if err != nil || !strings.Contains(out, "DIRECT_ACCESS") {
		l.t.Fatalf("iscsi-inq: %v\n%s", err, out)
	}
}

// afterAbuse: goroutines, descriptors and heap back to base (a lab's
// baseline is taken after startISCSI's good initiator), and the good
// initiator answered.
func (l *iscsiLab) afterAbuse(what string, base usage) {
	l.t.Helper()
	if !l.alive() {
		l.t.Fatalf("%s: netsan exited", what)
	}
	u := l.settle(base, 45*time.Second)
	l.goodInitiator()
	l.t.Logf("%s: base {%v}; after {%v}", what, base, u)
}

// TestISCSIConnectStorm: 1,000 connections that open and vanish at once,
// half of them with a TCP reset.
func TestISCSIConnectStorm(t *testing.T) {
	l := startISCSI(t, "")
	base := l.baseline()
	const n, workers = 1000, 16
	var failed atomic.Int32
	var next atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				c, err := net.DialTimeout("tcp", l.portal, 10*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				if i%2 == 0 {
					c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d connects refused", f, n)
	}
	l.afterAbuse(fmt.Sprintf("%d connect/disconnects", n), base)
}

// TestISCSIHalfLoginsAndSlowloris: 1,000 connections that send a first
// Login Request without the transit bit and then say nothing, alongside
// connections that send a BHS one byte a second (before login, and after
// login in full feature phase). The target holds at most
// MaxPendingLogins of the half logins at once, closing the oldest as new
// ones come, drops the rest by itself (login timeout, NOP-In timeout), and
// serves a good initiator while all 1,000 are still open on our side.
func TestISCSIHalfLoginsAndSlowloris(t *testing.T) {
	l := startISCSI(t, "")
	base := l.baseline()
	// The inventory has no knob for it: netsan runs with the default.
	const halves, slow, bound = 1000, 4, iscsi.DefaultMaxPendingLogins

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// Half-finished logins: a valid request that asks to stay in the
	// operational stage, then silence.
	for i := range halves {
		c, err := net.DialTimeout("tcp", l.portal, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		in := iscsitest.New(c)
		in.NextITT()
		h, data := in.LoginRequest([6]byte{0x80, 0, 0, 0, byte(i >> 8), byte(i)}, 0, normalLogin(l.initiator, l.target)...)
		h.Flags = pdu.LoginFlags(pdu.StageOperational, 0, false)
		if err := in.Send(h, data); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	// The newest ones are the target's pending logins: each is answered.
	// The older ones were closed to make room (checked below, with the
	// rest).
	answered := 0
	for _, c := range conns[halves-bound:] {
		r := pdu.Reader{R: c, Pool: new(pdu.Pool)}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var p pdu.PDU
		if err := r.Read(&p); err == nil && p.Opcode == pdu.OpLoginResponse && p.StatusClass == 0 {
			answered++
		}
	}
	if answered != bound {
		t.Errorf("%d of the newest %d first Login Requests answered", answered, bound)
	}
	m := l.mustMetrics()
	if p, e := m["netsan_iscsi_logins_pending"], m["netsan_iscsi_logins_evicted_total"]; p != bound || e != halves-bound {
		t.Errorf("with %d half logins open: %v pending, %v evicted; want %d and %d", halves, p, e, bound, halves-bound)
	}
	// An evicted connection's descriptor goes once its login goroutine
	// has left its read: wait for that (bounded), then hold the target to
	// the bound — a scrape's connection and a runtime descriptor of slack.
	mid := l.usage()
	for deadline := time.Now().Add(10 * time.Second); mid.fds > base.fds+bound+fdSlack && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		mid = l.usage()
	}
	t.Logf("with %d half logins open on our side: {%v}", halves, mid)
	if mid.fds > base.fds+bound+fdSlack {
		t.Errorf("target holds %d descriptors with %d half logins open, baseline %d + bound %d", mid.fds, halves, base.fds, bound)
	}

	// Slowloris: one byte of a BHS a second. Before login the login
	// timeout (15 s) must end it; after login the NOP-In timeout.
	type dribble struct {
		c    net.Conn
		sent atomic.Int32
		done chan struct{}
	}
	var ds []*dribble
	for i := range slow {
		c, err := net.DialTimeout("tcp", l.portal, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			if _, err := iscsitest.New(c).Login([6]byte{0x80, 0, 0, 0x51, 0, byte(i)}, 0, normalLogin(l.initiator, l.target)...); err != nil {
				t.Fatalf("slowloris %d login: %v", i, err)
			}
		}
		d := &dribble{c: c, done: make(chan struct{})}
		ds = append(ds, d)
		go func() {
			defer close(d.done)
			var bhs [pdu.BHSLength]byte
			(&pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal, CmdSN: 1}).Encode(bhs[:])
			for i := range bhs {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(bhs[i : i+1]); err != nil {
					return
				}
				d.sent.Add(1)
				time.Sleep(time.Second)
			}
		}()
	}
	// The good initiator is served while all of that is pending.
	l.goodInitiator()

	// Every half login and every slowloris is dropped by the target.
	var wg sync.WaitGroup
	var open atomic.Int32
	for _, c := range conns[:halves] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !drain(c, 60*time.Second) {
				open.Add(1)
			}
		}()
	}
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !drain(d.c, 70*time.Second) {
				open.Add(1)
				return
			}
			d.c.Close()
			<-d.done
			if d.sent.Load() >= pdu.BHSLength {
				t.Errorf("slowloris %d: target waited for all %d bytes", i, pdu.BHSLength)
			}
			t.Logf("slowloris %d (logged in: %v) dropped after %d bytes", i, i%2 == 1, d.sent.Load())
		}()
	}
	wg.Wait()
	if n := open.Load(); n > 0 {
		t.Fatalf("%d connections never dropped by the target", n)
	}
	for _, c := range conns {
		c.Close()
	}
	l.afterAbuse(fmt.Sprintf("%d half logins + %d slowloris", halves, slow), base)
}

// TestISCSIMaxSessions: max_sessions = 4; a fifth session is refused with
// "out of resources", the four keep working, and once they log out the
// good initiator gets in again.
func TestISCSIMaxSessions(t *testing.T) {
	const limit = 4
	l := startISCSI(t, fmt.Sprintf("max_sessions = %d", limit))
	base := l.baseline()
	var ins []*iscsitest.Initiator
	t.Cleanup(func() {
		for _, in := range ins {
			in.Close()
		}
	})
	for i := range limit + 3 {
		in, err := iscsitest.Dial(l.portal)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
		_, err = in.Login([6]byte{0x80, 0, 0, 0x55, 0, byte(i)}, 0, normalLogin(l.initiator, l.target)...)
		var le *iscsitest.LoginError
		switch {
		case i < limit && err != nil:
			t.Fatalf("session %d: %v", i+1, err)
		case i >= limit && !(errors.As(err, &le) && le.Class == 3 && le.Detail == 2):
			t.Fatalf("session %d beyond max_sessions=%d: %v, want status 0x0302 (out of resources)", i+1, limit, err)
		}
	}
	for i, in := range ins[:limit] {
		if res, err := in.CommandPastUA(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
			t.Fatalf("session %d TEST UNIT READY: %v status %#x", i+1, err, res.Status)
		}
	}
	url := fmt.Sprintf("iscsi://%s/%s/0", l.portal, l.target)
	if out, err := run(30*time.Second, nil, "iscsi-inq", "-i", l.initiator, url); err == nil {
		t.Fatalf("iscsi-inq logged in as session %d:\n%s", limit+1, out)
	}
	for i, in := range ins[:limit] {
		if err := in.Logout(); err != nil {
			t.Errorf("session %d logout: %v", i+1, err)
		}
	}
	for _, in := range ins {
		in.Close()
	}
	l.afterAbuse(fmt.Sprintf("%d sessions against max_sessions=%d", limit+3, limit), base)
}
