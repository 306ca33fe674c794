package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/netsantest"
)

func TestMain(m *testing.M) {
	netsantest.Main(m)
}

// netsan is one `netsan serve` child process owned by a test.
type netsan struct {
	t    *testing.T
	path string // inventory file
	ns   string // network namespace it runs in ("" = this one)
	args []string
	log  *netsantest.LogBuffer // every start's output, in order
	proc *netsantest.Process   // the current start
	http string                // base URL of /metrics, "" when HTTP is off
}

// writeInventory writes body as dir/netsan.toml.
func writeInventory(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "netsan.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNetsan runs `netsan serve -c path` (inside ns when set) until the test
// ends; httpBase is where its /metrics answer, waited for when set.
func startNetsan(t *testing.T, path, ns, httpBase string, args ...string) *netsan {
	t.Helper()
	n := &netsan{t: t, path: path, ns: ns, args: args, http: httpBase, log: netsantest.NewLog(t, "netsan")}
	n.start()
	t.Cleanup(func() {
		n.kill()
		// FAULTS_LOG_DIR keeps every child's whole log, for reading after a run.
		if d := os.Getenv("FAULTS_LOG_DIR"); d != "" {
			os.WriteFile(filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+".log"), []byte(n.log.String()), 0o644)
		}
	})
	return n
}

func (n *netsan) start() {
	n.t.Helper()
	argv := append([]string{netsantest.Binary(n.t), "serve", "-c", n.path, "--log-format", "json"}, n.args...)
	if n.ns != "" {
		argv = append([]string{"ip", "netns", "exec", n.ns}, argv...)
	}
	n.proc = netsantest.Start(n.t, exec.Command(argv[0], argv[1:]...), n.log)
	if n.http != "" {
		netsantest.WaitFor(n.t, "netsan's /metrics", 20*time.Second, func() bool {
			_, err := n.metrics()
			return err == nil
		})
	}
}

// kill sends SIGKILL (no flush, no logout) and waits for the exit.
func (n *netsan) kill() {
	n.t.Helper()
	n.proc.Kill(n.t)
}

// restart is kill -9 followed by a fresh start on the same inventory.
func (n *netsan) restart() {
	n.t.Helper()
	n.kill()
	n.start()
}

// alive reports whether the process is still running.
func (n *netsan) alive() bool {
	select {
	case <-n.proc.Done():
		return false
	default:
		return true
	}
}

// noKeepAlive keeps the test's own scrapes from leaving idle connections
// (and their goroutines) in the server.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// get fetches path from n's HTTP side. When n runs in a network namespace
// it fetches from inside it, with curl there, so that the paths served to
// loopback clients only (/debug/pprof/) answer.
func (n *netsan) get(path string) ([]byte, error) {
	if n.ns != "" {
		out, err := run(15*time.Second, nil, "ip", "netns", "exec", n.ns, "curl", "-sSf", "--max-time", "10", n.http+path)
		if err != nil {
			return nil, fmt.Errorf("%s in %s: %v: %s", path, n.ns, err, out)
		}
		return []byte(out), nil
	}
	resp, err := noKeepAlive.Get(n.http + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", path, resp.Status)
	}
	return b, err
}

// metrics scrapes /metrics into name → value for unlabelled samples.
func (n *netsan) metrics() (map[string]float64, error) {
	b, err := n.get("/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

func (n *netsan) mustMetrics() map[string]float64 {
	n.t.Helper()
	m, err := n.metrics()
	if err != nil {
		n.t.Fatal(err)
	}
	return m
}

// usage is what a leak would grow: goroutines, open descriptors, memory.
type usage struct {
	goroutines, fds, heap, rssKiB, threads int
}

func (u usage) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, heap in use %.1f MiB, VmRSS %.1f MiB, threads %d",
		u.goroutines, u.fds, float64(u.heap)/(1<<20), float64(u.rssKiB)/1024, u.threads)
}

// usage reads n's gauges just after a forced collection, so that the heap
// is what is live rather than what awaits the next GC.
func (n *netsan) usage() usage {
	n.t.Helper()
	n.gc()
	m := n.mustMetrics()
	u := usage{goroutines: int(m["go_goroutines"]), fds: int(m["process_open_fds"]), heap: int(m["go_memstats_heap_inuse_bytes"])}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.proc.Cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "VmRSS:" {
				u.rssKiB, _ = strconv.Atoi(f[1])
			}
			if len(f) >= 2 && f[0] == "Threads:" {
				u.threads, _ = strconv.Atoi(f[1])
			}
		}
	}
	return u
}

// gc has n run two garbage collections (GET /debug/pprof/heap?gc=1, served
// to loopback only). Two, because a sync.Pool — the PDU buffers — keeps
// its objects through one collection in its victim cache.
func (n *netsan) gc() {
	n.t.Helper()
	for range 2 {
		if _, err := n.get("/debug/pprof/heap?gc=1"); err != nil {
			n.t.Fatal(err)
		}
	}
}

// baseline is n's usage now, for settle to come back to.
func (n *netsan) baseline() usage {
	n.t.Helper()
	return n.usage()
}

// Margins over the baseline that still count as "back": a scrape's own
// connection, a timer or two of the runtime.
const (
	goroutineSlack = 2
	fdSlack        = 2
)

// heapSlack is how far above base the heap may settle. After a flood the
// allocator keeps spans that hold a few live objects (and its per-P
// caches), and the scrape and profile being written allocate as we
// measure: a few MiB at most. What these tests would leak is per
// connection — a PDU buffer of 64 KiB or more, a session — times hundreds
// or thousands: tens of MiB. 8 MiB, or half a larger baseline, tells one
// from the other.
func heapSlack(base usage) int {
	return max(8<<20, base.heap/2)
}

// settle waits (bounded) until goroutines, descriptors and the collected
// heap are back within the slack of base, and returns what it saw last.
func (n *netsan) settle(base usage, within time.Duration) usage {
	n.t.Helper()
	var u usage
	deadline := time.Now().Add(within)
	for {
		u = n.usage()
		if u.goroutines <= base.goroutines+goroutineSlack && u.fds <= base.fds+fdSlack && u.heap <= base.heap+heapSlack(base) {
			return u
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("not back to baseline after %s:\n  base %v\n  now  %v", within, base, u)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// run runs a real client with a bound on its time and returns its output.
func run(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// drain reads until EOF or error; it reports whether the peer closed.
func drain(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil || !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
