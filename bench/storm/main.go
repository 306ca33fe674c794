// Command storm measures a boot storm: N simulated diskless nodes powered
// on at once, each with its own MAC and its own root (a reflink clone of
// one golden image on an XFS file system the bench makes on a loop
// device), each doing a real boot's conversation: DHCP as a PXE ROM, TFTP
// of undionly.kpxe, DHCP as iPXE, its per-host iPXE script, an iSCSI login
// to its root with its own initiator IQN, the reads of a boot and a few
// MiB of journal writes with SYNCHRONIZE CACHE, then it stays logged in
// until the last node is done. The nodes run in a namespace of their own
// bridged to the server's (198.18.0.0/15). In one run: netsan and the
// reference (dnsmasq + tftpd-hpa + tgtd) with -n nodes, then netsan alone
// with -big nodes. It prints a Markdown table.
//
// Run as root: go run ./bench/storm -netsan ./netsan [-n 500] [-big 1000]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("netsan", "netsan", "netsan binary")
	n := flag.Int("n", 500, "nodes against netsan and the reference")
	big := flag.Int("big", 1000, "nodes against netsan alone afterwards (0 skips it)")
	cfg := Config{Timeout: 10 * time.Minute}
	flag.IntVar(&cfg.ReadMiB, "read", 40, "MiB each node reads")
	flag.IntVar(&cfg.Random, "random", 2000, "of which 4 KiB random reads")
	flag.IntVar(&cfg.WriteMiB, "write", 4, "MiB each node writes")
	flag.IntVar(&cfg.ImageMiB, "image", 1024, "golden image size, MiB")
	only := flag.String("only", "", "run only this server (netsan, reference)")
	keep := flag.Bool("keep", false, "keep the servers' logs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, cfg, *n, *big, *only, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/storm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, cfg Config, n, big int, only string, keep bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (namespaces, loop devices)")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "netsan-bench-storm-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	d, err := makeDisk(ctx, dir, 64)
	if err != nil {
		return err
	}
	defer d.close()
	g := filepath.Join(d.mnt, "golden.img")
	if err := golden(g, cfg.ImageMiB); err != nil {
		return err
	}
	type job struct {
		server string
		nodes  int
	}
	var jobs []job
	for _, j := range []job{{Netsan, n}, {Reference, n}, {Netsan, big}} {
		if j.nodes > 0 && (only == "" || strings.Contains(strings.ToLower(j.server), only)) {
			jobs = append(jobs, j)
		}
	}
	var outs []*outcome
	for i, j := range jobs {
		c := cfg
		c.Nodes = j.nodes
		fmt.Fprintf(os.Stderr, "%s, %d nodes (load %s)\n", j.server, j.nodes, load())
		o, err := storm(ctx, j.server, bin, g, d, filepath.Join(dir, fmt.Sprintf("run%d", i)), c)
		if err != nil {
			return fmt.Errorf("%s, %d nodes: %w", j.server, j.nodes, err)
		}
		fmt.Fprintln(os.Stderr, o.summary())
		outs = append(outs, o)
	}
	table(outs, cfg)
	return nil
}

// load is the 1, 5 and 15 minute load averages.
func load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (o *outcome) failures() []error {
	var errs []error
	for _, r := range o.res {
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return errs
}

// at is the time each node finished step s, of the nodes that did.
func (o *outcome) at(s int) []time.Duration {
	var ds []time.Duration
	for _, r := range o.res {
		if r.at[s] > 0 {
			ds = append(ds, r.at[s])
		}
	}
	return ds
}

func (o *outcome) summary() string {
	root := o.at(stepRoot)
	s := fmt.Sprintf("%s, %d nodes: last root read at %s, p50 %s, p99 %s, %d failed, CPU %s, peak RSS %d MiB, %d UDP drops",
		o.server, o.cfg.Nodes, secs(percentile(root, 100)), secs(percentile(root, 50)), secs(percentile(root, 99)),
		len(o.failures()), secs(o.cpu), o.hwm>>20, o.drops)
	for i, err := range o.failures() {
		if i == 5 {
			s += "\n  …"
			break
		}
		s += "\n  " + err.Error()
	}
	return s
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func table(outs []*outcome, cfg Config) {
	host, _ := os.Hostname()
	fmt.Printf("\n### Boot storm (%s, %s, %d CPUs, load %s)\n\n", time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU(), load())
	fmt.Printf("Each node: %d MiB read (%d × 4 KiB random, the rest 128 KiB sequential runs), %d MiB written (64 KiB, SYNCHRONIZE CACHE per 512 KiB); golden image %d MiB.\n\n",
		cfg.ReadMiB, cfg.Random, cfg.WriteMiB, cfg.ImageMiB)
	fmt.Print("| |")
	for _, o := range outs {
		fmt.Printf(" %s, %d nodes |", o.server, o.cfg.Nodes)
	}
	fmt.Print("\n|---|")
	for range outs {
		fmt.Print("---:|")
	}
	fmt.Println()
	row := func(label string, f func(o *outcome) string) {
		fmt.Printf("| %s |", label)
		for _, o := range outs {
			fmt.Printf(" %s |", f(o))
		}
		fmt.Println()
	}
	row("**last node has read its root**", func(o *outcome) string { return "**" + secs(percentile(o.at(stepRoot), 100)) + "**" })
	row("per node, p50 / p99", func(o *outcome) string {
		r := o.at(stepRoot)
		return secs(percentile(r, 50)) + " / " + secs(percentile(r, 99))
	})
	row("failures", func(o *outcome) string { return fmt.Sprint(len(o.failures())) })
	row("UDP datagrams the server's kernel dropped (socket buffer full)", func(o *outcome) string { return fmt.Sprint(o.drops) })
	row("server CPU time during the storm", func(o *outcome) string { return secs(o.cpu) })
	row("server peak RSS (VmHWM)", func(o *outcome) string { return fmt.Sprintf("%d MiB", o.hwm>>20) })
	for s, name := range steps {
		row(name+" done, p50 / max", func(o *outcome) string {
			a := o.at(s)
			return secs(percentile(a, 50)) + " / " + secs(percentile(a, 100))
		})
	}
}
