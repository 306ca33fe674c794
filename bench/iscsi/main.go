// Command iscsi measures netsan's iSCSI target against tgtd in one run, on
// loopback, each serving a LUN over the same kind of sparse image file:
//
//	iscsi-perf -m 32 -b 8 -r      4 KiB random read, QD32
//	iscsi-perf -m 16 -b 256       128 KiB sequential read, QD16
//	8 × iscsi-perf -m 4 -b 8 -r   4 KiB random read, 8 sessions at QD4
//	qemu-img bench -w -d 32 -s 4k   4 KiB writes, QD32
//	qemu-img bench -w -d 16 -s 128k 128 KiB writes, QD16
//
// Targets alternate per round; the best round of each is reported as a
// Markdown table. Run as root (tgtd).
//
// With -store rbd (a build with -tags ceph,pacific: bench/rbd/run.sh) both
// LUNs are RBD images in a single-node cluster the benchmark starts, tgtd
// through its rbd backing store (Debian's tgt-rbd), and `rbd bench` at the
// same depth is reported as the cluster's own ceiling.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi"
	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/netsantest"
)

const (
	netsanIQN = "iqn.2026-11.bench.netsan:netsan"
	tgtIQN    = "iqn.2026-11.bench.netsan:tgt"
)

func main() {
	var (
		size       = flag.Int64("size", 1<<30, "image size in bytes")
		seconds    = flag.Int("seconds", 8, "seconds per iscsi-perf run")
		rounds     = flag.Int("rounds", 2, "rounds per target (best reported)")
		tgtCtl     = flag.Int("tgt-control-port", 7391, "tgtd's management port (-C), unique per host")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of netsan's side here")
		store      = flag.String("store", "file", "what the LUNs are: file (sparse images) or rbd (Ceph)")
		only       = flag.String("run", "", "measure only the workloads whose names match this regular expression")
	)
	flag.Parse()
	match, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/iscsi: -run:", err)
		os.Exit(2)
	}
	if err := run(*store, *size, *seconds, *rounds, *tgtCtl, *cpuprofile, match); err != nil {
		fmt.Fprintln(os.Stderr, "bench/iscsi:", err)
		os.Exit(1)
	}
}

type workload struct {
	name string
	// depth, size and random describe it to a ceiling tool.
	depth, size   int
	random, write bool
	// measure returns operations per second and bytes per second.
	measure func(url string) (float64, float64, error)
}

// luns are the two LUNs measured: what netsan serves and what tgtd's
// logicalunit is made from, over the same kind of storage.
type luns struct {
	netsan    iscsi.LUN
	openStore func(iscsi.LUN) (backstore.Store, error) // nil: a file
	tgt       []string                                 // tgtadm's backing-store arguments
	// ceiling measures the storage itself at a workload's depth, where
	// there is such a tool (rbd bench); nil otherwise.
	ceiling func(w workload) (float64, float64, error)
	// server is the storage's own process (the OSD), whose CPU time counts
	// toward every operation; 0 for none.
	server int
	close  func()
}

// fileLUNs are two sparse image files of size bytes in dir.
func fileLUNs(dir string, size int64) (*luns, error) {
	for _, f := range []string{"netsan.img", "tgt.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			return nil, err
		}
		if err := os.Truncate(filepath.Join(dir, f), size); err != nil {
			return nil, err
		}
	}
	return &luns{
		netsan: iscsi.LUN{Number: 0, Path: filepath.Join(dir, "netsan.img")},
		tgt:    []string{"-b", filepath.Join(dir, "tgt.img")},
		close:  func() {},
	}, nil
}

func run(store string, size int64, seconds, rounds, tgtCtl int, cpuprofile string, match *regexp.Regexp) error {
	if err := netsantest.Installed("iscsi-perf", "qemu-img", "tgtd", "tgtadm"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "netsan-bench-iscsi-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var l *luns
	switch store {
	case "file":
		l, err = fileLUNs(dir, size)
	case "rbd":
		l, err = rbdLUNs(dir, size)
	default:
		err = fmt.Errorf("-store %q: want file or rbd", store)
	}
	if err != nil {
		return err
	}
	defer l.close()

	// netsan, in this process.
	srv, err := iscsi.New(iscsi.Config{
		Listen:    []string{"127.0.0.1:0"},
		Targets:   []iscsi.Target{{IQN: netsanIQN, LUNs: []iscsi.LUN{l.netsan}}},
		OpenStore: l.openStore,
	}, zap.NewNop())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		<-served
	}()
	addrs := srv.ListenAddrs()
	if len(addrs) == 0 {
		return errors.New("netsan did not listen")
	}
	netsanURL := fmt.Sprintf("iscsi://%s/%s/0", addrs[0], netsanIQN)

	// tgtd, with its own control port; its LUN 0 is a controller.
	tgtPort, err := freePort()
	if err != nil {
		return err
	}
	stopTgt, tgtPid, err := startTgt(tgtCtl, tgtPort, l.tgt)
	if err != nil {
		return err
	}
	defer stopTgt()
	tgtURL := fmt.Sprintf("iscsi://127.0.0.1:%d/%s/1", tgtPort, tgtIQN)

	perf := func(args ...string) func(string) (float64, float64, error) {
		return func(url string) (float64, float64, error) { return iscsiPerf(url, seconds, args...) }
	}
	sessions := func(n int, args ...string) func(string) (float64, float64, error) {
		return func(url string) (float64, float64, error) { return iscsiPerfSessions(url, seconds, n, args...) }
	}
	bench := func(count, depth, bs int) func(string) (float64, float64, error) {
		return func(url string) (float64, float64, error) { return qemuBench(url, count, depth, bs) }
	}
	all := []workload{
		{"4 KiB random read, QD32 (iscsi-perf -m 32 -b 8 -r)", 32, 4096, true, false, perf("-m", "32", "-b", "8", "-r")},
		{"128 KiB sequential read, QD16 (iscsi-perf -m 16 -b 256)", 16, 128 << 10, false, false, perf("-m", "16", "-b", "256")},
		{"4 KiB random read, 8 sessions × QD4 (8 × iscsi-perf -m 4 -b 8 -r)", 32, 4096, true, false, sessions(8, "-m", "4", "-b", "8", "-r")},
		{"4 KiB write, QD32 (qemu-img bench -w -d 32 -s 4k)", 32, 4096, false, true, bench(50000, 32, 4096)},
		{"128 KiB write, QD16 (qemu-img bench -w -d 16 -s 128k)", 16, 128 << 10, false, true, bench(4000, 16, 128<<10)},
	}
	var workloads []workload
	for _, w := range all {
		if match.MatchString(w.name) {
			workloads = append(workloads, w)
		}
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	return table(workloads, rounds, [2]target{{netsanURL, os.Getpid()}, {tgtURL, tgtPid}}, l.server, l.ceiling)
}

// target is one side measured: where the initiator logs in, and the
// process that serves it.
type target struct {
	url string
	pid int
}

// table measures each workload rounds times on each target, and with a
// ceiling the storage's own rate at the same depth, alternating, and
// prints the best of each as a Markdown row (with netsan's share of the
// storage's rate). A second table tells the CPU time and the context
// switches each operation of the best rounds cost the target, the
// initiator and the storage server: on a shared machine that is steadier
// than the rate, and it says where the time goes.
func table(workloads []workload, rounds int, targets [2]target, server int, ceiling func(workload) (float64, float64, error)) error {
	head, rule := "| workload | netsan ops/s | tgtd ops/s | netsan MB/s | tgtd MB/s | netsan/tgtd |", "|---|---:|---:|---:|---:|---:|"
	costHead, costRule := "| per operation: CPU µs and context switches, target + initiator + storage server = total | netsan | tgtd |", "|---|---:|---:|"
	if ceiling != nil {
		head, rule = head+" storage ops/s | netsan/storage |", rule+"---:|---:|"
		costHead, costRule = costHead+" storage's own client |", costRule+"---:|"
	}
	fmt.Println(head)
	fmt.Println(rule)
	var costs []string
	for _, w := range workloads {
		// The sides measured in turn: netsan, tgtd, the storage itself.
		type side struct {
			pid     int // the target's process; 0 for the storage's own client
			measure func() (float64, float64, error)
		}
		var sides []side
		for _, t := range targets {
			sides = append(sides, side{t.pid, func() (float64, float64, error) { return w.measure(t.url) }})
		}
		if ceiling != nil {
			sides = append(sides, side{0, func() (float64, float64, error) { return ceiling(w) }})
		}
		best := make([]result, len(sides))
		for range rounds {
			for i, sd := range sides {
				r, err := measured(sd.pid, server, sd.measure)
				if err != nil {
					return fmt.Errorf("%s, side %d of %d: %w", w.name, i+1, len(sides), err)
				}
				if r.ops > best[i].ops {
					best[i] = r
				}
			}
		}
		row := fmt.Sprintf("| %s | %.0f | %.0f | %.0f | %.0f | %.2f |", w.name, best[0].ops, best[1].ops, best[0].bps/1e6, best[1].bps/1e6, ratio(best[0].ops, best[1].ops))
		cost := fmt.Sprintf("| %s | %s | %s |", w.name, best[0].cost(), best[1].cost())
		if ceiling != nil {
			row += fmt.Sprintf(" %.0f | %.2f |", best[2].ops, ratio(best[0].ops, best[2].ops))
			cost += fmt.Sprintf(" %s |", best[2].cost())
		}
		fmt.Println(row)
		costs = append(costs, cost)
	}
	fmt.Println()
	fmt.Println(costHead)
	fmt.Println(costRule)
	for _, c := range costs {
		fmt.Println(c)
	}
	return nil
}

// result is one measurement: its rate, and what it cost the target's
// process, the initiator (or the storage's own client: the benchmark's
// children) and the storage server.
type result struct {
	ops, bps                  float64
	target, initiator, server usage
	count                     float64 // operations the usage was spent on
}

// usage is CPU time (user and system) and context switches: each is a trip
// through the scheduler, costly in a VM, and fewer of them is the way to a
// cheaper operation where the time itself is too noisy to compare.
type usage struct {
	cpu      time.Duration
	switches int64
}

func (u usage) add(v usage) usage { return usage{u.cpu + v.cpu, u.switches + v.switches} }
func (u usage) sub(v usage) usage { return usage{u.cpu - v.cpu, u.switches - v.switches} }

// cost prints the CPU time per operation in µs, and context switches.
func (r result) cost() string {
	if r.count == 0 {
		return "–"
	}
	us := func(u usage) float64 { return float64(u.cpu.Microseconds()) / r.count }
	sw := func(u usage) float64 { return float64(u.switches) / r.count }
	total := r.target.add(r.initiator).add(r.server)
	return fmt.Sprintf("%.0f + %.0f + %.0f = %.0f µs; %.1f + %.1f + %.1f = %.1f switches",
		us(r.target), us(r.initiator), us(r.server), us(total), sw(r.target), sw(r.initiator), sw(r.server), sw(total))
}

// measured runs measure and takes the usage of the target process (0:
// none), of this program's children (the initiator, which has exited when
// measure returns) and of the storage server process (0: none) across it.
func measured(target, server int, measure func() (float64, float64, error)) (result, error) {
	t0, s0, c0 := procUsage(target), procUsage(server), childUsage()
	start := time.Now()
	ops, bps, err := measure()
	if err != nil {
		return result{}, err
	}
	return result{
		ops: ops, bps: bps,
		target: procUsage(target).sub(t0), initiator: childUsage().sub(c0), server: procUsage(server).sub(s0),
		count: ops * time.Since(start).Seconds(),
	}, nil
}

// procUsage is what pid's threads have used (nothing for pid 0 or a
// process that is gone): CPU time from /proc (the exited threads' too),
// switches of the threads alive. For this process, getrusage counts every
// thread.
func procUsage(pid int) usage {
	if pid == 0 {
		return usage{}
	}
	if pid == os.Getpid() {
		return rusage(syscall.RUSAGE_SELF)
	}
	var u usage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u
	}
	// The fields after the command name, which may hold spaces: state is
	// the first of them, utime and stime the 12th and 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return u
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				u.switches += n
			}
		}
	}
	return u
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's times.
const clockTicks = 100

// childUsage is what this program's children that have exited used.
func childUsage() usage { return rusage(syscall.RUSAGE_CHILDREN) }

func rusage(who int) usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return usage{}
	}
	return usage{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startTgt runs tgtd in the foreground with one target whose LUN 1 is
// made with the backing-store arguments bs (-b FILE, or --bstype rbd …),
// and returns how to stop it and its PID.
func startTgt(ctl, port int, bs []string) (func(), int, error) {
	cmd := exec.Command("tgtd", "-f", "-C", strconv.Itoa(ctl), "--iscsi", fmt.Sprintf("portal=127.0.0.1:%d", port))
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	// tgtd must not outlive the benchmark, even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	adm := func(args ...string) error {
		out, err := exec.Command("tgtadm", append([]string{"-C", strconv.Itoa(ctl), "--lld", "iscsi"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tgtadm %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	stop := func() {
		// tgtd ignores SIGTERM: take it down through its control port.
		adm("--mode", "sys", "--op", "update", "--name", "State", "-v", "offline")
		adm("--mode", "target", "--op", "delete", "--tid", "1", "--force")
		adm("--mode", "sys", "--op", "delete")
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	var err error
	for range 50 {
		if err = adm("--mode", "target", "--op", "new", "--tid", "1", "-T", tgtIQN); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err == nil {
		err = adm(append([]string{"--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1"}, bs...)...)
	}
	if err == nil {
		err = adm("--mode", "target", "--op", "bind", "--tid", "1", "-I", "ALL")
	}
	if err != nil {
		stop()
		return nil, 0, fmt.Errorf("tgtd: %w (%s)", err, logBuf.String())
	}
	return stop, cmd.Process.Pid, nil
}

var perfAverage = regexp.MustCompile(`iops average (\d+) \((\d+) MB/s\)`)

// iscsiPerf runs iscsi-perf for seconds and returns its last average.
func iscsiPerf(url string, seconds int, args ...string) (float64, float64, error) {
	cmd := exec.Command("iscsi-perf", append(args, url)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	time.Sleep(time.Duration(seconds) * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	m := perfAverage.FindAllStringSubmatch(out.String(), -1)
	if m == nil {
		return 0, 0, fmt.Errorf("iscsi-perf printed no average: %s", out.String())
	}
	last := m[len(m)-1]
	iops, _ := strconv.ParseFloat(last[1], 64)
	mbs, _ := strconv.ParseFloat(last[2], 64)
	return iops, mbs * 1e6, nil
}

// iscsiPerfSessions runs n iscsi-perf at once, each its own session with
// an initiator name of its own, and sums their rates: many hosts on one
// target rather than one deep queue.
func iscsiPerfSessions(url string, seconds, n int, args ...string) (float64, float64, error) {
	type rate struct {
		ops, bps float64
		err      error
	}
	rates := make(chan rate, n)
	for i := range n {
		go func() {
			ops, bps, err := iscsiPerf(url, seconds, append([]string{"-i", fmt.Sprintf("iqn.2026-11.bench.netsan:session%d", i)}, args...)...)
			rates <- rate{ops, bps, err}
		}()
	}
	var sum rate
	for range n {
		r := <-rates
		sum.ops, sum.bps, sum.err = sum.ops+r.ops, sum.bps+r.bps, errors.Join(sum.err, r.err)
	}
	return sum.ops, sum.bps, sum.err
}

var benchDone = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

// qemuBench writes count requests of bs bytes at queue depth depth.
func qemuBench(url string, count, depth, bs int) (float64, float64, error) {
	out, err := exec.Command("qemu-img", "bench", "-f", "raw", "-w", "-t", "none", "-c", strconv.Itoa(count),
		"-d", strconv.Itoa(depth), "-s", strconv.Itoa(bs), url).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("qemu-img bench: %v: %s", err, out)
	}
	m := benchDone.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("qemu-img bench printed no time: %s", out)
	}
	secs, _ := strconv.ParseFloat(string(m[1]), 64)
	return float64(count) / secs, float64(count*bs) / secs, nil
}
