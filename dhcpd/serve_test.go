package dhcpd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestServeInProcess runs Server in this process (its socket opened inside
// the lab namespace): DORA from a PXE client, the metrics it counts, who
// holds an address (MACOf), a relayed request answered through the relay, a
// reload that adds a host without dropping leases, and a graceful stop that
// leaves the lease file and says so in one INFO line.
func TestServeInProcess(t *testing.T) {
	l := newLab(t)
	path := l.writeInventory(labHosts(t))
	inv, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, inv)
	core, logs := observer.New(zap.InfoLevel)
	s.log = zap.New(zapcore.NewTee(s.log.Core(), core))
	stop := serveIn(t, l.Server, s)

	// DORA, PXE BIOS, node1.
	c := openWire(t, l.Attach("pxe", "52:54:00:00:00:01", ""), dhcpv4.ClientPort)
	mac := mustMAC("52:54:00:00:00:01")
	disc, _ := dhcpv4.NewDiscovery(mac, pxeBIOS, archBIOS)
	offers := c.exchange(disc, bcast67, 1)
	if len(offers) != 1 || offers[0].YourIPAddr.String() != "198.18.0.11" || offers[0].BootFileName != "undionly.kpxe" {
		t.Fatalf("offers %v", offers)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offers[0], pxeBIOS, archBIOS)
	acks := c.exchange(req, bcast67, 1)
	if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck || acks[0].YourIPAddr.String() != "198.18.0.11" {
		t.Fatalf("acks %v", acks)
	}
	// The counter moves just after the reply leaves: wait (bounded) for it.
	m := gather(t, s)
	for i := 0; i < 100 && m["netsan_dhcp_replies_total{kind=pxe,message=ack}"] == 0; i++ {
		time.Sleep(20 * time.Millisecond)
		m = gather(t, s)
	}
	if got := m["netsan_dhcp_replies_total{kind=pxe,message=offer}"]; got != 1 {
		t.Errorf("offers{kind=pxe} = %v, want 1", got)
	}
	if got := m["netsan_dhcp_replies_total{kind=pxe,message=ack}"]; got != 1 {
		t.Errorf("acks{kind=pxe} = %v, want 1", got)
	}
	if got := m["netsan_dhcp_leases{state=bound}"]; got != 1 {
		t.Errorf("leases{state=bound} = %v, want 1", got)
	}
	if len(m) != 3*len(kinds)+3 {
		t.Errorf("collector yields %d series, want %d: %v", len(m), 3*len(kinds)+3, m)
	}

	// Who holds an address: the lease, else the host it is fixed for.
	for ip, want := range map[string]string{"198.18.0.11": "52:54:00:00:00:01", "198.18.0.17": "52:54:00:00:00:07", "198.18.0.100": ""} {
		mac, err := s.MACOf(netip.MustParseAddr(ip))
		if want == "" && err == nil || want != "" && (err != nil || mac.String() != want) {
			t.Errorf("MACOf(%s) = %s, %v; want %q", ip, mac, err, want)
		}
	}

	// A relay agent at 198.18.0.5 forwards a DISCOVER; the OFFER comes back
	// to the relay's server port, not to the client.
	r := openWire(t, l.Attach("relay", "52:54:00:00:ee:01", "198.18.0.5/24"), dhcpv4.ServerPort)
	rd, _ := dhcpv4.NewDiscovery(mustMAC("52:54:00:00:ee:99"), dhcpv4.WithGatewayIP(net.IPv4(198, 18, 0, 5)))
	rd.HopCount = 1
	ro := r.exchange(rd, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: dhcpv4.ServerPort}, 1)
	if len(ro) != 1 || ro[0].YourIPAddr.String() != "198.18.0.100" || !ro[0].GatewayIPAddr.Equal(net.IPv4(198, 18, 0, 5)) {
		t.Fatalf("relayed offer %v", ro)
	}

	// Reload: the relayed client becomes host node9; node1's lease stays.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, append(b, "\n[[host]]\nname = \"node9\"\nmac = \"52:54:00:00:ee:99\"\nip = \"198.18.0.19\"\n"...), 0o644)
	inv2, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(inv2); err != nil {
		t.Fatal(err)
	}
	rd2, _ := dhcpv4.NewDiscovery(mustMAC("52:54:00:00:ee:99"), dhcpv4.WithGatewayIP(net.IPv4(198, 18, 0, 5)))
	if ro := r.exchange(rd2, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: dhcpv4.ServerPort}, 1); len(ro) != 1 || ro[0].YourIPAddr.String() != "198.18.0.19" || ro[0].HostName() != "node9" {
		t.Fatalf("offer after reload %v", ro)
	}
	var kept bool
	for _, le := range s.Leases() {
		kept = kept || (le.IP.String() == "198.18.0.11" && le.Host == "node1" && le.State == StateBound)
	}
	if !kept {
		t.Errorf("node1's lease lost across reload: %v", s.Leases())
	}

	if err := stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	stops := logs.FilterMessage("stopped").All()
	if len(stops) != 1 {
		t.Fatalf("%d \"stopped\" lines, want 1", len(stops))
	}
	f := stops[0].ContextMap()
	if stops[0].Level != zap.InfoLevel || f["mode"] != "authoritative" || f["interface"] != "br0" ||
		fmt.Sprint(f["listen"]) != "[0.0.0.0:67]" || f["leases"] != int64(1) {
		t.Errorf("stop logged as %s %v, want INFO with mode, listen, interface and 1 lease", stops[0].Level, f)
	}
	if _, ok := readLeases(t, filepath.Join(l.dir, "data"))["198.18.0.11"]; !ok {
		t.Error("lease journal lacks node1's lease after stop")
	}
}

// serveIn opens s's sockets in namespace ns and serves until stop, which
// the test's end calls too; stop returns Serve's result, once.
func serveIn(t *testing.T, ns string, s *Server) (stop func() error) {
	t.Helper()
	netsantest.InNetns(t, ns, func() {
		if err := s.Listen(); err != nil {
			t.Errorf("listen: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

// gather registers s in a fresh registry (which checks the collector's
// consistency) and returns every sample as name{label=value,…} → value.
func gather(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, f := range netsantest.Gather(t, s) {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[f.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}
