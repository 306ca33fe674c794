package dhcpd

// Real-peer tests of the router advertisement responder: netsan's RA in
// the server namespace of a bridge lab (IPv6 on, as on a real LAN), ndisc6's
// rdisc6 soliciting from a client namespace, radvd as the LAN's real router.

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
)

// newRALab is a bridge lab whose br0 has IPv6 on and answers from its
// link-local address at once (no duplicate address detection).
func newRALab(t *testing.T, tools ...string) *lab {
	l := newLab(t, tools...)
	l.sysctl(l.Server, "net.ipv6.conf.br0.disable_ipv6=0", "net.ipv6.conf.br0.accept_dad=0")
	return l
}

func (l *lab) sysctl(ns string, settings ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, settings...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("sysctl %v in %s: %v\n%s", settings, ns, err, out)
	}
}

// attach6 cables a machine to br0 and waits until its eth0 has a usable
// (not tentative) link-local address to solicit from.
func (l *lab) attach6(role, mac string) string {
	l.t.Helper()
	ns := l.Attach(role, mac, "")
	l.sysctl(ns, "net.ipv6.conf.eth0.accept_dad=0")
	netsantest.WaitFor(l.t, ns+" link-local address", 10*time.Second, func() bool {
		out, _ := exec.Command("ip", "-n", ns, "-6", "addr", "show", "dev", "eth0", "scope", "link").Output()
		return strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative")
	})
	return ns
}

// serveRA runs an RA responder for the inventory at path in the server's
// namespace until the test ends.
func (l *lab) serveRA(path string) *RA {
	l.t.Helper()
	r := NewRA(l.load(path), zaptest.NewLogger(l.t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var err error
		done <- netsantest.Enter(l.Server, func() { err = r.Serve(ctx) })
		done <- err
	}()
	l.t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					l.t.Errorf("RA Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				l.t.Fatal("RA Serve did not return")
			}
		}
	})
	return r
}

func (l *lab) load(path string) *inventory.Inventory {
	l.t.Helper()
	inv, ps, err := inventory.Load(path)
	if err != nil {
		l.t.Fatalf("%v %v", ps, err)
	}
	return inv
}

// rdisc6 solicits from ns's eth0 (tries attempts, waiting a second for
// each) and returns what it printed; -m waits for every advertisement
// instead of the first.
func rdisc6(t *testing.T, ns string, attempts int, all bool) (string, error) {
	t.Helper()
	args := []string{"netns", "exec", ns, "rdisc6", "-r", strconv.Itoa(attempts), "-w", "1000"}
	if all {
		args = append(args, "-m")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(attempts+10)*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append(args, "eth0")...).CombinedOutput()
	return string(out), err
}

// advertisers are the link-local sources of the advertisements rdisc6 printed.
func advertisers(out string) []string {
	var from []string
	for _, m := range regexp.MustCompile(`(?m)^ from (\S+)`).FindAllStringSubmatch(out, -1) {
		from = append(from, m[1])
	}
	return from
}

// linkOf returns the link-local address and MAC of dev in ns.
func linkOf(t *testing.T, ns, dev string) (netip.Addr, net.HardwareAddr) {
	t.Helper()
	var (
		ll  netip.Addr
		mac net.HardwareAddr
		err error
	)
	netsantest.InNetns(t, ns, func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(dev); err == nil {
			mac = ifi.HardwareAddr
			ll, err = linkLocal(ifi)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ll, mac
}

// raMetric is the value of one of r's metrics.
func raMetric(t *testing.T, r *RA, name string) float64 {
	t.Helper()
	for _, mf := range netsantest.Gather(t, r) {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRAAnswersRdisc6: in proxy mode (the default there: the LAN's router
// owns IPv6) a solicitation gets no answer; once a reload makes netsan
// authoritative, rdisc6 hears "no IPv6 configuration here": router lifetime
// 0, M and O clear, no prefix, from br0's link-local address with its MAC.
func TestRAAnswersRdisc6(t *testing.T) {
	l := newRALab(t, "rdisc6")
	client := l.attach6("c", "52:54:00:00:06:01")
	ll, mac := linkOf(t, l.Server, "br0")

	proxy := l.writeInventory("[dhcp]\nmode = \"proxy\"\n")
	r := l.serveRA(proxy)
	if out, err := rdisc6(t, client, 2, false); err == nil || len(advertisers(out)) != 0 {
		t.Fatalf("proxy mode: rdisc6 heard an advertisement (%v):\n%s", err, out)
	}

	// server.address is on br0: the interface is found without dhcp.interface.
	if err := r.Reload(l.load(l.writeInventory("[dhcp]\nsubnet = \"198.18.0.0/24\"\n"))); err != nil {
		t.Fatal(err)
	}
	out, err := rdisc6(t, client, 5, false)
	if err != nil {
		t.Fatalf("authoritative: rdisc6: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Router lifetime\s*:\s*0 \(0x00000000\) seconds$`),
		regexp.MustCompile(`(?m)^Stateful address conf\.\s*:\s*No$`),
		regexp.MustCompile(`(?m)^Stateful other conf\.\s*:\s*No$`),
		regexp.MustCompile(`(?m)^ Source link-layer address: ` + regexp.QuoteMeta(strings.ToUpper(mac.String())) + `$`),
		regexp.MustCompile(`(?m)^ from ` + regexp.QuoteMeta(ll.String()) + `$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("rdisc6 output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Prefix") {
		t.Errorf("netsan's advertisement carries a prefix:\n%s", out)
	}
	if n := raMetric(t, r, "netsan_dhcp_ra_sent_total"); n < 1 {
		t.Errorf("netsan_dhcp_ra_sent_total = %v after an answer", n)
	}
}

// TestRAFollowsRecreatedInterface: the DHCP interface deleted and made
// again (a bridge torn down and rebuilt) has a new index and link-local
// address; the responder notices, listens on the new one, and a client on
// it is answered from the new address.
func TestRAFollowsRecreatedInterface(t *testing.T) {
	l := newRALab(t, "rdisc6")
	client := l.attach6("c", "52:54:00:00:06:03")
	l.serveRA(l.writeInventory("[dhcp]\ninterface = \"br0\"\nsubnet = \"198.18.0.0/24\"\n"))
	if out, err := rdisc6(t, client, 5, false); err != nil {
		t.Fatalf("before: rdisc6: %v\n%s", err, out)
	}

	l.IP(l.Server, "link", "del", "br0")
	time.Sleep(2 * linkCheckInterval) // long enough for the old listener to see it gone
	l.Bridge("198.18.0.1/24")
	l.sysctl(l.Server, "net.ipv6.conf.br0.disable_ipv6=0", "net.ipv6.conf.br0.accept_dad=0")
	l.IP(l.Server, "link", "set", l.CableEnd(1), "master", "br0")
	ll, _ := linkOf(t, l.Server, "br0")

	out, err := rdisc6(t, client, 8, false)
	if err != nil {
		t.Fatalf("after br0 was made again: rdisc6: %v\n%s", err, out)
	}
	if from := advertisers(out); len(from) == 0 || from[0] != ll.String() {
		t.Errorf("after br0 was made again: advertisement from %v, want the new br0's %s:\n%s", from, ll, out)
	}
}

// TestRAQuietBesideRouter: with radvd advertising a prefix and a default
// route on the same bridge, netsan hears it and stands down: a Linux client
// configures its address and default route from radvd, netsan hears the
// client's solicitations and sends no advertisement, and rdisc6 hears
// radvd alone.
func TestRAQuietBesideRouter(t *testing.T) {
	l := newRALab(t, "rdisc6", "radvd")
	r := l.serveRA(l.writeInventory("[dhcp]\ninterface = \"br0\"\nsubnet = \"198.18.0.0/24\"\n"))

	router := l.attach6("r", "52:54:00:00:06:fe")
	l.sysctl(router, "net.ipv6.conf.all.forwarding=1")
	routerLL, _ := linkOf(t, router, "eth0")
	conf := filepath.Join(l.dir, "radvd.conf")
	pidFile := filepath.Join(l.dir, "radvd.pid")
	const prefix = "2001:2:0:1::/64" // RFC 5180's benchmarking range, as 198.18.0.0/15 is for IPv4
	if err := os.WriteFile(conf, []byte(`interface eth0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 60;
	prefix `+prefix+` { AdvOnLink on; AdvAutonomous on; };
};
`), 0o644); err != nil {
		t.Fatal(err)
	}
	radvd := l.start(router, "radvd", nil, "radvd", "--nodaemon", "--config", conf, "--pidfile", pidFile, "--logmethod", "stderr")
	t.Cleanup(func() { stopByPIDFile(t, pidFile, radvd) })

	netsantest.WaitFor(t, "netsan to hear radvd", 15*time.Second, func() bool {
		return raMetric(t, r, "netsan_dhcp_ra_router_present") == 1
	})
	heard, sent := raMetric(t, r, "netsan_dhcp_ra_solicitations_total"), raMetric(t, r, "netsan_dhcp_ra_sent_total")

	// The client's kernel solicits when its link comes up, and takes its
	// address and default route from the answer.
	client := l.attach6("c", "52:54:00:00:06:02")
	netsantest.WaitFor(t, "the client to configure IPv6 from radvd", 20*time.Second, func() bool {
		addrs, _ := exec.Command("ip", "-n", client, "-6", "addr", "show", "dev", "eth0", "scope", "global").Output()
		routes, _ := exec.Command("ip", "-n", client, "-6", "route", "show", "default").Output()
		return strings.Contains(string(addrs), "inet6 2001:2:0:1:") &&
			strings.Contains(string(routes), "default via "+routerLL.String()+" dev eth0 proto ra")
	})
	out, err := rdisc6(t, client, 1, true)
	if err != nil {
		t.Fatalf("rdisc6: %v\n%s", err, out)
	}
	from := advertisers(out)
	if len(from) == 0 {
		t.Errorf("rdisc6 heard no advertisement:\n%s", out)
	}
	for _, a := range from {
		if a != routerLL.String() {
			t.Errorf("rdisc6 heard %s, want radvd (%s) alone:\n%s", a, routerLL, out)
		}
	}
	if !strings.Contains(out, "Prefix                   : "+prefix) {
		t.Errorf("rdisc6 did not hear radvd's prefix:\n%s", out)
	}
	if n := raMetric(t, r, "netsan_dhcp_ra_solicitations_total"); n <= heard {
		t.Errorf("netsan heard no solicitation from the client (%v before, %v after)", heard, n)
	}
	if n := raMetric(t, r, "netsan_dhcp_ra_sent_total"); n != sent {
		t.Errorf("netsan sent %v advertisements beside radvd", n-sent)
	}
}

// stopByPIDFile stops the daemon whose PID its pid file holds with SIGTERM
// and waits (bounded) for p, the process started, to exit.
func stopByPIDFile(t *testing.T, pidFile string, p *proc) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Errorf("%s: %v", pidFile, err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid != p.cmd.Process.Pid {
		t.Errorf("%s holds %q, started %d", pidFile, b, p.cmd.Process.Pid)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Errorf("kill %d: %v", pid, err)
		return
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: pid %d did not stop on SIGTERM", filepath.Base(p.log), pid)
	}
}
