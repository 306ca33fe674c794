package dhcpd

// Real-peer tests: netsan's dhcpd in a network namespace with a bridge
// (198.18.0.1/24), clients (busybox udhcpc, ISC dhclient, dnsmasq beside
// it) each in their own namespace on a veth to that bridge. The server runs
// as a child process (this test binary re-executed, see TestMain), so that a
// test can kill -9 it.

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
	"go.uber.org/zap"
)

const childEnv = "NETSAN_DHCPD_TEST_CHILD" // inventory path: run a server instead of tests

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnv); p != "" {
		os.Exit(runChild(p))
	}
	os.Exit(m.Run())
}

// runChild is the server process: load, listen, say READY, serve until SIGTERM.
func runChild(path string) int {
	inv, ps, err := inventory.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, ps, err)
		return 2
	}
	if d := os.Getenv("NETSAN_DHCPD_TEST_LEASE"); d != "" {
		// Shorter than validation allows, so a renewal happens within a test.
		inv.DHCP.LeaseTime.Duration, _ = time.ParseDuration(d)
	}
	log, _ := zap.NewProduction()
	s, err := New(inv, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := s.Listen(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// lab is one test's namespaces: the server's holds bridge br0 at
// 198.18.0.1/24, and clients are attached to it.
type lab struct {
	*netsantest.Lab
	t   *testing.T
	dir string
	n   int // servers started, each with its own log
}

func newLab(t *testing.T, tools ...string) *lab {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace test skipped in -short mode")
	}
	l := &lab{Lab: netsantest.NewLab(t, "dhcpd", tools...), t: t, dir: t.TempDir()}
	l.Bridge("198.18.0.1/24")
	return l
}

// proc is a process started in a namespace; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// kill9 sends SIGKILL to the process group and waits (bounded) for the exit.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die", p.log)
	}
}

// start runs a command in ns, killed at cleanup; output goes to a log file.
func (l *lab) start(ns, name string, env []string, args ...string) *proc {
	l.t.Helper()
	logf := filepath.Join(l.dir, name+".log")
	f, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		l.t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	p := &proc{cmd: cmd, log: logf, done: done}
	l.t.Cleanup(func() { p.kill9(l.t) })
	return p
}

func (l *lab) writeInventory(body string) string {
	l.t.Helper()
	ipxe := filepath.Join(l.dir, "ipxe")
	os.MkdirAll(ipxe, 0o755)
	for _, f := range []string{"undionly.kpxe", "ipxe.efi"} {
		os.WriteFile(filepath.Join(ipxe, f), []byte("loader"), 0o644)
	}
	path := filepath.Join(l.dir, "netsan.toml")
	head := inventorytest.Server(filepath.Join(l.dir, "data")) + fmt.Sprintf(`
[tftp]
ipxe_dir = %q
[http]
listen = "0.0.0.0:8080"
[iscsi]
base_iqn = "iqn.2026-11.example.lab"
`, ipxe)
	if err := os.WriteFile(path, []byte(head+body), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if _, ps, err := inventory.Load(path); err != nil {
		l.t.Fatalf("test inventory: %v %v", ps, err)
	}
	return path
}

func (l *lab) startServer(inv string, env ...string) *proc {
	l.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	l.n++ // each server its own log, so READY is this one's
	p := l.start(l.Server, fmt.Sprintf("netsan-%d", l.n), append(env, childEnv+"="+inv), exe, "-test.run=^$")
	l.waitFor(p.log, "READY", 10*time.Second)
	return p
}

// waitFor polls a log file until it holds want; bounded by d.
func (l *lab) waitFor(path, want string, d time.Duration) string {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: no %q after %s:\n%s", filepath.Base(path), want, d, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// decisions are the server's per-request log lines.
type decision struct {
	Msg, Request, Host, MAC, IP, Kind, File, Reason string
}

func decisions(t *testing.T, logf string) []decision {
	t.Helper()
	f, err := os.Open(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []decision
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d decision
		if json.Unmarshal(sc.Bytes(), &d) == nil && d.Request != "" {
			out = append(out, d)
		}
	}
	return out
}

// udhcpc runs busybox udhcpc once in ns and returns the environment its
// script saw at "bound" (ip, siaddr, boot_file, rootpath, optNNN…).
func (l *lab) udhcpc(ns, name string, args ...string) map[string]string {
	l.t.Helper()
	script := filepath.Join(l.dir, name+".sh")
	envf := filepath.Join(l.dir, name+".env")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+envf+"\nexit 0\n"), 0o755)
	all := append([]string{"busybox", "udhcpc", "-f", "-q", "-n", "-t", "4", "-T", "2", "-A", "1", "-i", "eth0", "-s", script}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, all...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("udhcpc %s: %v\n%s", name, err, out)
	}
	b, err := os.ReadFile(envf)
	if err != nil {
		l.t.Fatalf("udhcpc %s bound no lease: %v\n%s", name, err, out)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

// labHosts is the lab's [dhcp] and its hosts: a PC booting from SAN, one
// from its disk, a Raspberry Pi.
func labHosts(t testing.TB) string {
	return `
[dhcp]
interface = "br0"
subnet    = "198.18.0.0/24"
range     = ["198.18.0.100", "198.18.0.110"]
router    = "198.18.0.1"
dns       = ["198.18.0.1"]
` + inventorytest.Hosts(t, "node1", "node2", "pi1")
}

// TestUdhcpcBootClients: busybox udhcpc posing as PXE BIOS, UEFI, iPXE and a
// Raspberry Pi gets, from a real socket, what each must be told.
func TestUdhcpcBootClients(t *testing.T) {
	l := newLab(t, "busybox")
	srv := l.startServer(l.writeInventory(labHosts(t)))
	const pxeVC = "PXEClient:Arch:00000:UNDI:002001"
	for _, tc := range []struct {
		name, mac string
		args      []string
		want      map[string]string // env var → value; "" = must be absent
	}{
		{"pxe-bios", "52:54:00:00:00:01", []string{"-V", pxeVC, "-x", "0x5d:0000"}, map[string]string{
			"ip": "198.18.0.11", "siaddr": "198.18.0.1", "boot_file": "undionly.kpxe",
			"rootpath": "iscsi:198.18.0.1::3260:0:iqn.2026-11.example.lab:node1",
			"opt203":   hex.EncodeToString([]byte("iqn.2026-11.example.lab:node1")), "opt43": ""}},
		{"pxe-uefi", "52:54:00:00:00:07", []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"}, map[string]string{
			"ip": "198.18.0.17", "siaddr": "198.18.0.1", "boot_file": "ipxe.efi", "rootpath": "",
			"opt203": hex.EncodeToString([]byte("iqn.2026-11.example.lab:node2"))}},
		{"ipxe", "52:54:00:00:00:01", []string{"-V", pxeVC, "-x", "0x5d:0000", "-x", "0x4d:69505845"}, map[string]string{
			"ip": "198.18.0.11", "siaddr": "198.18.0.1", "boot_file": "http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe",
			"rootpath": "iscsi:198.18.0.1::3260:0:iqn.2026-11.example.lab:node1",
			// 175: keep-san 8=1, no-pxedhcp 176=1
			"opt175": "080101b00101"}},
		// UEFI HTTP Boot (EDK2's vendor class and arch 16): the loader as a
		// URL, no next-server, no TFTP name (option 60: httpBootClient).
		{"uefi-http-boot", "52:54:00:00:00:07", []string{"-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"}, map[string]string{
			"ip": "198.18.0.17", "siaddr": "", "boot_file": "http://198.18.0.1:8080/ipxe.efi", "tftp": ""}},
		{"raspberry-pi", "dc:a6:32:00:00:01", []string{"-V", pxeVC, "-x", "0x5d:0000", "-O", "43", "-O", "60"}, map[string]string{
			"ip": "198.18.0.21", "siaddr": "198.18.0.1", "boot_file": "", "tftp": "198.18.0.1",
			"opt43": "0914000011" + hex.EncodeToString([]byte("Raspberry Pi Boot")) + "0a0400505845ff"}},
		{"stray-os-client", "52:54:00:aa:bb:cc", nil, map[string]string{
			"ip": "198.18.0.100", "siaddr": "", "boot_file": "", "opt203": "", "rootpath": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := l.Attach(tc.name, tc.mac, "")
			env := l.udhcpc(ns, tc.name, tc.args...)
			for k, want := range tc.want {
				got, ok := env[k]
				if k == "siaddr" && got == "0.0.0.0" {
					got, ok = "", false
				}
				if want == "" && ok {
					t.Errorf("%s = %q, want absent", k, got)
				}
				if want != "" && got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	// One decision line per request, with host, mac and ip.
	var acks int
	for _, d := range decisions(t, srv.log) {
		if d.Msg == "ack" && d.MAC == "52:54:00:00:00:01" {
			acks++
			if d.Host != "node1" || d.IP != "198.18.0.11" {
				t.Errorf("decision line %+v", d)
			}
		}
	}
	if acks != 2 {
		t.Errorf("%d ack lines for node1, want 2 (pxe-bios, ipxe)", acks)
	}
}

// TestUdhcpcNoLoaderNoOffer: an architecture with no loader gets silence
// (udhcpc gives up) and a warning, not a wrong file.
func TestUdhcpcNoLoaderNoOffer(t *testing.T) {
	l := newLab(t, "busybox")
	srv := l.startServer(l.writeInventory(labHosts(t)))
	ns := l.Attach("arm", "52:54:00:00:00:01", "")
	out, err := exec.Command("ip", "netns", "exec", ns, "busybox", "udhcpc", "-f", "-q", "-n", "-t", "2", "-T", "1",
		"-i", "eth0", "-s", "/bin/true", "-V", "PXEClient:Arch:00011:UNDI:003016", "-x", "0x5d:000b").CombinedOutput()
	if err == nil {
		t.Fatalf("udhcpc got a lease for arch 11 without a loader:\n%s", out)
	}
	log := l.waitFor(srv.log, "no iPXE loader for client architecture 11", 5*time.Second)
	if !strings.Contains(log, `"level":"warn"`) {
		t.Errorf("no warning logged:\n%s", log)
	}
}

// TestDhclientPoolRenewRelease: ISC dhclient gets a pool lease, renews it
// at T1 (lease time 20 s here) and releases it.
func TestDhclientPoolRenewRelease(t *testing.T) {
	l := newLab(t, "dhclient")
	srv := l.startServer(l.writeInventory(labHosts(t)), "NETSAN_DHCPD_TEST_LEASE=20s")
	ns := l.Attach("dhclient", "52:54:00:12:34:56", "")
	events := filepath.Join(l.dir, "dhclient.events")
	script := filepath.Join(l.dir, "dhclient-script")
	// Configure the address (renewals are unicast from it); touch nothing
	// outside the namespace (no resolv.conf).
	os.WriteFile(script, []byte(`#!/bin/sh
echo "$reason $new_ip_address" >> `+events+`
case $reason in BOUND|RENEW|REBIND|REBOOT) ip addr replace $new_ip_address/24 dev $interface ;; esac
exit 0
`), 0o755)
	conf := filepath.Join(l.dir, "dhclient.conf")
	os.WriteFile(conf, []byte("request subnet-mask, routers;\n"), 0o644)
	lf, pf := filepath.Join(l.dir, "dhclient.leases"), filepath.Join(l.dir, "dhclient.pid")
	l.start(ns, "dhclient", nil, "dhclient", "-4", "-d", "-v", "-cf", conf, "-lf", lf, "-pf", pf, "-sf", script, "eth0")
	l.waitFor(events, "BOUND 198.18.0.100", 20*time.Second)
	ev := l.waitFor(events, "RENEW 198.18.0.100", 30*time.Second)
	t.Logf("dhclient events:\n%s", ev)

	var renewed bool
	for _, d := range decisions(t, srv.log) {
		// A renewal is a REQUEST from the bound address (ciaddr), answered by unicast.
		if d.Msg == "ack" && d.MAC == "52:54:00:12:34:56" && d.IP == "198.18.0.100" {
			renewed = true
		}
	}
	if !renewed {
		t.Fatal("no ack for the renewal in the server log")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "dhclient", "-4", "-r", "-v", "-cf", conf, "-lf", lf, "-pf", pf, "-sf", script, "eth0").CombinedOutput(); err != nil {
		t.Fatalf("dhclient -r: %v\n%s", err, out)
	}
	l.waitFor(srv.log, `"msg":"release"`, 10*time.Second)
	leases := readLeases(t, filepath.Join(l.dir, "data"))
	if l, ok := leases["198.18.0.100"]; !ok || l.MAC != "52:54:00:12:34:56" || l.Expires.After(time.Now()) {
		t.Errorf("lease after release: %+v (want kept, expired)", l)
	}
}

// readLeases reads the lease journal in dir as it is, while the server
// may be appending to it.
func readLeases(t *testing.T, dir string) map[string]Lease {
	t.Helper()
	d, err := readLeaseDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Lease{}
	for _, l := range d.leases {
		m[l.IP.String()] = l
	}
	return m
}

// TestKill9KeepsLeases: a server killed with SIGKILL right after an ACK
// restarts knowing the lease: a second client, even asking for that
// address, gets another.
func TestKill9KeepsLeases(t *testing.T) {
	l := newLab(t, "busybox")
	inv := l.writeInventory(labHosts(t))
	srv := l.startServer(inv)
	first := l.udhcpc(l.Attach("a", "52:54:00:00:aa:01", ""), "a")["ip"]
	if first == "" {
		t.Fatal("first client got no address")
	}
	srv.kill9(t)
	l.startServer(inv)
	second := l.udhcpc(l.Attach("b", "52:54:00:00:aa:02", ""), "b", "-r", first)["ip"]
	if second == "" || second == first {
		t.Errorf("after kill -9 the second client got %q; the first holds %q", second, first)
	}
}

// TestProxyBesideDnsmasq: dnsmasq hands out the addresses; netsan in proxy
// mode gives PXE firmware its boot file (PXE 2.1 proxyDHCP: an offer with no
// address on 67, then an ACK on 4011) and leaves other clients alone. Once
// with dnsmasq on another machine of the LAN (its own namespace on the
// bridge), once on netsan's own host (the same namespace and address).
func TestProxyBesideDnsmasq(t *testing.T) {
	for _, sameHost := range []bool{false, true} {
		name := "dnsmasq on another host"
		if sameHost {
			name = "dnsmasq on the same host"
		}
		t.Run(name, func(t *testing.T) { proxyBesideDnsmasq(t, sameHost) })
	}
}

func proxyBesideDnsmasq(t *testing.T, sameHost bool) {
	l := newLab(t, "dnsmasq", "dhclient")
	dns, dnsAddr, iface := l.Server, "198.18.0.1", "br0"
	if !sameHost {
		dns, dnsAddr, iface = l.Attach("dnsmasq", "52:54:00:00:d0:01", "198.18.0.2/24"), "198.18.0.2", "eth0"
	}
	leasef := filepath.Join(l.dir, "dnsmasq.leases")
	l.start(dns, "dnsmasq", nil, "dnsmasq", "-k", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface="+iface, "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=198.18.0.150,198.18.0.160,255.255.255.0,1h",
		"--dhcp-leasefile="+leasef, "--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"),
		"--log-dhcp", "--log-facility=-")
	l.waitFor(filepath.Join(l.dir, "dnsmasq.log"), "DHCP, IP range", 10*time.Second)
	srv := l.startServer(l.writeInventory(`
[dhcp]
mode      = "proxy"
interface = "br0"
subnet    = "198.18.0.0/24"

[[host]]
name = "node1"
mac  = "52:54:00:00:00:01"
ip   = "198.18.0.11"
root = { image = "roots/node1.img", size = "1GiB" }
`))

	t.Run("os client gets dnsmasq's address, nothing from netsan", func(t *testing.T) {
		ns := l.Attach("os", "52:54:00:00:0e:01", "")
		script := filepath.Join(l.dir, "os.sh")
		events := filepath.Join(l.dir, "os.events")
		os.WriteFile(script, []byte("#!/bin/sh\necho \"$reason $new_ip_address $new_dhcp_server_identifier\" >> "+events+"\nexit 0\n"), 0o755)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "dhclient", "-4", "-1", "-v", "-cf", "/dev/null",
			"-lf", filepath.Join(l.dir, "os.leases"), "-pf", filepath.Join(l.dir, "os.pid"), "-sf", script, "eth0").CombinedOutput()
		if err != nil {
			t.Fatalf("dhclient: %v\n%s", err, out)
		}
		exec.Command("ip", "netns", "exec", ns, "dhclient", "-x", "-pf", filepath.Join(l.dir, "os.pid")).Run()
		ev, _ := os.ReadFile(events)
		var ip, sid string
		for _, line := range strings.Split(string(ev), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "BOUND" {
				ip, sid = f[1], f[2]
			}
		}
		if !inDnsmasqRange(ip) || sid != dnsAddr {
			t.Errorf("dhclient bound %q from %q, want an address of dnsmasq's range from %s; events:\n%s", ip, sid, dnsAddr, ev)
		}
		for _, d := range decisions(t, srv.log) {
			if d.MAC == "52:54:00:00:0e:01" {
				t.Errorf("netsan answered an OS client in proxy mode: %+v", d)
			}
		}
	})

	t.Run("pxe firmware: address from dnsmasq, boot file from netsan", func(t *testing.T) {
		ns := l.Attach("pxe", "52:54:00:00:00:01", "")
		pxeProxyClient(t, l, ns, mustMAC("52:54:00:00:00:01"))
	})

	t.Run("uefi http boot: address from dnsmasq, loader URL from netsan", func(t *testing.T) {
		ns := l.Attach("http", "52:54:00:00:00:01", "")
		httpBootClient(t, ns, mustMAC("52:54:00:00:00:01"), true)
	})
}

// TestHTTPBootClient: UEFI HTTP Boot firmware's DHCP, as EDK2's HttpBootDxe
// sends it, answered by netsan alone (proxy mode: TestProxyBesideDnsmasq).
func TestHTTPBootClient(t *testing.T) {
	l := newLab(t)
	l.startServer(l.writeInventory(labHosts(t)))
	ns := l.Attach("http", "52:54:00:00:00:07", "")
	httpBootClient(t, ns, mustMAC("52:54:00:00:00:07"), false)
}

func inDnsmasqRange(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && pool{netip.MustParseAddr("198.18.0.150"), netip.MustParseAddr("198.18.0.160")}.contains(a)
}

// TestUdhcpcDeclines: udhcpc -a probes the offered address with ARP; a
// squatter answers, udhcpc sends DHCPDECLINE, and its next DISCOVER is
// offered another address; the declined one stays quarantined in the file.
func TestUdhcpcDeclines(t *testing.T) {
	l := newLab(t, "busybox")
	srv := l.startServer(l.writeInventory(labHosts(t)))
	l.Attach("squatter", "52:54:00:00:5e:01", "198.18.0.100/24")
	ns := l.Attach("probe", "52:54:00:00:5e:02", "")
	env := l.udhcpc(ns, "probe", "-a")
	if env["ip"] == "" || env["ip"] == "198.18.0.100" {
		t.Fatalf("udhcpc bound %q; .100 is in use by the squatter", env["ip"])
	}
	l.waitFor(srv.log, `"msg":"decline"`, 5*time.Second)
	le, ok := readLeases(t, filepath.Join(l.dir, "data"))["198.18.0.100"]
	if !ok || le.State != StateDeclined || !le.Expires.After(time.Now()) {
		t.Errorf("198.18.0.100 in the lease journal: %+v, want declined until later", le)
	}
}
