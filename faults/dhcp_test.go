package faults

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// netnsLab is netsan's namespace and the machines cabled to it.
type netnsLab struct {
	*netsantest.Lab
	t      *testing.T
	client string // newNetnsLab's one machine
}

// newNetnsLab is netsan's namespace and one client cabled straight to it:
// 198.18.0.1/24 (veth0, netsan's side) and 198.18.0.2/24 (eth0).
func newNetnsLab(t *testing.T, clientMAC string) *netnsLab {
	t.Helper()
	l := &netnsLab{Lab: netsantest.NewLab(t, "faults"), t: t}
	l.client = l.Cable("c", clientMAC, "198.18.0.2/24", "198.18.0.1/24")
	return l
}

// udpIn opens a UDP socket with SO_BROADCAST on port inside ns.
func udpIn(t *testing.T, ns string, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	netsantest.InNetns(t, ns, func() {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			})
			return serr
		}}
		pc, err := lc.ListenPacket(t.Context(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			t.Errorf("udp socket in %s: %v", ns, err)
			return
		}
		c = pc.(*net.UDPConn)
	})
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	rand.Read(m)
	m[0] = m[0]&0xfc | 0x02 // unicast, locally administered
	return m
}

// malformed returns the hostile datagrams: truncated headers, options
// running past the end, a 1,500-byte option blob and friends.
func malformed(t *testing.T) map[string][]byte {
	t.Helper()
	good, err := dhcpv4.NewDiscovery(randomMAC(), dhcpv4.WithBroadcast(true))
	if err != nil {
		t.Fatal(err)
	}
	raw := good.ToBytes()
	hdr := raw[:240] // fixed header and magic cookie
	opts := func(o ...byte) []byte { return append(append([]byte(nil), hdr...), o...) }
	blob := opts(53, 1, 1)
	for len(blob) < 1500-3 {
		n := min(255, 1500-3-len(blob)-2)
		blob = append(append(blob, 43, byte(n)), bytes.Repeat([]byte{0xa5}, n)...)
	}
	blob = append(blob, 255)
	hlen := append([]byte(nil), raw...)
	hlen[2] = 255 // hardware address length beyond chaddr's 16 bytes
	reply := append([]byte(nil), raw...)
	reply[0] = 2 // a BOOTREPLY sent to the server
	return map[string][]byte{
		"empty":                     {},
		"one byte":                  {1},
		"truncated header (100 B)":  raw[:100],
		"header without cookie":     raw[:236],
		"cookie, no options":        hdr,
		"option past the end":       opts(53, 200, 1),
		"length byte missing":       opts(53, 1, 1, 60),
		"no end option":             opts(53, 1, 1, 60, 9, 'P', 'X', 'E', 'C', 'l', 'i', 'e', 'n', 't'),
		"1,500-byte option blob":    blob,
		"overload into file/sname":  opts(53, 1, 1, 52, 1, 3, 255),
		"message type 0":            opts(53, 1, 0, 255),
		"message type 255":          opts(53, 1, 255, 255),
		"zero-length message type":  opts(53, 0, 255),
		"empty client id and class": opts(53, 1, 1, 61, 0, 60, 0, 77, 0, 93, 0, 255),
		"arch option of 1 byte":     opts(53, 1, 1, 60, 9, 'P', 'X', 'E', 'C', 'l', 'i', 'e', 'n', 't', 93, 1, 7, 255),
		"relay info garbage":        opts(53, 1, 1, 82, 4, 1, 9, 2, 9, 255),
		"hlen 255":                  hlen,
		"BOOTREPLY":                 reply,
		"requested IP off-subnet":   opts(53, 1, 3, 50, 4, 8, 8, 8, 8, 255),
		"iPXE 175 garbage":          opts(53, 1, 1, 77, 4, 'i', 'P', 'X', 'E', 175, 3, 0xff, 0xff, 0xff, 255),
	}
}

// TestDHCPAbuse: malformed datagrams, 1,000 randomly mutated DISCOVERs and
// a storm of 2,000 DISCOVERs from random MACs that lease a 20-address pool
// dry; then busybox udhcpc with a fixed inventory host's MAC still gets its
// fixed address, its boot options and its CHAP credentials (175.190/191) —
// which the debug log must not contain.
func TestDHCPAbuse(t *testing.T) {
	netsantest.NeedTools(t, "busybox", "curl")
	const fixedMAC, fixedIP, secret = "52:54:00:00:00:01", "198.18.0.11", "dhcp-chap-secret-7f3a9c21"
	l := newNetnsLab(t, fixedMAC)
	dir := t.TempDir()
	path := dhcpInventory(t, dir, "range = [\"198.18.0.100\", \"198.18.0.119\"]\nrouter = \"198.18.0.1\"", fmt.Sprintf(`listen = "198.18.0.1:69"
[http]
listen = "0.0.0.0:8080"
[iscsi]
listen = ["198.18.0.1:3260"]
base_iqn = %q
[[host]]
name = "node1"
mac = %q
ip = %q
root = { image = "roots/node1.img", size = "16MiB" }
chap = { user = "node1", secret = %q }
`, testBase, fixedMAC, fixedIP, secret), "undionly.kpxe", "ipxe.efi")
	// http on every address of the server's namespace: the test reads
	// /metrics and forces collections from 127.0.0.1 inside it.
	n := startNetsan(t, path, l.Server, "http://127.0.0.1:8080", "--log-level", "debug")
	base := n.baseline()

	c := newDHCPClient(t, l.client)
	cases := malformed(t)
	for range 5 {
		for _, b := range cases {
			c.send(b)
		}
	}
	const mutants = 1000
	c.sendMutants(mutants)
	if !n.alive() {
		t.Fatal("netsan died of malformed datagrams")
	}

	// The storm: 2,000 DISCOVERs from random MACs.
	const storm, pool = 2000, 20
	for i := range storm {
		d, err := dhcpv4.NewDiscovery(randomMAC(), dhcpv4.WithBroadcast(true))
		if err != nil {
			t.Fatal(err)
		}
		c.send(d.ToBytes())
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	offers, acks, other := c.close()
	t.Logf("storm of %d DISCOVERs: the test saw %d addresses offered, %d acknowledged, %d other replies", storm, len(offers), len(acks), other)
	for ip := range offers {
		if !inPool(ip) {
			t.Errorf("offered %s, outside the pool", ip)
		}
	}
	// The server's own view: bound leases (offers still held are not
	// listed) all inside the pool.
	leases := statusLeases(t, l.client)
	inUse := 0
	for _, ls := range leases {
		if !inPool(ls.IP) {
			t.Errorf("lease %s for %s outside the pool", ls.IP, ls.MAC)
		}
		inUse++
	}
	if inUse > pool {
		t.Errorf("%d pool addresses leased, the pool has %d", inUse, pool)
	}
	// Some of a flood is lost in the server socket's receive buffer; what
	// arrived after the pool ran dry is refused, not answered.
	exhausted := strings.Count(n.log.String(), `"reason":"pool exhausted"`)
	if exhausted == 0 {
		t.Error("no DISCOVER refused for an exhausted pool: the storm did not exhaust it")
	}
	t.Logf("%d pool addresses leased, %d DISCOVERs refused as pool exhausted", inUse, exhausted)

	// A fixed host is still served, with everything it must be told.
	vars := udhcpcEnv(t, l.client, "-O", "175", "-O", "203", "-O", "17",
		"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x4d:69505845") // iPXE: gets 175
	if vars["ip"] != fixedIP || !strings.Contains(vars["rootpath"], testBase+":node1") || vars["opt203"] == "" {
		t.Fatalf("fixed host after the storm: ip %q rootpath %q", vars["ip"], vars["rootpath"])
	}
	// The credentials were on the wire (175.191 inside option 175)...
	if !strings.Contains(strings.ToLower(vars["opt175"]), hex.EncodeToString([]byte(secret))) {
		t.Errorf("option 175 %q does not carry the CHAP secret: the log check below proves less", vars["opt175"])
	}
	after := n.settle(base, 30*time.Second)
	// ...and never in the log, in any spelling.
	n.kill()
	log := n.log.String()
	assertNoSecret(t, log, secret)
	t.Logf("%d malformed kinds ×5, %d mutants, %d-DISCOVER storm; fixed host got %s; base {%v}, after {%v}; %d log bytes without the secret",
		len(cases), mutants, storm, vars["ip"], base, after, len(log))
}

// dhcpInventory writes the inventory of a netsan serving DHCP on veth0 of
// a newNetnsLab: [dhcp] on 198.18.0.0/24 with hour-long leases and the
// keys in dhcpKeys (the range), then [tftp] with an ipxe_dir holding
// loaders, continued by rest.
func dhcpInventory(t *testing.T, dir, dhcpKeys, rest string, loaders ...string) string {
	t.Helper()
	files := map[string]string{}
	for _, l := range loaders {
		files["ipxe/"+l] = "loader"
	}
	inventorytest.WriteFiles(t, dir, files)
	return writeInventory(t, dir, fmt.Sprintf(`
[server]
address = "198.18.0.1"
data_dir = "data"
[dhcp]
interface = "veth0"
listen = "0.0.0.0:67"
subnet = "198.18.0.0/24"
lease_time = "1h"
%s
[tftp]
ipxe_dir = %q
`, dhcpKeys, filepath.Join(dir, "ipxe"))+rest)
}

// dhcpClient sends datagrams to netsan's DHCP port from port 68 in a
// namespace and takes every OFFER it gets with a REQUEST, so that a storm
// leases the pool dry, counting what comes back.
type dhcpClient struct {
	t      *testing.T
	sock   *net.UDPConn
	server *net.UDPAddr
	done   chan struct{}
	offers map[string]string // ip → mac
	acks   map[string]string
	other  int
}

func newDHCPClient(t *testing.T, ns string) *dhcpClient {
	c := &dhcpClient{t: t, sock: udpIn(t, ns, 68), server: &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 67},
		done: make(chan struct{}), offers: map[string]string{}, acks: map[string]string{}}
	c.sock.SetReadBuffer(4 << 20)
	go c.read()
	return c
}

func (c *dhcpClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.sock.WriteTo(b, c.server); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// read counts the replies until none has come for 3 s.
func (c *dhcpClient) read() {
	defer close(c.done)
	netsantest.ReadReplies(c.sock, 3*time.Second, func(m *dhcpv4.DHCPv4) {
		switch m.MessageType() {
		case dhcpv4.MessageTypeOffer:
			c.offers[m.YourIPAddr.String()] = m.ClientHWAddr.String()
			if req, err := dhcpv4.NewRequestFromOffer(m, dhcpv4.WithBroadcast(true)); err == nil {
				c.sock.WriteTo(req.ToBytes(), c.server)
			}
		case dhcpv4.MessageTypeAck:
			c.acks[m.YourIPAddr.String()] = m.ClientHWAddr.String()
		default:
			c.other++
		}
	})
}

// close waits for the replies to stop and returns what came: the addresses
// offered and acknowledged (to which MAC) and how many other replies.
func (c *dhcpClient) close() (offers, acks map[string]string, other int) {
	<-c.done
	c.sock.Close()
	return c.offers, c.acks, c.other
}

// sendMutants sends n random mutations of a valid PXE DISCOVER, some cut
// short: a fuzzer on the wire.
func (c *dhcpClient) sendMutants(n int) {
	pxe, _ := dhcpv4.NewDiscovery(randomMAC(), dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}))
	for i := range n {
		b := pxe.ToBytes()
		for range 1 + i%8 {
			k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(b))))
			v := make([]byte, 1)
			rand.Read(v)
			b[k.Int64()] = v[0]
		}
		if i%10 == 0 {
			b = b[:240+i%(len(b)-240)]
		}
		c.send(b)
		if i%100 == 99 {
			time.Sleep(20 * time.Millisecond) // let the server's socket drain
		}
	}
}

// udhcpcEnv has busybox udhcpc in ns lease an address on eth0 with the
// extra args, and returns the variables its script was given.
func udhcpcEnv(t *testing.T, ns string, args ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	script, envf := filepath.Join(dir, "udhcpc.sh"), filepath.Join(dir, "udhcpc.env")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+envf+"\nexit 0\n"), 0o755)
	out, err := run(60*time.Second, nil, "ip", append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-f", "-q", "-n",
		"-t", "5", "-T", "2", "-A", "1", "-i", "eth0", "-s", script}, args...)...)
	env, _ := os.ReadFile(envf)
	if err != nil || len(env) == 0 {
		t.Fatalf("udhcpc in %s: %v\n%s", ns, err, out)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

// assertNoSecret fails if secret appears in log as text, hex or base64.
func assertNoSecret(t *testing.T, log, secret string) {
	t.Helper()
	if log == "" {
		t.Fatal("empty log: nothing was checked")
	}
	for _, form := range []string{secret, hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret))),
		base64Std(secret)} {
		if strings.Contains(log, form) {
			i := strings.Index(log, form)
			t.Errorf("secret logged (as %q) near: %s", form, log[max(0, i-200):min(len(log), i+100)])
		}
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// inPool reports whether ip is in the test's pool 198.18.0.100–119.
func inPool(ip string) bool {
	a := net.ParseIP(ip).To4()
	return a != nil && a[0] == 198 && a[1] == 18 && a[2] == 0 && a[3] >= 100 && a[3] <= 119
}

type statusLease struct {
	MAC, IP, Host string
	Expires       time.Time
}

// statusLeases reads the leases from /status.json, from inside ns.
func statusLeases(t *testing.T, ns string) []statusLease {
	t.Helper()
	out, err := run(10*time.Second, nil, "ip", "netns", "exec", ns, "curl", "-sf", "http://198.18.0.1:8080/status.json")
	if err != nil {
		t.Fatalf("/status.json: %v\n%s", err, out)
	}
	var st struct{ Leases []statusLease }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("/status.json: %v", err)
	}
	return st.Leases
}
