// Command dhcp measures DHCP lease rate: netsan's dhcpd and dnsmasq, side by
// side in one run, each in its own pair of network namespaces (198.18.0.0/20
// on a veth, or the -subnet given), answer N distinct simulated clients doing DORA
// (DISCOVER/OFFER/REQUEST/ACK) with at most C in flight. It prints leases/s
// and DORA latency percentiles as a Markdown table. Run as root.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

var syscalls bool

func main() {
	var (
		clients  = flag.Int("clients", 2000, "distinct MACs, one DORA each")
		inflight = flag.Int("inflight", 64, "DORAs in flight at once")
		rounds   = flag.Int("rounds", 3, "runs per server (the best rate and its percentiles are reported)")
		subnet   = flag.String("subnet", "198.18.0.0/20", "the lab's subnet, inside 198.18.0.0/15: the server is its first address, the pool from its 257th to 6 before its last")
		servers  = flag.String("servers", "netsan,dnsmasq", "the servers to measure, in order")
		deadline = flag.Duration("deadline", 0, "start no DORA after this long in a round (0: none); the rate is of the DORAs started, and the table says how many")
		serve    = flag.String("serve", "", "internal: run netsan dhcpd on this inventory")
	)
	flag.BoolVar(&syscalls, "syscalls", false, "run each server under strace -c and print its system call counts (slow: for explaining, not for rates)")
	flag.Parse()
	if *serve != "" {
		if err := serveNetsan(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/dhcp: needs root (network namespaces)")
		os.Exit(1)
	}
	p, err := netip.ParsePrefix(*subnet)
	if err != nil || !netip.MustParsePrefix("198.18.0.0/15").Contains(p.Addr()) || p.Bits() < 15 || p.Bits() > 22 {
		fmt.Fprintf(os.Stderr, "bench/dhcp: -subnet %q: want a /15 to /22 inside 198.18.0.0/15\n", *subnet)
		os.Exit(1)
	}
	a := newAddressing(p.Masked())
	if a.size < *clients {
		fmt.Fprintf(os.Stderr, "bench/dhcp: -subnet %s: a pool of %d addresses for %d clients\n", p, a.size, *clients)
		os.Exit(1)
	}
	if _, err := exec.LookPath("dnsmasq"); err != nil && strings.Contains(*servers, "dnsmasq") {
		fmt.Fprintln(os.Stderr, "bench/dhcp: dnsmasq not installed (Debian: dnsmasq-base)")
		os.Exit(1)
	}
	var results []result
	for _, srv := range strings.Split(*servers, ",") {
		if srv != "netsan" && srv != "dnsmasq" {
			fmt.Fprintf(os.Stderr, "bench/dhcp: -servers: %q is neither netsan nor dnsmasq\n", srv)
			os.Exit(1)
		}
		var best result
		for r := 0; r < *rounds; r++ {
			res, err := runOne(srv, a, *clients, *inflight, *deadline)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench/dhcp: %s: %v\n", srv, err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "%s round %d: %.0f leases/s, p99 %s, failed %d (NAKed %d), %s DORAs in %s\n", srv, r+1, res.rate, res.p99, res.failed, res.naks, res.done(), res.elapsed.Round(time.Millisecond))
			if res.rate > best.rate {
				best = res
			}
		}
		results = append(results, best)
	}
	fmt.Printf("| server | clients | in flight | leases/s | DORA p50 | DORA p99 | failed (NAKed) |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %s | %d | %.0f | %s | %s | %d (%d) |\n", r.server, r.done(), *inflight, r.rate,
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.failed, r.naks)
	}
}

type result struct {
	server   string
	clients  int // DORAs started
	asked    int // DORAs meant to: more than clients when -deadline stopped the round
	rate     float64
	p50, p99 time.Duration
	failed   int // DORAs that did not end in an ACK
	naks     int // of which the REQUEST was NAKed
	elapsed  time.Duration
}

// lab is a server namespace and a client namespace joined by a veth: the
// server's veth0 at the subnet's first address, the client's eth0.
type lab struct {
	*netsantest.Lab
	prog  *program
	cli   string
	dir   string
	procs []*exec.Cmd
}

// program is the netsantest.TB of this program: a failure runs the
// cleanups registered so far and ends it.
type program struct{ cleanups []func() }

func (p *program) Helper()          {}
func (p *program) Cleanup(f func()) { p.cleanups = append(p.cleanups, f) }

func (p *program) Fatalf(format string, args ...any) {
	p.close()
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func (p *program) Skipf(format string, args ...any) { p.Fatalf(format, args...) }

// close runs the cleanups, the last registered first.
func (p *program) close() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}

func newLab(a addressing) (*lab, error) {
	dir, err := os.MkdirTemp("", "bench-dhcp-")
	if err != nil {
		return nil, err
	}
	p := &program{}
	l := &lab{Lab: netsantest.NewLab(p, "benchdhcp"), prog: p, dir: dir}
	l.cli = l.Cable("c", "02:00:5e:10:00:01", "", a.server.String()+"/"+fmt.Sprint(a.subnet.Bits()))
	return l, nil
}

func (l *lab) close() {
	for _, p := range l.procs {
		if syscalls {
			// strace writes its summary when its tracee ends.
			syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
			time.Sleep(time.Second)
		}
		syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		p.Wait()
	}
	if syscalls {
		m, _ := filepath.Glob(filepath.Join(l.dir, "*.strace"))
		for _, f := range m {
			b, _ := os.ReadFile(f)
			fmt.Fprintf(os.Stderr, "== %s\n%s\n", filepath.Base(f), b)
		}
	}
	l.prog.close()
	os.RemoveAll(l.dir)
}

func (l *lab) start(name string, args ...string) error {
	f, err := os.Create(filepath.Join(l.dir, name+".log"))
	if err != nil {
		return err
	}
	if syscalls {
		args = append([]string{"strace", "-f", "-c", "-o", filepath.Join(l.dir, name+".strace")}, args...)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Server}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	l.procs = append(l.procs, cmd)
	return nil
}

// waitLog waits (bounded) for a line in a server's log.
func (l *lab) waitLog(name, want string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(l.dir, name+".log"))
		if strings.Contains(string(b), want) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(l.dir, name+".log"))
	return fmt.Errorf("%s did not start: %s", name, b)
}

// addressing is the lab's subnet: the server at its first address, the
// pool from its 257th to 6 before its last.
type addressing struct {
	subnet              netip.Prefix
	server, first, last netip.Addr
	mask                string
	size                int
}

func newAddressing(p netip.Prefix) addressing {
	base := binary.BigEndian.Uint32(p.Addr().AsSlice())
	hosts := uint32(1) << (32 - p.Bits())
	addr := func(n uint32) netip.Addr { return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, base+n))) }
	mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
	return addressing{subnet: p, server: addr(1), first: addr(256), last: addr(hosts - 6), mask: mask, size: int(hosts - 6 - 256 + 1)}
}

// done says how many DORAs ran, and of how many when the deadline cut the round.
func (r result) done() string {
	if r.clients < r.asked {
		return fmt.Sprintf("%d of %d", r.clients, r.asked)
	}
	return fmt.Sprint(r.clients)
}

func runOne(server string, a addressing, clients, inflight int, deadline time.Duration) (result, error) {
	l, err := newLab(a)
	if err != nil {
		return result{}, err
	}
	defer l.close()
	data := filepath.Join(l.dir, "data")
	switch server {
	case "netsan":
		inv := filepath.Join(l.dir, "netsan.toml")
		os.WriteFile(inv, []byte(fmt.Sprintf(`
[server]
address  = %q
data_dir = %q
[dhcp]
interface = "veth0"
subnet    = %q
range     = [%q, %q]
router    = %q
lease_time = "1h"
`, a.server, data, a.subnet, a.first, a.last, a.server)), 0o644)
		exe, err := os.Executable()
		if err != nil {
			return result{}, err
		}
		if err := l.start(server, exe, "-serve", inv); err != nil {
			return result{}, err
		}
		if err := l.waitLog(server, "READY"); err != nil {
			return result{}, err
		}
	case "dnsmasq":
		os.MkdirAll(data, 0o755)
		if err := l.start(server, "dnsmasq", "-k", "--conf-file=/dev/null", "--port=0", "--user=root",
			"--interface=veth0", "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
			"--dhcp-range="+a.first.String()+","+a.last.String()+","+a.mask+",1h", "--dhcp-option=3,"+a.server.String(),
			"--dhcp-lease-max="+fmt.Sprint(max(10000, a.size)),
			"--dhcp-leasefile="+filepath.Join(data, "dnsmasq.leases"), "--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"),
			"--log-facility="+filepath.Join(l.dir, "dnsmasq-dhcp.log")); err != nil {
			return result{}, err
		}
		if err := l.waitLog("dnsmasq-dhcp", "DHCP, IP range"); err != nil {
			return result{}, err
		}
	}
	res, err := storm(l.cli, clients, inflight, deadline)
	res.server = server
	return res, err
}

// storm runs the clients from one socket in the client namespace
// (netsantest.DHCPClients); each exchange retransmits after 1 s and gives
// up after 3 tries (RFC 2131 clients back off longer).
func storm(ns string, clients, inflight int, deadline time.Duration) (result, error) {
	conn, err := netsantest.ListenDHCP(ns, "eth0")
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	waits := []time.Duration{time.Second, time.Second, time.Second}

	lat := make([]time.Duration, clients)
	failed := make([]bool, clients)
	var nakMu sync.Mutex
	naks := 0
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	start := time.Now()
	asked := clients
	for i := 0; i < asked; i++ {
		sem <- struct{}{}
		if deadline > 0 && time.Since(start) > deadline {
			<-sem
			clients = i
			break
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			mac := net.HardwareAddr{0x02, 0xbe, 0x9c, byte(i >> 16), byte(i >> 8), byte(i)}
			t0 := time.Now()
			if _, err := conn.DORA(context.Background(), mac, waits); err != nil {
				failed[i] = true
				if errors.Is(err, netsantest.ErrNAK) {
					nakMu.Lock()
					naks++
					nakMu.Unlock()
				}
				return
			}
			lat[i] = time.Since(t0)
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var ok []time.Duration
	nfail := 0
	for i, d := range lat[:clients] {
		if failed[i] {
			nfail++
			continue
		}
		ok = append(ok, d)
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i] < ok[j] })
	res := result{clients: clients, asked: asked, failed: nfail, naks: naks, elapsed: elapsed, rate: float64(len(ok)) / elapsed.Seconds()}
	if len(ok) > 0 {
		res.p50 = ok[len(ok)/2]
		res.p99 = ok[(len(ok)*99)/100]
	}
	return res, nil
}

// serveNetsan is the server process: netsan's dhcpd exactly as cmd/netsan
// runs it, logging its decisions (as dnsmasq logs its own) to a file.
func serveNetsan(path string) error {
	inv, _, err := inventory.Load(path)
	if err != nil {
		return err
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	cfg.OutputPaths = []string{filepath.Join(filepath.Dir(path), "netsan-decisions.log")}
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		return err
	}
	s, err := dhcpd.New(inv, log)
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		return err
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return s.Serve(ctx)
}
