//go:build ceph

package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/netsantest"
)

var (
	leaseFlag = flag.Duration("lease", 3*time.Second, "the gateways' leadership lease")
	killsFlag = flag.Int("kills", 0, "TestTakeoverTimes: how many times to kill -9 the leader (0: skip)")
)

// The lab: gateways and a client on one bridge, the Ceph cluster in a
// namespace of its own on it.
const (
	floating   = "198.18.0.1/24"
	floatingIP = "198.18.0.1"
	cephIP     = "198.18.0.100"
	statusPort = "9100"
	testObject = "netsan.test" // what a leader writes while it leads
)

// The environment of a gateway process: the test binary run again in a
// gateway's namespace.
const (
	envGateway   = "NETSAN_TEST_GATEWAY"
	envConf      = "NETSAN_TEST_CEPH_CONF"
	envPool      = "NETSAN_TEST_CEPH_POOL"
	envLease     = "NETSAN_TEST_LEASE"
	envInventory = "NETSAN_TEST_INVENTORY"
	envStatus    = "NETSAN_TEST_STATUS"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(envGateway); name != "" {
		os.Exit(gatewayMain(name))
	}
	os.Exit(m.Run())
}

// gatewayMain is one gateway, as netsan serve --gateway runs one: an
// Elector on its own Ceph client, whose status and metrics it serves on
// its own address, and which, while it leads, writes a counter to RADOS
// every 100 ms as a service writes an image. SIGTERM hands over. Fenced,
// it tries one more write with its client, prints what that returned, and
// exits 1.
func gatewayMain(name string) int {
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.Lock(os.Stderr), zap.DebugLevel))
	lease, err := time.ParseDuration(os.Getenv(envLease))
	if err != nil {
		log.Error("lease", zap.Error(err))
		return 2
	}
	c, err := ceph.Connect(ceph.Config{Conf: os.Getenv(envConf), Pool: os.Getenv(envPool)}, 10*time.Second)
	if err != nil {
		log.Error("ceph", zap.Error(err))
		return 2
	}
	defer c.Close()
	e := cluster.New(cluster.Config{
		Gateway: name, Interface: "eth0", Address: netip.MustParsePrefix(floating),
		Lease: lease, Inventory: os.Getenv(envInventory),
	}, c, log)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cluster.NewCollector(e))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(e.Status())
	})
	ln, err := net.Listen("tcp", os.Getenv(envStatus))
	if err != nil {
		log.Error("status", zap.Error(err))
		return 2
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = e.Run(ctx, func(ctx context.Context) error {
		log.Info("lead: serving")
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for seq := 1; ; seq++ {
			select {
			case <-ctx.Done():
				log.Info("lead: stopped")
				return nil
			case <-t.C:
			}
			if err := c.SetOmap(testObject, map[string][]byte{"write." + name: []byte(strconv.Itoa(seq))}); err != nil {
				log.Warn("lead: write", zap.Error(err))
			}
		}
	})
	if errors.Is(err, cluster.ErrFenced) {
		werr := c.SetOmap(testObject, map[string][]byte{"fenced." + name: []byte("written")})
		fmt.Printf("FENCED-WRITE %v\n", werr)
	}
	if err != nil {
		log.Error("run", zap.Error(err))
		return 1
	}
	return 0
}

// lab is the bridge, the cluster and the gateways of one test.
type lab struct {
	t      *testing.T
	l      *netsantest.Lab
	ceph   *cephtest.Cluster
	client string // the client's namespace
	gws    []*gateway
	lease  time.Duration
}

// gateway is one gateway's namespace and its current process.
type gateway struct {
	name, ns, ip, mac string
	inventory         string
	log               *netsantest.LogBuffer
	proc              *netsantest.Process
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := netsantest.NewLab(t, "clu")
	l.Bridge("198.18.0.254/24")
	cephNS := l.Attach("ceph", "02:00:5e:10:01:64", cephIP+"/24")
	lb := &lab{t: t, l: l, lease: *leaseFlag}
	lb.client = l.Attach("c", "02:00:5e:10:01:02", "198.18.0.2/24")
	for i, name := range []string{"gw1", "gw2"} {
		g := &gateway{
			name: name, ip: fmt.Sprintf("198.18.0.%d", 11+i), mac: fmt.Sprintf("02:00:5e:10:01:%02x", 0x11+i),
			inventory: "inventory-1", log: netsantest.NewLog(t, name),
		}
		g.ns = l.Attach(name, g.mac, g.ip+"/24")
		lb.gws = append(lb.gws, g)
	}
	lb.ceph = cephtest.Start(t, cephtest.Options{Addr: cephIP, NetNS: cephNS})
	t.Cleanup(func() {
		if t.Failed() { // librados' own log, the gateways' included
			b, _ := os.ReadFile(filepath.Join(lb.ceph.Dir, "client.admin.log"))
			t.Logf("client.admin.log (last 8 KiB):\n%s", b[max(0, len(b)-8192):])
		}
	})
	return lb
}

// start runs g's gateway process in its namespace.
func (lb *lab) start(g *gateway) {
	lb.t.Helper()
	self, err := os.Executable()
	if err != nil {
		lb.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", g.ns, self, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envGateway+"="+g.name, envConf+"="+lb.ceph.Conf, envPool+"="+lb.ceph.Pool,
		envLease+"="+lb.lease.String(), envInventory+"="+g.inventory,
		envStatus+"="+net.JoinHostPort(g.ip, statusPort))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(g.log, "=== start %s\n", g.name)
	g.proc = netsantest.Start(lb.t, cmd, g.log)
}

// signal sends sig to g's process (ip netns exec runs it in its place).
func (g *gateway) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := g.proc.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", g.name, err)
	}
}

// exited waits for g's process to end and returns its exit code.
func (g *gateway) exited(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-g.proc.Done():
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s", g.name, within)
	}
	var ee *exec.ExitError
	if err := g.proc.Err(); errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Logf("%s: %s", g.name, ws.Signal())
		}
		return ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", g.name, err)
	}
	return 0
}

// hasAddress reports whether the floating address is on ns's eth0.
func hasAddress(t *testing.T, ns string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr: %v\n%s", err, out)
	}
	return strings.Contains(string(out), " "+floating+" ")
}

// holders are the gateways whose interface has the floating address.
func (lb *lab) holders() []*gateway {
	var hs []*gateway
	for _, g := range lb.gws {
		if hasAddress(lb.t, g.ns) {
			hs = append(hs, g)
		}
	}
	return hs
}

// leader waits until exactly one gateway has the floating address and
// returns it.
func (lb *lab) leader(within time.Duration) *gateway {
	lb.t.Helper()
	var l *gateway
	netsantest.WaitFor(lb.t, "one gateway with the floating address", within, func() bool {
		hs := lb.holders()
		if len(hs) == 1 {
			l = hs[0]
		}
		return len(hs) == 1
	})
	return l
}

// other is the gateway that is not g.
func (lb *lab) other(g *gateway) *gateway {
	if lb.gws[0] == g {
		return lb.gws[1]
	}
	return lb.gws[0]
}

// get GETs path from g's status server, from the client's namespace. The
// connection is made on the namespace's thread: http.Client would dial
// from another, outside it.
func (lb *lab) get(g *gateway, path string) (string, error) {
	var body []byte
	var err error
	netsantest.InNetns(lb.t, lb.client, func() {
		var conn net.Conn
		if conn, err = net.DialTimeout("tcp", net.JoinHostPort(g.ip, statusPort), 3*time.Second); err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		req, _ := http.NewRequest("GET", "http://"+net.JoinHostPort(g.ip, statusPort)+path, nil)
		req.Close = true
		if err = req.Write(conn); err != nil {
			return
		}
		var resp *http.Response
		if resp, err = http.ReadResponse(bufio.NewReader(conn), req); err != nil {
			return
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
	})
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", g.name, path, err)
	}
	return string(body), nil
}

// fetch is get failing the test on an error.
func (lb *lab) fetch(g *gateway, path string) string {
	lb.t.Helper()
	body, err := lb.get(g, path)
	if err != nil {
		lb.t.Fatal(err)
	}
	return body
}

// status is g's Status; a gateway not answering yet (still connecting to
// Ceph) has the zero Status.
func (lb *lab) status(g *gateway) cluster.Status {
	lb.t.Helper()
	var s cluster.Status
	body, err := lb.get(g, "/status")
	if err != nil {
		return s
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		lb.t.Fatalf("%s /status: %v: %q", g.name, err, body)
	}
	return s
}

// metric is the value of the series named (with its labels, as the text
// format writes them) in g's /metrics; -1 when it is not there.
func (lb *lab) metric(g *gateway, series string) float64 {
	lb.t.Helper()
	for line := range strings.SplitSeq(lb.fetch(g, "/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				lb.t.Fatalf("%s: %q: %v", g.name, line, err)
			}
			return f
		}
	}
	return -1
}

var lladdr = regexp.MustCompile(`lladdr (\S+)`)

// neighbour is the MAC the client's neighbour table has for the floating
// address ("" for none).
func (lb *lab) neighbour() string {
	lb.t.Helper()
	out, _ := exec.Command("ip", "-n", lb.client, "neigh", "show", floatingIP, "dev", "eth0").Output()
	if m := lladdr.FindStringSubmatch(string(out)); m != nil {
		return m[1]
	}
	return ""
}

// touch sends the floating address a datagram from the client, which
// makes the client resolve it (ARP) and so holds an entry for it.
func (lb *lab) touch() {
	lb.t.Helper()
	netsantest.InNetns(lb.t, lb.client, func() {
		c, err := net.Dial("udp4", floatingIP+":9")
		if err != nil {
			lb.t.Error(err)
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("ping"))
	})
}

// omap reads key of the test object's omap with rados(8); "" when unset.
func (lb *lab) omap(key string) string {
	lb.t.Helper()
	f := filepath.Join(lb.t.TempDir(), "value")
	cmd := exec.Command("ip", "netns", "exec", lb.l.Name("ceph"),
		"rados", "-c", lb.ceph.Conf, "-p", lb.ceph.Pool, "getomapval", testObject, key, f)
	if out, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "No such key") {
			return ""
		}
		lb.t.Fatalf("rados getomapval %s: %v\n%s", key, err, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		lb.t.Fatal(err)
	}
	return string(b)
}

// takeover kills the leader with sig and returns the standby that then
// holds the floating address, and how long after the signal it had it.
func (lb *lab) takeover(sig syscall.Signal, within time.Duration) (*gateway, time.Duration) {
	lb.t.Helper()
	old := lb.leader(5 * time.Second)
	next := lb.other(old)
	t0 := time.Now()
	old.signal(lb.t, sig)
	netsantest.WaitFor(lb.t, fmt.Sprintf("%s: %s takes over from %s", sig, next.name, old.name), within, func() bool {
		return hasAddress(lb.t, next.ns)
	})
	return next, time.Since(t0)
}

// TestFailover runs two gateways as separate processes in their own
// namespaces on one bridge, with the Ceph cluster on it too, and takes the
// leader away three ways: kill -9, SIGTERM, and SIGSTOP past its lease
// (split brain). Each time exactly one gateway ends up with the floating
// address, the client's neighbour entry follows it, and the statuses and
// metrics say who leads.
func TestFailover(t *testing.T) {
	lb := newLab(t)
	lease := lb.lease
	for _, g := range lb.gws {
		lb.start(g)
	}

	// 1. Exactly one leader, and it stays one: the address is on its
	// interface only, and both gateways name it.
	first := lb.leader(lease + 10*time.Second)
	standby := lb.other(first)
	for end := time.Now().Add(2 * lease); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if hs := lb.holders(); len(hs) != 1 || hs[0] != first {
			t.Fatalf("the floating address moved or doubled with nobody stopped: on %d gateways", len(hs))
		}
	}
	netsantest.WaitFor(t, "both gateways name the leader", 2*lease, func() bool {
		a, b := lb.status(first), lb.status(standby)
		return a.Leading && a.Leader == first.name && !b.Leading && b.Leader == first.name && len(b.Gateways) == 2
	})

	// 2. kill -9: the standby leads within the lease and a few seconds;
	// the address left the dead leader (its lifetime ran out) and the
	// client's entry for it has the new leader's MAC without the client
	// asking (gratuitous ARP).
	lb.touch()
	netsantest.WaitFor(t, "the client resolves the floating address", 5*time.Second, func() bool {
		return lb.neighbour() == first.mac
	})
	next, took := lb.takeover(syscall.SIGKILL, lease+5*time.Second)
	t.Logf("kill -9 %s: %s had the floating address %s later", first.name, next.name, took.Round(time.Millisecond))
	first.exited(t, 10*time.Second)
	if hasAddress(t, first.ns) {
		t.Errorf("%s, killed, still has the floating address", first.name)
	}
	netsantest.WaitFor(t, "the client's neighbour entry moves to the new leader", 3*time.Second, func() bool {
		return lb.neighbour() == next.mac
	})

	// 5. Status and metrics after a takeover.
	netsantest.WaitFor(t, "the new leader's status", 2*lease, func() bool {
		s := lb.status(next)
		return s.Leading && s.Leader == next.name && s.Takeovers == 1 && s.Renewals > 0
	})
	if v := lb.metric(next, `netsan_cluster_leader{gateway="`+next.name+`"}`); v != 1 {
		t.Errorf("netsan_cluster_leader{gateway=%q} = %v on the leader, want 1", next.name, v)
	}
	if v := lb.metric(next, `netsan_cluster_leader{gateway="`+first.name+`"}`); v != 0 {
		t.Errorf("netsan_cluster_leader{gateway=%q} = %v on the leader, want 0", first.name, v)
	}
	if v := lb.metric(next, "netsan_cluster_takeovers_total"); v != 1 {
		t.Errorf("netsan_cluster_takeovers_total = %v, want 1", v)
	}
	if v := lb.metric(next, "netsan_cluster_lease_renewals_total"); v < 1 {
		t.Errorf("netsan_cluster_lease_renewals_total = %v, want some", v)
	}

	// The killed gateway comes back as a standby, with an inventory that
	// differs: both sides see that, and the leader warns once.
	first.inventory = "inventory-2"
	lb.start(first)
	netsantest.WaitFor(t, "the restarted gateway stands by and sees the leader", 2*lease+5*time.Second, func() bool {
		s := lb.status(first)
		return !s.Leading && s.Leader == next.name && slices.ContainsFunc(s.Gateways, func(g cluster.Gateway) bool {
			return g.Name == next.name && g.Differs
		})
	})
	time.Sleep(2 * lease) // several refreshes
	if n := strings.Count(next.log.String(), "another gateway serves a different inventory"); n != 1 {
		t.Errorf("the leader warned %d times of the other's inventory, want once", n)
	}
	if hs := lb.holders(); len(hs) != 1 || hs[0] != next {
		t.Fatalf("a standby's start moved the floating address")
	}

	// 3. SIGTERM: a planned handover, under 2 s.
	handed, took := lb.takeover(syscall.SIGTERM, 5*time.Second)
	t.Logf("SIGTERM %s: %s had the floating address %s later", next.name, handed.name, took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("a planned handover took %s, want under 2 s", took)
	}
	if code := next.exited(t, 10*time.Second); code != 0 {
		t.Errorf("%s exited %d after SIGTERM, want 0", next.name, code)
	}
	if hasAddress(t, next.ns) {
		t.Errorf("%s handed over but kept the floating address", next.name)
	}
	next.inventory = "inventory-2"
	lb.start(next)

	// 4. Split brain: the leader frozen past its lease. The standby takes
	// over and fences it; woken, the old leader has no address, does not
	// lead again, and its Ceph client can no longer write.
	frozen := handed
	thaw := lb.other(frozen)
	netsantest.WaitFor(t, thaw.name+" stands by", 2*lease+5*time.Second, func() bool {
		return lb.status(thaw).Leader == frozen.name
	})
	client := ""
	for _, g := range lb.status(frozen).Gateways {
		if g.Name == frozen.name {
			client = g.Client
		}
	}
	if client == "" {
		t.Fatalf("%s's status has no client address", frozen.name)
	}
	frozen.signal(t, syscall.SIGSTOP)
	netsantest.WaitFor(t, thaw.name+" takes over from the frozen leader", lease+10*time.Second, func() bool {
		return hasAddress(t, thaw.ns)
	})
	if hasAddress(t, frozen.ns) {
		t.Errorf("the frozen leader's interface still has the floating address (its lifetime should have ended)")
	}
	out, err := lb.ceph.Ceph("osd", "blocklist", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, client) {
		t.Errorf("ceph osd blocklist ls does not list the old leader's client %s:\n%s", client, out)
	}
	written := lb.omap("write." + frozen.name)
	if written == "" {
		t.Fatalf("the old leader wrote nothing while it led")
	}
	frozen.signal(t, syscall.SIGCONT)
	if code := frozen.exited(t, lease+10*time.Second); code != 1 {
		t.Errorf("the fenced leader exited %d, want 1", code)
	}
	log := frozen.log.String()
	if m := regexp.MustCompile(`FENCED-WRITE (.*)`).FindStringSubmatch(log); m == nil || !strings.Contains(m[1], "shutdown") {
		t.Errorf("the fenced leader's last write: %v, want EBLOCKLISTED (ESHUTDOWN)", m)
	}
	if after := lb.omap("write." + frozen.name); after != written {
		t.Errorf("the fenced leader wrote after the takeover: %s → %s", written, after)
	}
	if v := lb.omap("fenced." + frozen.name); v != "" {
		t.Errorf("the fenced leader's write landed: %q", v)
	}
	if hasAddress(t, frozen.ns) {
		t.Errorf("the fenced leader has the floating address")
	}
	if s := lb.status(thaw); !s.Leading || s.Leader != thaw.name || s.Takeovers != 1 {
		t.Errorf("after the split brain %s's status: leading %v, leader %q, takeovers %d; want it leading, once",
			thaw.name, s.Leading, s.Leader, s.Takeovers)
	}
	if hs := lb.holders(); len(hs) != 1 || hs[0] != thaw {
		t.Errorf("after the split brain the floating address is on %d gateways", len(hs))
	}
}

// TestTakeoverTimes kills the leader -kills times (kill -9, the killed
// gateway restarted as a standby each time) and reports how long the
// standby took to have the floating address: go test -tags ceph,pacific
// -run TestTakeoverTimes ./cluster/ -kills 10 [-lease 5s].
func TestTakeoverTimes(t *testing.T) {
	if *killsFlag == 0 {
		t.Skip("-kills N to measure")
	}
	lb := newLab(t)
	for _, g := range lb.gws {
		lb.start(g)
	}
	lb.leader(lb.lease + 10*time.Second)
	var times []time.Duration
	for range *killsFlag {
		old := lb.leader(5 * time.Second)
		// Wait for the standby to be standing by before the kill, as in
		// a cluster that has been up a while.
		netsantest.WaitFor(t, "a standby", 2*lb.lease+10*time.Second, func() bool {
			return lb.status(lb.other(old)).Leader == old.name
		})
		_, took := lb.takeover(syscall.SIGKILL, lb.lease+10*time.Second)
		times = append(times, took)
		old.exited(t, 10*time.Second)
		lb.start(old)
	}
	sorted := slices.Clone(times)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var ms []string
	for _, d := range times {
		ms = append(ms, strconv.FormatInt(d.Milliseconds(), 10))
	}
	t.Logf("lease %s, %d kills: takeover ms %s; min %s median %s max %s", lb.lease, len(times),
		strings.Join(ms, " "), sorted[0].Round(time.Millisecond), sorted[len(sorted)/2].Round(time.Millisecond),
		sorted[len(sorted)-1].Round(time.Millisecond))
}
