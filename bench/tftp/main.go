// Command tftp measures boot-file throughput on loopback: netsan's tftpd
// against tftpd-hpa (Debian's in.tftpd) serving the same file, in one run,
// with the same client (curl) for both: one client fetching a 64 MiB file at
// blksize 512 and 1468, and 50 clients fetching it at once. It also fetches
// the file from netsan's httpd for the HTTP vs TFTP comparison. It prints a
// Markdown table (median of -n runs; runs of the two servers interleave so
// that load from elsewhere on the machine falls on both). Run as root
// (in.tftpd chroots into the file's directory).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/httpd"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/lab"
	"github.com/netsan/netsan/netsantest"
	"github.com/netsan/netsan/tftpd"
)

func main() {
	size := flag.Int("size", 64, "file size in MiB")
	clients := flag.Int("clients", 50, "clients at once in the concurrent case")
	runs := flag.Int("n", 3, "runs of each case (the median is shown)")
	cpuprofile := flag.String("cpuprofile", "", "write netsan's CPU profile (this process) to this file")
	only := flag.String("only", "", "run only the cases whose label contains this")
	clientCPU := flag.String("clientcpu", "", "run curl on these CPUs (taskset -c list); run the bench itself under taskset to place the servers")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/tftp:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, int64(*size)<<20, *clients, *runs, *only, *clientCPU); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tftp:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type server struct {
	name string
	url  func(blksize int) string // curl URL; blksize 0: HTTP
	cpu  func() time.Duration     // CPU time the server has used so far
}

// selfCPU is this process's user+system time: netsan's servers run in it.
// The curl children are not in it (RUSAGE_SELF).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func run(ctx context.Context, size int64, clients, runs int, only, clientCPU string) error {
	if err := netsantest.Installed("curl"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "netsan-bench-tftp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	// tftpd-hpa drops to nobody: the tree must be world-readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(root, "big.img"), size); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "ready.txt"), []byte("ready\n"), 0o644); err != nil {
		return err
	}

	inv, problems := inventory.Parse(filepath.Join(dir, "netsan.toml"), []byte(`
[server]
address = "127.0.0.1"
data_dir = "`+dir+`"
[tftp]
root = "tftp"
`))
	if inv == nil {
		return fmt.Errorf("inventory: %v", problems)
	}
	log := zap.NewNop()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	ts, err := tftpd.New(inv, log)
	if err != nil {
		return err
	}
	if ts.Conn, err = tftpd.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	tport := ts.Conn.LocalAddr().(*net.UDPAddr).Port
	hs, err := httpd.New(inv, log)
	if err != nil {
		return err
	}
	if hs.Listener, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
		return err
	}
	hbase := "http://" + hs.Listener.Addr().String()
	wg.Go(func() { ts.Serve(ctx) })
	wg.Go(func() { hs.Serve(ctx) })

	servers := []server{
		{"netsan tftpd", func(b int) string { return fmt.Sprintf("tftp://127.0.0.1:%d/big.img", tport) }, selfCPU},
	}
	hpaPort, hpaCPU, stopHPA, err := startHPA(ctx, root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/tftp: tftpd-hpa not measured:", err)
	} else {
		defer stopHPA()
		servers = append(servers, server{"tftpd-hpa 5.2", func(b int) string {
			return fmt.Sprintf("tftp://127.0.0.1:%d/big.img", hpaPort)
		}, hpaCPU})
	}

	type bench struct {
		label   string
		blksize int // 0: HTTP
		n       int
		servers []server
	}
	httpSrv := []server{{"netsan httpd", func(int) string { return hbase + "/big.img" }, selfCPU}}
	benches := []bench{
		{"1 client, blksize 512", 512, 1, servers},
		{"1 client, blksize 1468", 1468, 1, servers},
		{fmt.Sprintf("%d clients, blksize 1468", clients), 1468, clients, servers},
		{"1 client, HTTP", 0, 1, httpSrv},
		{fmt.Sprintf("%d clients, HTTP", clients), 0, clients, httpSrv},
	}
	fmt.Printf("%s, %d CPUs, %s; file %d MiB; median of %d runs; client curl %s\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), size>>20, runs, curlVersion())
	if clientCPU != "" {
		fmt.Printf("curl pinned to CPUs %s; servers on CPUs %s\n\n", clientCPU, affinity())
	}
	fmt.Println("| case | server | MB/s (aggregate) | runs (MB/s) | server CPU ms per MiB |")
	fmt.Println("|---|---|---:|---|---:|")
	for _, b := range benches {
		if !strings.Contains(b.label, only) {
			continue
		}
		rates := make(map[string][]float64)
		cpu := make(map[string][]float64)
		for range runs {
			for _, s := range b.servers {
				before := s.cpu()
				mbps, err := fetch(ctx, s.url(b.blksize), b.blksize, b.n, size, clientCPU)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", b.label, s.name, err)
				}
				// in.tftpd's child sends the last block, sees its ACK,
				// exits and is reaped a moment after curl has all bytes.
				time.Sleep(200 * time.Millisecond)
				used := s.cpu() - before
				rates[s.name] = append(rates[s.name], mbps)
				cpu[s.name] = append(cpu[s.name], float64(used.Milliseconds())/float64(int64(b.n)*size>>20))
			}
		}
		for _, s := range b.servers {
			v := rates[s.name]
			var each []string
			for _, x := range v {
				each = append(each, strconv.FormatFloat(x, 'f', 1, 64))
			}
			fmt.Printf("| %s | %s | %.1f | %s | %.2f |\n", b.label, s.name, median(v), strings.Join(each, ", "), median(cpu[s.name]))
		}
	}
	return nil
}

// affinity is this process's CPU list as taskset prints it.
func affinity() string {
	out, err := exec.Command("taskset", "-cp", strconv.Itoa(os.Getpid())).Output()
	if err != nil {
		return "?"
	}
	_, list, _ := strings.Cut(strings.TrimSpace(string(out)), ": ")
	return list
}

// fetch runs n curls at once and returns the aggregate rate in MB/s
// (10^6 bytes), counting only whole files.
func fetch(ctx context.Context, url string, blksize, n int, size int64, cpus string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	args := []string{"curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}"}
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	if blksize > 0 {
		args = append(args, "--tftp-blksize", strconv.Itoa(blksize))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			out, err := exec.CommandContext(ctx, args[0], append(args[1:], url)...).Output()
			if err != nil {
				errs[i] = fmt.Errorf("curl %s: %w", url, err)
				return
			}
			if got, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); got != size {
				errs[i] = fmt.Errorf("curl %s: %s bytes, want %d", url, out, size)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(size) * float64(n) / elapsed.Seconds() / 1e6, nil
}

// startHPA runs in.tftpd in the foreground on a free loopback port.
// cpu reports the CPU time of in.tftpd and its children (zero when no
// cgroup could be made).
func startHPA(ctx context.Context, root string) (port int, cpu func() time.Duration, stop func(), err error) {
	bin, err := exec.LookPath("in.tftpd")
	if err != nil {
		return 0, nil, nil, errors.New("in.tftpd not installed (Debian package tftpd-hpa)")
	}
	if os.Geteuid() != 0 {
		return 0, nil, nil, errors.New("in.tftpd -s needs root")
	}
	// Reserve a port, then hand it over: in.tftpd binds it itself.
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, nil, nil, err
	}
	port = c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	cmd := exec.CommandContext(ctx, bin, "-L", "-4", "-s", "-a", fmt.Sprintf("127.0.0.1:%d", port), root)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, nil, err
	}
	cpu = func() time.Duration { return 0 }
	g, err := lab.NewCPUGroup("netsan-bench-tftp")
	if err == nil {
		err = g.Add(cmd.Process.Pid)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/tftp: tftpd-hpa's CPU time not measured:", err)
	} else {
		cpu = g.Usage
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		if g != nil {
			g.Remove()
		}
	}
	// Ready when it answers a read request (bounded: 50 × 100 ms).
	for range 50 {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "1",
			fmt.Sprintf("tftp://127.0.0.1:%d/ready.txt", port)).Output()
		if err == nil && string(out) == "ready\n" {
			return port, cpu, stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return 0, nil, nil, errors.New("in.tftpd did not answer")
}

func writeFile(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*31 + i>>9)
	}
	for written := int64(0); written < size; written += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func curlVersion() string {
	out, err := exec.Command("curl", "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "?"
	}
	return f[1]
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
