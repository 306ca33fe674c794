package dhcpd

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// slowStore is the lease journal behind a disk that a boot storm keeps
// busy: each save waits before it starts, as an fdatasync queued behind the
// storm's own writes does.
type slowStore struct {
	LeaseStore
	delay time.Duration
	saves atomic.Int32
}

func (s *slowStore) Save(leases []Lease) error {
	time.Sleep(s.delay)
	s.saves.Add(1)
	return s.LeaseStore.Save(leases)
}

// TestStormWhileSavesAreSlow: stormClients machines power on at once
// (DISCOVER, then REQUEST, each from one socket in one namespace) against a
// server whose every lease save takes 300 ms. Each gets its OFFER and its ACK
// within a PXE ROM's first wait of 4 s, without a retransmit: DISCOVERs are
// answered while saves run, and the ACKs waiting share a save, more of them
// than the server has workers. The server's socket buffer is as large as
// asked and loses no datagram.
func TestStormWhileSavesAreSlow(t *testing.T) {
	const stormClients = 400
	if testing.Short() {
		t.Skip("namespace test skipped in -short mode")
	}
	l := &lab{Lab: netsantest.NewLab(t, "dhcpd"), t: t, dir: t.TempDir()}
	l.Bridge("198.18.0.1/23")
	path := l.writeInventory(`
[dhcp]
interface = "br0"
subnet    = "198.18.0.0/23"
range     = ["198.18.0.20", "198.18.1.250"]
`)
	inv, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := openLeaseJournal(inv.Server.DataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &slowStore{LeaseStore: j, delay: 300 * time.Millisecond}
	core, logs := observer.New(zap.InfoLevel)
	s, err := New(inv, zap.New(core), WithLeaseStore(store))
	if err != nil {
		t.Fatal(err)
	}
	serveIn(t, l.Server, s)
	ctx := context.Background()
	sized := logs.FilterMessage("receive buffer").All()
	if len(sized) != 1 || sized[0].ContextMap()["bytes"] != int64(2*receiveBuffer) {
		t.Fatalf("receive buffer lines %v, want one of %d bytes", sized, 2*receiveBuffer)
	}
	dropsBefore, err := netsantest.UDPRcvbufErrors(l.Server)
	if err != nil {
		t.Fatal(err)
	}

	cli, err := netsantest.ListenDHCP(l.Attach("storm", "02:5a:00:00:00:01", ""), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	waits := []time.Duration{4 * time.Second} // a PXE ROM's first
	failed := make([]error, stormClients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stormClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := net.HardwareAddr{0x02, 0x5a, 0x01, 0x00, byte(i >> 8), byte(i)}
			_, failed[i] = cli.DORA(ctx, mac, waits)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := 0
	for i, err := range failed {
		if err != nil {
			if n < 5 {
				t.Errorf("client %d: %v", i, err)
			}
			n++
		}
	}
	saves := store.saves.Load()
	t.Logf("%d clients: %d without an ACK, %d saves, %s", stormClients, n, saves, elapsed.Round(time.Millisecond))
	if n > 0 {
		t.Errorf("%d of %d clients got no OFFER or ACK within %s", n, stormClients, waits[0])
	}
	// A worker that waited for the save itself would let at most
	// workersPerSocket ACKs share one.
	if acked := int32(stormClients - n); saves*workersPerSocket >= acked {
		t.Errorf("%d ACKs took %d saves: ACKs waiting do not share a save beyond the %d workers", acked, saves, workersPerSocket)
	}
	drops, err := netsantest.UDPRcvbufErrors(l.Server)
	if err != nil {
		t.Fatal(err)
	}
	if drops != dropsBefore {
		t.Errorf("the server's namespace lost %d datagrams at a full socket buffer", drops-dropsBefore)
	}
}
