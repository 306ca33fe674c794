package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

const ipxeDir = inventorytest.IPXEDir

// hosts is a PC booting from SAN and one from its disk.
func hosts(t testing.TB) string { return inventorytest.Hosts(t, "node1", "desk1") }

type fixture struct {
	dir, root, base string
	srv             *Server
}

// start serves a fresh tree on 127.0.0.1 at an ephemeral port; setup, when
// not nil, sets the Server's fields before Serve.
func start(t testing.TB, log *zap.Logger, setup func(*Server)) *fixture {
	t.Helper()
	netsantest.NeedTools(t, "curl")
	inv, dir := inventorytest.InstalledBootFiles(t, hosts(t))
	fx := &fixture{dir: dir, root: inv.TFTP.Root}
	srv, err := New(inv, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	if setup != nil {
		setup(srv)
	}
	fx.srv = srv
	fx.base = "http://" + ln.Addr().String()
	netsantest.Serve(t, 40*time.Second, srv.Serve)
	return fx
}

// curl runs curl with the arguments and returns stdout; -w output ends it.
func curl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.String(), err
}

func TestLoaders(t *testing.T) {
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), nil)
	ents, err := os.ReadDir(ipxeDir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var n int
	for _, e := range ents {
		want, err := os.ReadFile(filepath.Join(ipxeDir, e.Name()))
		if err != nil {
			continue // qemu/ (a directory)
		}
		local := filepath.Join(out, e.Name())
		hdr, err := curl(t, "--fail", "-D", "-", "-o", local, fx.base+"/"+e.Name())
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		got, _ := os.ReadFile(local)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, want %d, not identical", e.Name(), len(got), len(want))
		}
		if !strings.Contains(hdr, fmt.Sprintf("Content-Length: %d\r\n", len(want))) {
			t.Errorf("%s: no Content-Length %d in\n%s", e.Name(), len(want), hdr)
		}
		n++
	}
	t.Logf("%d loaders byte-identical over HTTP", n)
	if n < 5 {
		t.Errorf("only %d loaders fetched", n)
	}
}

func TestRangeAndHead(t *testing.T) {
	fx := start(t, zap.NewNop(), nil)
	want, err := os.ReadFile(filepath.Join(ipxeDir, "undionly.kpxe"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := curl(t, "--fail", "-r", "1000-1999", "-w", "\n%{http_code}", fx.base+"/undionly.kpxe")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(body, '\n')
	if code := body[i+1:]; code != "206" || body[:i] != string(want[1000:2000]) {
		t.Errorf("range: status %s, %d bytes, equal %v", code, i, body[:i] == string(want[1000:2000]))
	}
	hdr, err := curl(t, "--fail", "-I", fx.base+"/boot/52-54-00-00-00-01.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	script, err := curl(t, "--fail", fx.base+"/boot/52-54-00-00-00-01.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hdr, "Content-Length: "+strconv.Itoa(len(script))+"\r\n") || !strings.Contains(hdr, "Cache-Control: no-store") {
		t.Errorf("HEAD of a script (%d bytes):\n%s", len(script), hdr)
	}
}

func TestScripts(t *testing.T) {
	fx := start(t, zap.NewNop(), nil)
	for _, tc := range []struct{ path, want string }{
		{"/boot/52-54-00-00-00-01.ipxe", "sanboot || goto failed"},
		{"/boot/52-54-00-00-00-03.ipxe", "sanboot --no-describe --drive 0x80 || goto failed"},
		{"/boot/02-00-00-00-00-99.ipxe", "item --gap MAC address: 02-00-00-00-00-99"},
		{"/boot/02-00-00-00-00-99.ipxe", "item --gap IP address:  127.0.0.1"},
	} {
		body, err := curl(t, "--fail", fx.base+tc.path)
		if err != nil || !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, tc.want+"\n") {
			t.Errorf("%s: %v, no line %q in\n%s", tc.path, err, tc.want, body)
		}
	}
}

func TestRefusals(t *testing.T) {
	fx := start(t, zap.NewNop(), nil)
	for _, tc := range []struct {
		path string
		code string
	}{
		{"/../secret.txt", "400"},
		{"/%2e%2e/secret.txt", "400"},
		{"/%2E%2E%2Fsecret.txt", "400"},
		{"/hello.txt/..%2f..%2fsecret.txt", "400"},
		{"/out", "400"},
		{"//etc/passwd", "400"},
		{"/etc/passwd", "404"},
		{"/hello.txt%00.png", "400"},
		{"/..%5csecret.txt", "400"},
		{"/", "302"},
		{"/missing", "404"},
	} {
		body, err := curl(t, "--path-as-is", "-w", "\n%{http_code}", fx.base+tc.path)
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		code := body[strings.LastIndexByte(body, '\n')+1:]
		if code != tc.code || strings.Contains(body, "outside the root") {
			t.Errorf("%s: status %s, want %s: %q", tc.path, code, tc.code, body)
		}
	}
	body, err := curl(t, "-X", "PUT", "-d", "x", "-w", "\n%{http_code}", fx.base+"/hello.txt")
	if err != nil || !strings.HasSuffix(body, "\n405") {
		t.Errorf("PUT: %v %q", err, body)
	}
	if got, _ := curl(t, fx.base+"/hello.txt"); got != "hello from root\n" {
		t.Errorf("after PUT: %q", got)
	}
}

func TestMetricsAndStatus(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	reg := prometheus.NewRegistry()
	fx := start(t, zap.NewNop(), func(s *Server) {
		reg.MustRegister(s)
		s.Gatherer = reg
		s.Status = StatusSource{
			Leases: func() []Lease {
				return []Lease{{MAC: "52:54:00:00:00:01", IP: "198.18.0.11", Host: "node1", Expires: time.Now().Add(time.Hour)}}
			},
			Sessions: func() []Session {
				return []Session{{Initiator: "iqn.2026-11.example.lab:node1", Target: "iqn.2026-11.example.lab:node1",
					Remote: "198.18.0.11:51000", Since: since, ReadBytes: 4096}}
			},
		}
	})
	if _, err := curl(t, "--fail", "-o", "/dev/null", fx.base+"/undionly.kpxe"); err != nil {
		t.Fatal(err)
	}
	curl(t, "-o", "/dev/null", fx.base+"/missing")
	m, err := curl(t, "--fail", fx.base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	size, _ := os.Stat(filepath.Join(ipxeDir, "undionly.kpxe"))
	for _, want := range []string{
		`netsan_http_requests_total{code="200",host="",kind="loader"} 1`,
		`netsan_http_requests_total{code="404",host="",kind=""} 1`,
		fmt.Sprintf(`netsan_http_sent_bytes_total{host="",kind="loader"} %d`, size.Size()),
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}

	for _, args := range [][]string{
		{fx.base + "/status?format=json"},
		{"-H", "Accept: application/json", fx.base + "/status"},
	} {
		body, err := curl(t, append([]string{"--fail"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var st Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, body)
		}
		if len(st.Hosts) != 2 || st.Hosts[0].Name != "node1" || st.Hosts[0].Lease == nil ||
			st.Hosts[0].Lease.IP != "198.18.0.11" || len(st.Hosts[0].Sessions) != 1 ||
			st.Hosts[1].Lease != nil || len(st.Hosts[1].Sessions) != 0 || st.Server != "198.18.0.1" {
			t.Errorf("%v: %+v", args, st)
		}
		// Only a host with a root has a target: desk1 boots locally, without one.
		if len(st.Hosts) == 2 && (st.Hosts[0].Target != "iqn.2026-11.example.lab:node1" || st.Hosts[1].Target != "") {
			t.Errorf("%v: targets %q (node1), %q (desk1, no root), want node1's only", args, st.Hosts[0].Target, st.Hosts[1].Target)
		}
	}
	page, err := curl(t, "--fail", "-H", "Accept: text/html", fx.base+"/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<td data-label="host">node1</td>`, `<td data-label="host">desk1</td>`,
		`<td data-label="from">198.18.0.11:51000</td>`, `<td data-label="read"><data value="4096">4.0KiB</data></td>`,
		`<td data-label="initiator">iqn.2026-11.example.lab:node1</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(page, "iqn.2026-11.example.lab:desk1") {
		t.Errorf("status page shows a target for desk1, which has no root:\n%s", page)
	}
}

// status is the fixture's /status.json, as ControlClient reads it.
func (fx *fixture) status(t testing.TB) *Status {
	t.Helper()
	st, err := (&ControlClient{Base: fx.base, HTTP: &http.Client{Timeout: 10 * time.Second}}).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// 50 clients fetch a 16 MiB file at once; each gets it whole.
func TestManyClients(t *testing.T) {
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), nil)
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(i*13 + i>>11)
	}
	if err := os.WriteFile(filepath.Join(fx.root, "big.img"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	netsantest.FetchAll(t, 50, big, func(local string) error {
		_, err := curl(t, "--fail", "-o", local, fx.base+"/big.img")
		return err
	})
}

// Reload changes a host's script at once, with no restart.
func TestReload(t *testing.T) {
	fx := start(t, zap.NewNop(), nil)
	inv := inventorytest.BootFiles(t, fx.dir, ipxeDir, hosts(t))
	inv.Hosts[0].Boot = inventory.BootLocal
	if err := fx.srv.Reload(inv); err != nil {
		t.Fatal(err)
	}
	body, err := curl(t, "--fail", fx.base+"/boot/52-54-00-00-00-01.ipxe")
	if err != nil || !strings.Contains(body, "--drive 0x80") || strings.Contains(body, "sanboot ||") {
		t.Errorf("after reload: %v\n%s", err, body)
	}
}

// TestStatusGateways: a gateway's /status names the gateways, the leader
// and one whose inventory differs; a single box's has no such section.
func TestStatusGateways(t *testing.T) {
	since := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	fx := start(t, zap.NewNop(), func(s *Server) {
		s.Status.Cluster = func() *cluster.Status {
			return &cluster.Status{Gateway: "gw2", Leader: "gw1", Since: since, Takeovers: 3, Renewals: 41, Gateways: []cluster.Gateway{
				{Name: "gw1", Leader: true, Client: "198.18.0.2:0/1234", Seen: time.Now()},
				{Name: "gw2", Client: "198.18.0.3:0/5678", Seen: time.Now(), Differs: true},
			}}
		}
	})
	st := fx.status(t)
	if c := st.Cluster; c == nil || c.Leader != "gw1" || !c.Since.Equal(since) || c.Takeovers != 3 || len(c.Gateways) != 2 || !c.Gateways[1].Differs {
		t.Errorf("cluster in /status.json: %+v", st.Cluster)
	}
	page, err := curl(t, "--fail", "-H", "Accept: text/html", fx.base+"/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h2>Gateways</h2>", "gw1 leads since 2026-11-30 10:00:00 UTC",
		`<td data-label="gateway">gw1</td><td data-label="role">leader</td>`,
		`<td data-label="gateway">gw2</td><td data-label="role">standby</td><td data-label="Ceph client">198.18.0.3:0/5678</td>`,
		`<b class="warn">differs</b>`, "3 takeovers"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}

	single := start(t, zap.NewNop(), nil)
	body, err := curl(t, "--fail", single.base+"/status.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, `"cluster"`) {
		t.Errorf("a single box's /status.json has a cluster: %s", body)
	}
}

// TestStatusSeen: /status.json and the page list the machines seen that
// are not in the inventory, each with its own [[host]]: names and the
// stanza's TOML; without any, "seen" is an empty list.
func TestStatusSeen(t *testing.T) {
	first := time.Now().Add(-time.Hour)
	fx := start(t, zap.NewNop(), func(s *Server) {
		s.Status.Seen = func() []Seen {
			return []Seen{
				{MAC: "02:00:00:ab:cd:ef", Kind: "pxe", Arch: "EFI x86-64", VendorClass: "PXEClient:Arch:00007:UNDI:003016", FirstSeen: first, LastSeen: time.Now(), IP: "198.18.0.100"},
				{MAC: "04:00:00:ab:cd:ef", Kind: "ipxe", Arch: "Intel x86PC", FirstSeen: first, LastSeen: first},
			}
		}
	})
	st := fx.status(t)
	want := []string{
		"[[host]]\nname = \"host-abcdef\"\nmac  = \"02:00:00:ab:cd:ef\"\nboot = \"menu\"\n",
		"[[host]]\nname = \"host-abcdef-2\"\nmac  = \"04:00:00:ab:cd:ef\"\nboot = \"menu\"\n",
	}
	if len(st.Seen) != 2 || st.Seen[0].Stanza != want[0] || st.Seen[1].Stanza != want[1] || st.Seen[0].Host.Name != "host-abcdef" ||
		st.Seen[0].IP != "198.18.0.100" || st.Seen[0].VendorClass != "PXEClient:Arch:00007:UNDI:003016" || !st.Seen[0].FirstSeen.Equal(first) {
		t.Errorf("seen in /status.json: %+v", st.Seen)
	}
	page, err := curl(t, "--fail", "-H", "Accept: text/html", fx.base+"/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"<h2>Machines seen, not in the inventory</h2>", `<td data-label="MAC">02:00:00:ab:cd:ef</td><td data-label="kind">pxe</td><td data-label="arch">EFI x86-64</td>`,
		"<pre>[[host]]\nname = &#34;host-abcdef&#34;\nmac  = &#34;02:00:00:ab:cd:ef&#34;"} {
		if !strings.Contains(page, w) {
			t.Errorf("status page lacks %q:\n%s", w, page)
		}
	}
	body, err := curl(t, "--fail", start(t, zap.NewNop(), nil).base+"/status.json")
	if err != nil || !strings.Contains(body, `"seen": []`) {
		t.Errorf("/status.json without machines seen: %v\n%s", err, body)
	}
}
