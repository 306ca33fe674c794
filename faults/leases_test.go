package faults

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netsan/netsan/netsantest"
)

// dora runs DISCOVER, OFFER, REQUEST, ACK for mac over sock, repeating
// each step (bounded) while unanswered — a restarted server may not be
// listening yet. It returns the acknowledged address and the one offered.
func dora(t *testing.T, sock *net.UDPConn, mac net.HardwareAddr) (acked, offered net.IP) {
	t.Helper()
	server := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 67}
	exchange := func(req *dhcpv4.DHCPv4, want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
		buf := make([]byte, 1500)
		for range 40 {
			if _, err := sock.WriteTo(req.ToBytes(), server); err != nil {
				t.Fatal(err)
			}
			sock.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, _, err := sock.ReadFrom(buf)
				if err != nil {
					break
				}
				m, err := dhcpv4.FromBytes(buf[:n])
				if err != nil || m.TransactionID != req.TransactionID || m.OpCode != dhcpv4.OpcodeBootReply {
					continue
				}
				if m.MessageType() != want {
					t.Fatalf("%s for %s: got %s", req.MessageType(), mac, m.MessageType())
				}
				return m
			}
		}
		t.Fatalf("%s for %s: no %s in 20 s", req.MessageType(), mac, want)
		return nil
	}
	d, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
	if err != nil {
		t.Fatal(err)
	}
	offer := exchange(d, dhcpv4.MessageTypeOffer)
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithBroadcast(true))
	if err != nil {
		t.Fatal(err)
	}
	ack := exchange(req, dhcpv4.MessageTypeAck)
	return ack.YourIPAddr, offer.YourIPAddr
}

// TestLeasesSurviveKill9: round after round a new client leases an
// address and netsan is SIGKILLed 0–30 ms after the ACK left. No later
// client is ever offered an address acknowledged before a kill, and after
// the last restart /status lists every acknowledged lease.
func TestLeasesSurviveKill9(t *testing.T) {
	netsantest.NeedTools(t, "curl")
	const rounds = 20
	l := newNetnsLab(t, "52:54:00:00:00:99")
	path := dhcpInventory(t, t.TempDir(), `range = ["198.18.0.100", "198.18.0.129"]`, fmt.Sprintf(`enabled = false
[http]
listen = "198.18.0.1:8080"
[iscsi]
enabled = false
base_iqn = %q
`, testBase), "undionly.kpxe")
	n := startNetsan(t, path, l.Server, "")
	sock := udpIn(t, l.client, 68)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	leased := map[string]string{} // ip → mac, every ACK seen
	for r := range rounds {
		mac := randomMAC()
		ip, offered := dora(t, sock, mac)
		if owner, ok := leased[offered.String()]; ok {
			t.Fatalf("round %d: %s offered %s, acknowledged to %s before a kill -9", r, mac, offered, owner)
		}
		leased[ip.String()] = mac.String()
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		n.restart()
	}
	var st []statusLease
	netsantest.WaitFor(t, "/status after the last restart", 20*time.Second, func() bool {
		out, err := run(10*time.Second, nil, "ip", "netns", "exec", l.client, "curl", "-sf", "http://198.18.0.1:8080/status.json")
		return err == nil && out != ""
	})
	st = statusLeases(t, l.client)
	have := map[string]string{}
	for _, ls := range st {
		have[ls.IP] = ls.MAC
	}
	lost := 0
	for ip, mac := range leased {
		if have[ip] != mac {
			t.Errorf("lease %s → %s lost (status has %q)", ip, mac, have[ip])
			lost++
		}
	}
	t.Logf("%d kill -9 restarts, each 0–30 ms after an ACK: %d acknowledged leases, %d lost", rounds, len(leased), lost)
}
