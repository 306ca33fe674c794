//go:build ceph

package iscsi

import (
	"encoding/binary"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/netsantest"
)

// TestCephReservationsFailover: on a gateway whose reservations are kept in
// Ceph, A and B register (without APTPL) and A takes a Write Exclusive
// reservation; the gateway stops, and a new one, with a connection of its
// own to the same pool and the same RBD image, reports both keys and A's
// reservation (PERSISTENT RESERVE IN), refuses B's WRITE with RESERVATION
// CONFLICT, and still says APTPL was not asked for.
func TestCephReservationsFailover(t *testing.T) {
	cfg, tc, c1 := rbdDisk(t, 8<<20)
	cfg.Targets[0].ACL = []ACL{{Initiator: testInitiator}, {Initiator: otherInit}}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	const keyA, keyB = 0xa, 0xb

	addr, stop := serveGateway(t, cfg, c1, log)
	a, b := loginBoth(t, addr)
	a.prOut(iscsitest.PROutRegister, 0, 0, keyA)
	b.prOut(iscsitest.PROutRegister, 0, 0, keyB)
	a.prOut(iscsitest.PROutReserve, iscsitest.PRWriteExclusive, keyA, 0)
	a.Close()
	b.Close()
	stop()
	if out, err := tc.Rados("stat", ceph.ObjectPrefix+"pr."+testTarget+"-lun0"); err != nil {
		t.Fatalf("the LU's reservation object: %v\n%s", err, out)
	}

	// The new gateway: a fresh process's connection and stores.
	c2, err := ceph.Connect(ceph.Config{Conf: tc.Conf, Pool: tc.Pool}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Close)
	cfg.OpenStore = func(l LUN) (backstore.Store, error) { return ceph.OpenBacking(c2, l.Path, l.Size, l.ReadOnly) }
	addr, _ = serveGateway(t, cfg, c2, log)
	a, b = loginBoth(t, addr)
	res := b.command(0, iscsitest.PRIn(iscsitest.PRInReadKeys, 256), nil, 256)
	if res.Status != 0 || len(res.Data) < 8 {
		t.Fatalf("READ KEYS: status %#x sense %x", res.Status, res.Sense)
	}
	var keys []uint64
	for d := res.Data[8 : 8+binary.BigEndian.Uint32(res.Data[4:])]; len(d) >= 8; d = d[8:] {
		keys = append(keys, binary.BigEndian.Uint64(d))
	}
	if len(keys) != 2 || keys[0] != keyA || keys[1] != keyB {
		t.Errorf("READ KEYS on the new gateway: %x, want [a b]", keys)
	}
	res = b.command(0, iscsitest.PRIn(iscsitest.PRInReadReservation, 256), nil, 256)
	if res.Status != 0 || len(res.Data) < 24 || binary.BigEndian.Uint64(res.Data[8:]) != keyA || res.Data[21] != iscsitest.PRWriteExclusive {
		t.Errorf("READ RESERVATION on the new gateway: status %#x data %x, want key a, Write Exclusive", res.Status, res.Data)
	}
	if res := b.command(0, iscsitest.Write10(0, 1), make([]byte, 512), 0); res.Status != 0x18 {
		t.Errorf("B's WRITE on the new gateway: status %#x sense %x, want RESERVATION CONFLICT", res.Status, res.Sense)
	}
	if res := a.command(0, iscsitest.Write10(0, 1), make([]byte, 512), 0); res.Status != 0 {
		t.Errorf("A's WRITE on the new gateway: status %#x sense %x", res.Status, res.Sense)
	}
	// REPORT CAPABILITIES: PTPL_C (the state is kept), PTPL_A clear (no
	// initiator asked for APTPL).
	res = a.command(0, iscsitest.PRIn(prInReportCapabilities, 8), nil, 8)
	if res.Status != 0 || len(res.Data) < 4 || res.Data[2]&0x01 == 0 || res.Data[3]&0x01 != 0 {
		t.Errorf("REPORT CAPABILITIES: status %#x data %x, want PTPL_C set and PTPL_A clear", res.Status, res.Data)
	}
}

// prInReportCapabilities is PERSISTENT RESERVE IN's REPORT CAPABILITIES.
const prInReportCapabilities = 0x02

// serveGateway serves cfg with its reservations in c's pool until stop
// (or the test's end): one gateway.
func serveGateway(t *testing.T, cfg Config, c *ceph.Cluster, log *zap.Logger) (addr string, stop func()) {
	t.Helper()
	prs, err := c.ReservationStore()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.StateDir, cfg.Reservations = []string{"127.0.0.1:0"}, t.TempDir(), prs
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	stop = netsantest.Serve(t, 30*time.Second, srv.Serve)
	return srv.ListenAddrs()[0].String(), stop
}
