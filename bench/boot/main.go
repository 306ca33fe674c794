// Command boot measures diskless boots end to end: the time from QEMU start
// to the guest's Linux marker (lab/guest/init), booting the golden image
// over iSCSI from netsan and, in the same run, from the reference harness
// (dnsmasq for DHCP, tgtd for iSCSI), for BIOS and UEFI guests. Cases: one
// guest alone, several runs, and -storm guests powered on at once. Runs of
// the two servers alternate so load from elsewhere on the machine falls on
// both. The lab's bridge has IPv6 on, as a LAN does: iPXE solicits an IPv6
// router there, which netsan answers (dhcp.ipv6_ra) and dnsmasq, configured
// for PXE as people do, does not. Guests run under TCG (no KVM here), so
// absolute numbers are slow; compare columns.
//
// Where a boot's time goes: the console's milestones (OVMF's PXE, iPXE,
// syslinux, Linux); with -capture, also each SCSI command on the bridge,
// the target's time to its status and the initiator's to its next command.
//
// Run as root: go run ./bench/boot -netsan build/netsan [-n 3] [-storm 8] [-firmware bios,uefi] [-capture]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netsan/netsan/lab"
)

const baseIQN = "iqn.2026-11.example.lab"

// goal is the netsan / reference ratio of a single guest's boot time that
// issue 17 asks for.
const goal = 0.6

func main() {
	bin := flag.String("netsan", "build/netsan", "netsan binary")
	runs := flag.Int("n", 3, "runs of the single-guest case per firmware (the median is shown)")
	storm := flag.Int("storm", 8, "guests booting at once in the storm case (0 skips it)")
	firmware := flag.String("firmware", "bios,uefi", "firmwares to boot, comma-separated: bios, uefi")
	keep := flag.Bool("keep", false, "keep the logs and serial consoles")
	capture := flag.Bool("capture", false, "capture each boot's packets on the lab bridge (dumpcap, package tshark) into its kept directory and show its iSCSI commands (tshark); implies -keep")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var fws []lab.Firmware
	for _, name := range strings.Split(*firmware, ",") {
		switch strings.TrimSpace(name) {
		case "bios":
			fws = append(fws, lab.BIOS)
		case "uefi":
			fws = append(fws, lab.UEFI)
		default:
			fmt.Fprintf(os.Stderr, "bench/boot: -firmware %q: want bios, uefi or both\n", name)
			os.Exit(2)
		}
	}
	o := options{bin: *bin, runs: *runs, storm: *storm, fws: fws, keep: *keep || *capture, capture: *capture}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/boot:", err)
		os.Exit(1)
	}
}

// result is one guest's boot.
type result struct {
	total  time.Duration // QEMU start → marker
	kernel time.Duration // kernel start → marker (the guest's uptime)
	// at is when each milestone first showed on the console (from QEMU start).
	at  map[string]time.Duration
	err error
	// serverCPU (first result of a case only) is the CPU time the servers
	// used for the whole case.
	serverCPU time.Duration
	started   time.Time // QEMU start
	// trace (first result of a case, with -capture) sums up the case's
	// SCSI commands on the wire.
	trace string
}

// milestones of a SAN boot as the serial console shows them, in order.
// OVMF's own PXE prints the first five (a BIOS guest's iPXE ROM shows none
// of them); syslinux draws its "Loading" lines with a cursor move after each
// character, matched on the console with the escape sequences taken out.
// The two without text are not looked for on the console: boot sets them.
var milestones = []struct{ name, text string }{
	{"pxe", ">>Start PXE over IPv4"},            // OVMF starts its PXE DHCP
	{"pxe-ip", "Station IP address is"},         // OVMF's DHCP is done
	{"nbp-start", "Downloading NBP file"},       // OVMF starts the loader's TFTP
	{"nbp", "NBP file downloaded successfully"}, // OVMF has the loader
	{"ipxe-init", "iPXE initialising devices"},  // ipxe.efi runs
	{"ipxe", "Configuring (net0"},               // iPXE starts DHCPv4 and IPv6 router solicitation
	{"configured", "net0: 198.18."},             // iPXE is done configuring: DHCP, and an RA or its wait for one
	{"sanboot", "Booting from SAN device"},      // iPXE starts the SAN boot
	{"kernel", "Loading /vmlinuz"},              // syslinux runs from the LUN
	{"initrd", "Loading /initrd.img"},           // kernel read
	{"linux-start", ""},                         // Linux starts: the marker's time less the uptime it prints
	{"linux", "NETSAN-LAB-IBFT"},                // /init runs
	{"marker", ""},                              // logged in again from the iBFT, disk stamped: the boot's time
}

// escapes matches the terminal control sequences firmware and loaders draw
// with (cursor moves, colours, clears).
var escapes = regexp.MustCompile(`\x1b\[[0-9;=?]*[A-Za-z]`)

// watch records when each milestone first appears on g's console, until
// all have or ctx ends. Each is looked for on its own, so a firmware that
// prints one differently leaves only that one out.
func watch(ctx context.Context, g *lab.Guest, at map[string]time.Duration, mu *sync.Mutex) {
	for {
		shown := onConsole(g.Console())
		mu.Lock()
		for _, name := range shown {
			if _, ok := at[name]; !ok {
				at[name] = time.Since(g.Started)
			}
		}
		mu.Unlock()
		if len(shown) >= len(milestones)-2 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// onConsole names the milestones a console shows.
func onConsole(con string) []string {
	con = escapes.ReplaceAllString(con, "")
	var names []string
	for _, m := range milestones {
		if m.text != "" && strings.Contains(con, m.text) {
			names = append(names, m.name)
		}
	}
	return names
}

var servers = []string{"netsan", "dnsmasq+tgtd"}

// options are the command line's.
type options struct {
	bin         string
	runs, storm int
	fws         []lab.Firmware
	keep        bool
	// capture: a packet capture of each boot, and its iSCSI commands.
	capture bool
}

func run(ctx context.Context, o options) (err error) {
	if err := errors.Join(lab.Available(), lab.QEMUAvailable(), lab.ReferenceAvailable()); err != nil {
		return err
	}
	if o.capture {
		for _, t := range []string{"dumpcap", "tshark"} {
			if _, err := exec.LookPath(t); err != nil {
				return fmt.Errorf("-capture: %s not installed (tshark)", t)
			}
		}
	}
	runs, storm, keep := o.runs, o.storm, o.keep
	bin := o.bin
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (go build -o build/netsan ./cmd/netsan)", err)
	}
	golden, err := lab.GoldenImage(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "netsan-bench-boot-")
	if err != nil {
		return err
	}
	defer func() {
		// A failed run keeps its logs and serial consoles for a look.
		if keep || err != nil {
			fmt.Fprintln(os.Stderr, "kept", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	began, loadBefore := time.Now().UTC(), loadAverage()
	var reports []report
	for _, fw := range o.fws {
		rep := report{fw: fw, runs: runs, storm: storm, single: map[string][]result{}, stormed: map[string][]result{}}
		for i := 0; i < runs; i++ {
			for _, s := range servers {
				rs, err := boot(ctx, filepath.Join(dir, fmt.Sprintf("%s-%s-1-%d", fw, slug(s), i)), s, bin, golden, 1, fw, o.capture)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "%s, %s, 1 guest, run %d: %v\n", fw, s, i+1, rs[0].total)
				rep.single[s] = append(rep.single[s], rs...)
			}
		}
		if storm > 0 {
			for _, s := range servers {
				rs, err := boot(ctx, filepath.Join(dir, fmt.Sprintf("%s-%s-%d", fw, slug(s), storm)), s, bin, golden, storm, fw, o.capture)
				if err != nil {
					return err
				}
				rep.stormed[s] = rs
				fmt.Fprintf(os.Stderr, "%s, %s, %d guests: %v\n", fw, s, storm, summary(rs))
			}
		}
		reports = append(reports, rep)
	}

	host, _ := os.Hostname()
	fmt.Printf("\nRun %s–%s UTC on %s; load average (1 min) %s at the start, %s at the end.\n",
		began.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04"), host, loadBefore, loadAverage())
	for _, rep := range reports {
		rep.print()
	}
	fmt.Printf("\n### netsan / dnsmasq + tgtd, 1 guest (goal: at most %.1f)\n\n", goal)
	fmt.Println("| firmware | netsan | dnsmasq + tgtd | ratio | goal met |")
	fmt.Println("|---|---|---|---|---|")
	for _, rep := range reports {
		n, r := medianTotal(rep.single["netsan"]), medianTotal(rep.single["dnsmasq+tgtd"])
		ratio := n.Seconds() / r.Seconds()
		met := "yes"
		if ratio > goal {
			met = "no"
		}
		fmt.Printf("| %s | %.1f s | %.1f s | %.2f | %s |\n", rep.fw, n.Seconds(), r.Seconds(), ratio, met)
	}
	return nil
}

// report is one firmware's cases.
type report struct {
	fw              lab.Firmware
	runs, storm     int
	single, stormed map[string][]result
}

func (rep report) print() {
	single, stormed, storm := rep.single, rep.stormed, rep.storm
	fmt.Printf("\n### Diskless boot, QEMU start to Linux marker (%s, TCG)\n\n", rep.fw)
	fmt.Println("| case | netsan | dnsmasq + tgtd | netsan / reference |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| 1 guest, median of %d (runs) | %s (%s) | %s (%s) | %.2f |\n", rep.runs,
		median(single["netsan"]), runList(single["netsan"]), median(single["dnsmasq+tgtd"]), runList(single["dnsmasq+tgtd"]),
		medianTotal(single["netsan"]).Seconds()/medianTotal(single["dnsmasq+tgtd"]).Seconds())
	if storm > 0 {
		fmt.Printf("| %d guests at once: median / slowest | %s | %s | |\n", storm, summary(stormed["netsan"]), summary(stormed["dnsmasq+tgtd"]))
	}
	fmt.Printf("| server CPU time, 1 guest (median) | %s | %s | |\n", cpuMedian(single["netsan"]), cpuMedian(single["dnsmasq+tgtd"]))
	if storm > 0 {
		fmt.Printf("| server CPU time, %d guests | %s | %s | |\n", storm, cpuMedian(stormed["netsan"][:1]), cpuMedian(stormed["dnsmasq+tgtd"][:1]))
	}
	fmt.Println("\nMedian: QEMU start to marker (in parentheses after it, the part spent in Linux: kernel start to marker).")
	fmt.Printf("\nWhere the time goes: median seconds from QEMU start at which the console first shows each step.\n\n")
	type column struct {
		name string
		rs   []result
	}
	cases := []column{{"netsan, 1 guest", single["netsan"]}, {"dnsmasq + tgtd, 1 guest", single["dnsmasq+tgtd"]}}
	if storm > 0 {
		cases = append(cases, column{fmt.Sprintf("netsan, %d guests", storm), stormed["netsan"]},
			column{fmt.Sprintf("dnsmasq + tgtd, %d guests", storm), stormed["dnsmasq+tgtd"]})
	}
	fmt.Print("| step |")
	for _, c := range cases {
		fmt.Printf(" %s |", c.name)
	}
	fmt.Println("\n|---|" + strings.Repeat("---|", len(cases)))
	for _, m := range milestones {
		if m.text != "" {
			fmt.Printf("| %s (%q) |", m.name, m.text)
		} else {
			fmt.Printf("| %s |", m.name)
		}
		for _, c := range cases {
			fmt.Printf(" %s |", medianAt(c.rs, m.name))
		}
		fmt.Println()
	}
	// A median hides which run was slow where: each single-guest run's
	// steps, as time since the step before.
	fmt.Printf("\nEach run, seconds since the step before (runs in the order run):\n\n| step |")
	for _, s := range servers {
		for i := range single[s] {
			fmt.Printf(" %s %d |", s, i+1)
		}
	}
	fmt.Println("\n|---|" + strings.Repeat("---|", len(single[servers[0]])+len(single[servers[1]])))
	for k, m := range milestones {
		fmt.Printf("| %s |", m.name)
		for _, s := range servers {
			for _, r := range single[s] {
				fmt.Printf(" %s |", sinceBefore(r, k))
			}
		}
		fmt.Println()
	}
}

// sinceBefore is how long after the step before it r reached milestone k
// (after QEMU start for the first one the guest shows), "-" when it did not
// show.
func sinceBefore(r result, k int) string {
	d, ok := r.at[milestones[k].name]
	if !ok {
		return "-"
	}
	for j := k - 1; j >= 0; j-- {
		if p, ok := r.at[milestones[j].name]; ok {
			return fmt.Sprintf("%.1f", (d - p).Seconds())
		}
	}
	return fmt.Sprintf("%.1f", d.Seconds())
}

// loadAverage is the 1-minute load average, as /proc/loadavg has it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// boot starts a lab served by server, powers on n guests at once and waits
// for each one's marker.
func boot(ctx context.Context, dir, server, bin, golden string, n int, fw lab.Firmware, capture bool) ([]result, error) {
	l, err := lab.New(ctx, dir, "bboot")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var hosts []lab.Host
	for i := 1; i <= n; i++ {
		name := "node" + strconv.Itoa(i)
		h := lab.Host{
			Name: name, MAC: fmt.Sprintf("52:54:00:4e:53:%02x", i), IP: fmt.Sprintf("198.18.0.%d", 10+i),
			Initiator: baseIQN + ":" + name, Target: baseIQN + ":" + name,
		}
		hosts = append(hosts, h)
	}
	data := filepath.Join(dir, "data")
	for i := range hosts {
		hosts[i].Image = filepath.Join(data, "roots", hosts[i].Name+".img")
		if err := lab.Clone(golden, hosts[i].Image); err != nil {
			return nil, err
		}
	}
	switch server {
	case "netsan":
		inv := lab.Inventory{DataDir: data, BaseIQN: baseIQN}
		for _, h := range hosts {
			h.Image = filepath.Join("roots", h.Name+".img")
			inv.Hosts = append(inv.Hosts, lab.NetsanHost{Host: h, Boot: "san"})
		}
		if _, err := l.StartNetsan(ctx, bin, inv); err != nil {
			return nil, err
		}
	default:
		if err := l.StartReference(ctx, hosts); err != nil {
			return nil, err
		}
	}
	var pcap string
	var dumpcap *lab.Proc
	if capture {
		pcap = filepath.Join(dir, "bridge.pcapng")
		if dumpcap, err = startCapture(ctx, l, pcap); err != nil {
			return nil, err
		}
	}

	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	results := make([]result, n)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := strings.ReplaceAll(h.MAC, ":", "")
			g, err := l.Boot(bctx, lab.Machine{Name: h.Name, MAC: h.MAC, UUID: "4e455453-414e-4c41-4200-" + mac, Firmware: fw, MemoryMiB: 384})
			if err != nil {
				results[i].err = err
				return
			}
			defer g.Stop()
			results[i].started = g.Started
			var mu sync.Mutex
			at := make(map[string]time.Duration)
			wctx, stop := context.WithCancel(bctx)
			done := make(chan struct{})
			go func() { watch(wctx, g, at, &mu); close(done) }()
			line, err := g.WaitLine(bctx, lab.MarkerBoot)
			results[i].total = time.Since(g.Started)
			stop()
			<-done
			results[i].at = at
			at["marker"] = results[i].total
			if err != nil {
				results[i].err = err
				return
			}
			f := lab.Fields(line)
			if f["host"] != h.Name {
				results[i].err = fmt.Errorf("%s booted as %q: %s", h.Name, f["host"], line)
			}
			if up, err := strconv.ParseFloat(f["up"], 64); err == nil {
				results[i].kernel = time.Duration(up * float64(time.Second))
				// To the guest's clock, not to the 0.2 s the console is
				// polled at: where the firmware's part ends.
				at["linux-start"] = results[i].total - results[i].kernel
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w (logs in %s)", server, r.err, dir)
		}
	}
	results[0].serverCPU = serverCPU(ctx, l)
	if dumpcap != nil {
		_ = dumpcap.Stop(5 * time.Second)
		cmds, err := iscsiTrace(ctx, pcap, results[0].started)
		if err != nil {
			return nil, err
		}
		results[0].trace = traceSummary(cmds)
		fmt.Fprintf(os.Stderr, "%s, %s: %s\n", fw, server, results[0].trace)
	}
	return results, nil
}

// serverCPU is the CPU time used so far by the lab's processes other than
// the guests: netsan, or tgtd + dnsmasq.
func serverCPU(ctx context.Context, l *lab.Lab) time.Duration {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", l.Name).Output()
	if err != nil {
		return 0
	}
	var ticks int64
	for _, pid := range strings.Fields(string(out)) {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		if strings.HasPrefix(string(comm), "qemu") {
			continue
		}
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: utime and stime are the
		// 12th and 13th (proc(5) fields 14 and 15), in clock ticks.
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

func median(rs []result) string {
	if len(rs) == 0 {
		return "-"
	}
	m := sortedByTotal(rs)[len(rs)/2]
	return fmt.Sprintf("%.1f s (%.1f s)", m.total.Seconds(), m.kernel.Seconds())
}

func medianTotal(rs []result) time.Duration {
	if len(rs) == 0 {
		return 0
	}
	return sortedByTotal(rs)[len(rs)/2].total
}

func sortedByTotal(rs []result) []result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return int(a.total - b.total) })
	return s
}

// runList is every run's time, in the order run.
func runList(rs []result) string {
	ts := make([]string, len(rs))
	for i, r := range rs {
		ts[i] = fmt.Sprintf("%.1f", r.total.Seconds())
	}
	return strings.Join(ts, ", ")
}

// cpuMedian is the median server CPU time over the cases in rs (one per
// boot call; other results have none).
func cpuMedian(rs []result) string {
	var ds []time.Duration
	for _, r := range rs {
		if r.serverCPU > 0 {
			ds = append(ds, r.serverCPU)
		}
	}
	if len(ds) == 0 {
		return "-"
	}
	slices.Sort(ds)
	return fmt.Sprintf("%.2f s", ds[len(ds)/2].Seconds())
}

func medianAt(rs []result, step string) string {
	var ds []time.Duration
	for _, r := range rs {
		if d, ok := r.at[step]; ok {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return "-"
	}
	slices.Sort(ds)
	return fmt.Sprintf("%.1f", ds[len(ds)/2].Seconds())
}

func summary(rs []result) string {
	if len(rs) == 0 {
		return "-"
	}
	s := sortedByTotal(rs)
	return fmt.Sprintf("%.1f s / %.1f s", s[len(s)/2].total.Seconds(), s[len(s)-1].total.Seconds())
}

func slug(s string) string { return strings.NewReplacer("+", "-").Replace(s) }
