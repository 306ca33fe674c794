package dhcpd

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/netsan/netsan/netsantest"
)

// wire is a DHCP socket opened inside a namespace, bound to port on eth0.
type wire struct {
	t    *testing.T
	conn *net.UDPConn
}

func openWire(t *testing.T, ns string, port int) *wire {
	t.Helper()
	var conn *net.UDPConn
	netsantest.InNetns(t, ns, func() {
		var err error
		conn, err = server4.NewIPv4UDPConn("eth0", &net.UDPAddr{Port: port})
		if err != nil {
			t.Errorf("socket in %s: %v", ns, err)
		}
	})
	if conn == nil {
		t.FailNow()
	}
	t.Cleanup(func() { conn.Close() })
	return &wire{t: t, conn: conn}
}

func (w *wire) send(m *dhcpv4.DHCPv4, to *net.UDPAddr) {
	w.t.Helper()
	if _, err := w.conn.WriteTo(m.ToBytes(), to); err != nil {
		w.t.Fatalf("send %s: %v", m.MessageType(), err)
	}
}

// exchange sends m and collects replies to it, as a client does: up to 4
// transmissions 2 s apart, until want replies (from distinct servers) came.
func (w *wire) exchange(m *dhcpv4.DHCPv4, to *net.UDPAddr, want int) []*dhcpv4.DHCPv4 {
	w.t.Helper()
	seen := map[string]*dhcpv4.DHCPv4{}
	for try := 0; try < 4 && len(seen) < want; try++ {
		w.send(m, to)
		for _, r := range w.collect(m.TransactionID, want-len(seen), 2*time.Second) {
			// A proxy on the DHCP server's host shares its address: tell
			// the two apart by whether they give one.
			seen[fmt.Sprint(r.ServerIdentifier(), r.YourIPAddr.IsUnspecified())] = r
		}
	}
	out := make([]*dhcpv4.DHCPv4, 0, len(seen))
	for _, r := range seen {
		out = append(out, r)
	}
	return out
}

// collect returns the replies to xid until want of them arrived or d passed.
func (w *wire) collect(xid dhcpv4.TransactionID, want int, d time.Duration) []*dhcpv4.DHCPv4 {
	var got []*dhcpv4.DHCPv4
	deadline := time.Now().Add(d)
	buf := make([]byte, 1500)
	for len(got) < want && time.Now().Before(deadline) {
		w.conn.SetReadDeadline(deadline)
		n, _, err := w.conn.ReadFrom(buf)
		if err != nil {
			break
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && m.OpCode == dhcpv4.OpcodeBootReply && m.TransactionID == xid {
			got = append(got, m)
		}
	}
	return got
}

var bcast67 = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}

// pxeProxyClient plays a PXE 2.1 BIOS ROM in ns: DISCOVER, collect the
// DHCP server's and the proxy's offers, REQUEST the address from the DHCP
// server, then ask the proxy on port 4011 for the boot file.
func pxeProxyClient(t *testing.T, l *lab, ns string, mac net.HardwareAddr) {
	t.Helper()
	w := openWire(t, ns, dhcpv4.ClientPort)
	uuid := append([]byte{0}, []byte("0123456789abcdef")...)
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)),
	}
	disc, err := dhcpv4.NewDiscovery(mac, pxe...)
	if err != nil {
		t.Fatal(err)
	}
	var lease, proxy *dhcpv4.DHCPv4
	for _, o := range w.exchange(disc, bcast67, 2) {
		if o.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		if o.YourIPAddr.IsUnspecified() {
			proxy = o
		} else {
			lease = o
		}
	}
	if lease == nil || proxy == nil {
		t.Fatalf("offers: dhcp server %v, proxy %v", lease, proxy)
	}
	if !inDnsmasqRange(lease.YourIPAddr.String()) {
		t.Errorf("dnsmasq offered %s", lease.YourIPAddr)
	}
	if !proxy.ServerIdentifier().Equal(net.IPv4(198, 18, 0, 1)) || proxy.ClassIdentifier() != "PXEClient" ||
		proxy.BootFileName != "undionly.kpxe" || !proxy.ServerIPAddr.Equal(net.IPv4(198, 18, 0, 1)) {
		t.Errorf("proxy offer: server id %s, 60 %q, file %q, siaddr %s", proxy.YourIPAddr, proxy.ClassIdentifier(), proxy.BootFileName, proxy.ServerIPAddr)
	}

	req, err := dhcpv4.NewRequestFromOffer(lease, pxe...)
	if err != nil {
		t.Fatal(err)
	}
	acks := w.exchange(req, bcast67, 1)
	acks = append(acks, w.collect(req.TransactionID, 1, time.Second)...) // a second answer?
	for _, a := range acks[1:] {
		if a.YourIPAddr.IsUnspecified() {
			t.Errorf("the proxy answered the DHCP server's REQUEST: %s", a.Summary())
		}
	}
	if len(acks) == 0 || acks[0].MessageType() != dhcpv4.MessageTypeAck || acks[0].YourIPAddr.IsUnspecified() {
		t.Fatalf("no ACK from the DHCP server: %v", acks)
	}
	ip := acks[0].YourIPAddr
	l.IP(ns, "addr", "add", ip.String()+"/24", "dev", "eth0")

	// PXE 2.1: the boot-server REQUEST goes to the proxy's port 4011 from the new address.
	bs, err := dhcpv4.New(append(pxe,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithBroadcast(false),
		dhcpv4.WithClientIP(ip))...)
	if err != nil {
		t.Fatal(err)
	}
	acks = w.exchange(bs, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: PXEPort}, 1)
	if len(acks) != 1 {
		t.Fatal("no reply from the proxy on port 4011")
	}
	a := acks[0]
	if a.MessageType() != dhcpv4.MessageTypeAck || !a.YourIPAddr.IsUnspecified() || a.BootFileName != "undionly.kpxe" ||
		a.RootPath() != "iscsi:198.18.0.1::3260:0:iqn.2026-11.example.lab:node1" {
		t.Errorf("proxy ACK: %s yiaddr %s file %q root-path %q", a.MessageType(), a.YourIPAddr, a.BootFileName, a.RootPath())
	}
}

// httpBootClient plays EDK2's HttpBootDxe (NetworkPkg/HttpBootDxe/
// HttpBootDhcp4.c) in ns: DISCOVER with vendor class HTTPClient and arch 16,
// then judge netsan's offer as it does: option 60 starting "HTTPClient" and
// a URL with an IP address in the file field make an HTTP offer; one with no
// yiaddr is a proxy offer, used beside a DHCP server's offer that carries no
// URL. Then REQUEST the address from whoever offered it.
func httpBootClient(t *testing.T, ns string, mac net.HardwareAddr, proxy bool) {
	t.Helper()
	w := openWire(t, ns, dhcpv4.ClientPort)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)),
	}
	disc, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	want := 1
	if proxy {
		want = 2
	}
	var lease, netsan *dhcpv4.DHCPv4
	for _, o := range w.exchange(disc, bcast67, want) {
		if o.ServerIdentifier().Equal(net.IPv4(198, 18, 0, 1)) && (!proxy || o.YourIPAddr.IsUnspecified()) {
			netsan = o
		}
		if !o.YourIPAddr.IsUnspecified() {
			lease = o
		}
	}
	if netsan == nil || lease == nil {
		t.Fatalf("offers: netsan %v, with an address %v", netsan, lease)
	}
	const url = "http://198.18.0.1:8080/ipxe.efi"
	if vc := netsan.ClassIdentifier(); len(vc) < 10 || vc[:10] != "HTTPClient" || netsan.BootFileName != url {
		t.Errorf("netsan's offer is no HTTP offer: option 60 %q, file %q, want HTTPClient and %s", vc, netsan.BootFileName, url)
	}
	if !netsan.ServerIPAddr.IsUnspecified() || netsan.Options.Has(dhcpv4.OptionTFTPServerName) {
		t.Errorf("netsan's offer names a TFTP server: siaddr %s, 66 %q", netsan.ServerIPAddr, netsan.TFTPServerName())
	}
	if proxy && lease.ClassIdentifier() == "HTTPClient" {
		t.Errorf("the DHCP server's offer carries a URL of its own (%q): EDK2 would not use netsan's", lease.BootFileName)
	}

	req, err := dhcpv4.NewRequestFromOffer(lease, mods...)
	if err != nil {
		t.Fatal(err)
	}
	acks := w.exchange(req, bcast67, 1)
	acks = append(acks, w.collect(req.TransactionID, 1, time.Second)...) // a second answer?
	if len(acks) == 0 || acks[0].MessageType() != dhcpv4.MessageTypeAck || !acks[0].YourIPAddr.Equal(lease.YourIPAddr) {
		t.Fatalf("no ACK of %s: %v", lease.YourIPAddr, acks)
	}
	for _, a := range acks[1:] {
		if a.YourIPAddr.IsUnspecified() {
			t.Errorf("the proxy answered the DHCP server's REQUEST: %s", a.Summary())
		}
	}
	if a := acks[0]; !proxy && (a.ClassIdentifier() != "HTTPClient" || a.BootFileName != url) {
		t.Errorf("ACK: option 60 %q, file %q", a.ClassIdentifier(), a.BootFileName)
	}
}
