package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/netsan/netsan/netsantest"
)

// imageLab writes an inventory with an 8 MiB golden disk image holding 1 MiB of
// data and two hosts cloned from it, and returns the inventory's path and
// the data directory.
func imageLab(t *testing.T, extra string) (cfg, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "data")
	golden := filepath.Join(dataDir, "golden", "base.img")
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	writeDisk(t, golden, 8<<20, data, 4<<20)
	cfg = filepath.Join(dir, "netsan.toml")
	src := `
[server]
address  = "198.18.0.1"
data_dir = "data"

[iscsi]
base_iqn = "iqn.2026-11.example.lab"
` + extra + "[[image]]\nname = \"base\"\npath = \"golden/base.img\"\n" +
		nodeHost(1, `{ image = "roots/node1.img", from = "base" }`) +
		nodeHost(2, `{ image = "roots/node2.img", from = "base", size = "16MiB" }`)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, dataDir
}

// writeDisk writes a sparse raw disk image of size bytes at path, making
// its directory: data at each offset given, and the MBR boot signature
// import looks for.
func writeDisk(t *testing.T, path string, size int64, data []byte, at ...int64) {
	t.Helper()
	netsantest.Disk(t, path, size, func(w io.WriterAt) error {
		for _, off := range at {
			if _, err := w.WriteAt(data, off); err != nil {
				return err
			}
		}
		return nil
	})
}

func runImage(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = cmdImage(args, &o, &e)
	return o.String(), e.String(), err
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y[:min(len(x), len(y))]) && !bytes.ContainsFunc(y[len(x):], func(r rune) bool { return r != 0 })
}

func TestImageListCloneImport(t *testing.T) {
	cfg, dataDir := imageLab(t, "")
	golden := filepath.Join(dataDir, "golden", "base.img")

	out, _, err := runImage("list", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"base golden - golden/base.img 8.0MiB 1.0MiB", "node1 root base roots/node1.img 8.0MiB (missing)", "node2 root base roots/node2.img 16.0MiB (missing)"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("image list before cloning:\n%s\nwant a line %q", out, want)
		}
	}

	// Flags after the host names work too; progress goes to stderr as log lines.
	out, errOut, err := runImage("clone", "node1", "node2", "-c", cfg)
	if err != nil {
		t.Fatalf("clone: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "node1: cloned") || !strings.Contains(out, "node2: cloned") {
		t.Errorf("clone said:\n%s", out)
	}
	if !strings.Contains(errOut, `"percent":100`) {
		t.Errorf("no progress logged on a non-terminal:\n%s", errOut)
	}
	for _, h := range []string{"node1", "node2"} {
		if !sameFile(t, golden, filepath.Join(dataDir, "roots", h+".img")) {
			t.Errorf("%s: root differs from the golden image", h)
		}
	}
	out, _, err = runImage("list", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "node2") {
			line = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.HasPrefix(line, "node2 root base roots/node2.img 16.0MiB 1.0MiB") ||
		!(strings.HasSuffix(line, "copied") || strings.Contains(line, "shared 1.0MiB")) {
		t.Errorf("image list after cloning: node2 is %q", line)
	}

	// Cloning again keeps the root, and says so.
	out, _, err = runImage("clone", "-c", cfg, "node1")
	if err != nil || !strings.Contains(out, "node1: "+filepath.Join(dataDir, "roots/node1.img")+" exists; kept (netsan image reset node1 replaces it)") {
		t.Errorf("clone of an existing root: %v\n%s", err, out)
	}
	if _, _, err = runImage("clone", "-c", cfg, "nobody"); err == nil || !strings.Contains(err.Error(), `no host "nobody"`) {
		t.Errorf("clone of an unknown host: %v", err)
	}
	if _, _, err = runImage("clone", "-c", cfg); err != errUsage {
		t.Errorf("clone without hosts: %v", err)
	}

	// Import the golden image again as "copy" and add its stanza.
	out, _, err = runImage("import", "-c", cfg, golden, "copy")
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	stanza := out[strings.Index(out, "[[image]]"):]
	if stanza != "[[image]]\nname = \"copy\"\npath = \"golden/copy.img\"\n" {
		t.Errorf("import printed:\n%s", out)
	}
	if !sameFile(t, golden, filepath.Join(dataDir, "golden", "copy.img")) {
		t.Error("imported image differs")
	}
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n" + stanza)
	f.Close()
	if _, err := load(cfg, &bytes.Buffer{}); err != nil {
		t.Errorf("inventory with the printed stanza: %v", err)
	}
	if _, _, err = runImage("import", "-c", cfg, golden, "copy"); err == nil {
		t.Error("import under an existing name: no error")
	}
	if _, _, err = runImage("import", "-c", cfg, golden, "../evil"); err == nil {
		t.Error("import as ../evil: no error")
	}
}

// fakeServer plays a running `netsan serve`: /status.json lists sessions,
// and the control endpoints record what they are asked.
type fakeServer struct {
	mu       sync.Mutex
	sessions []map[string]string
	calls    []string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/status.json":
		_ = json.NewEncoder(w).Encode(map[string]any{"sessions": f.sessions, "hosts": []any{}})
	case r.Method == http.MethodPost && (r.URL.Path == "/iscsi/logout" || r.URL.Path == "/iscsi/reopen"):
		f.calls = append(f.calls, r.URL.Path+" "+r.URL.Query().Get("target"))
		if r.URL.Path == "/iscsi/logout" {
			f.sessions = nil
		}
	default:
		http.NotFound(w, r)
	}
}

func TestImageResetWithSessions(t *testing.T) {
	cfg, dataDir := imageLab(t, "")
	golden := filepath.Join(dataDir, "golden", "base.img")
	root := filepath.Join(dataDir, "roots", "node1.img")
	if _, _, err := runImage("clone", "-c", cfg, "node1"); err != nil {
		t.Fatal(err)
	}
	dirty := func() {
		f, err := os.OpenFile(root, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("the host wrote here"), 0)
		f.Close()
	}
	dirty()

	fake := &fakeServer{sessions: []map[string]string{{
		"initiator": "iqn.2026-11.example.lab:node1", "target": "iqn.2026-11.example.lab:node1", "remote": "198.18.0.11:40001",
	}}}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	_, _, err := runImage("reset", "--yes", "-c", cfg, "--server", srv.URL, "node1")
	if err == nil || !strings.Contains(err.Error(), "1 live session") || !strings.Contains(err.Error(), "198.18.0.11:40001") {
		t.Fatalf("reset with a live session: %v", err)
	}
	if sameFile(t, golden, root) {
		t.Fatal("refused reset replaced the root")
	}
	if len(fake.calls) != 0 {
		t.Errorf("refused reset asked the server %q", fake.calls)
	}

	out, _, err := runImage("reset", "--yes", "-c", cfg, "--server", srv.URL, "--force", "node1")
	if err != nil {
		t.Fatalf("reset --force: %v", err)
	}
	want := "/iscsi/logout iqn.2026-11.example.lab:node1;/iscsi/reopen iqn.2026-11.example.lab:node1"
	if got := strings.Join(fake.calls, ";"); got != want {
		t.Errorf("reset --force asked the server %q, want %q", got, want)
	}
	if !strings.Contains(out, "node1: reset") || !sameFile(t, golden, root) {
		t.Errorf("reset --force: %q; root restored: %v", out, sameFile(t, golden, root))
	}

	// No server listening: nothing to ask, the reset goes ahead.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	dirty()
	if _, _, err := runImage("reset", "--yes", "-c", cfg, "--server", closed, "node1"); err != nil {
		t.Errorf("reset with no server running: %v", err)
	}
	if !sameFile(t, golden, root) {
		t.Error("reset with no server running did not restore the root")
	}

	// A server without the control endpoints: --force cannot log out, so
	// the root is left alone.
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status.json" {
			_ = json.NewEncoder(w).Encode(map[string]any{"sessions": fake.sessions})
			return
		}
		http.NotFound(w, r)
	}))
	defer old.Close()
	fake.sessions = []map[string]string{{"initiator": "i", "target": "iqn.2026-11.example.lab:node1"}}
	dirty()
	if _, _, err := runImage("reset", "--yes", "-c", cfg, "--server", old.URL, "--force", "node1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("reset --force against a server without /iscsi/logout: %v", err)
	}
	if sameFile(t, golden, root) {
		t.Error("root replaced although the logout failed")
	}
}

func TestImageResetHTTPOff(t *testing.T) {
	cfg, _ := imageLab(t, "")
	if _, _, err := runImage("clone", "-c", cfg, "node1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runImage("reset", "--yes", "-c", cfg, "node1"); err == nil || !strings.Contains(err.Error(), "http is off") {
		t.Errorf("reset with http off and no --force: %v", err)
	}
	if _, _, err := runImage("reset", "--yes", "-c", cfg, "--force", "node1"); err != nil {
		t.Errorf("reset --force with http off: %v", err)
	}
}

func TestLoopback(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080":    "127.0.0.1:8080",
		":8080":           "127.0.0.1:8080",
		"[::]:8080":       "127.0.0.1:8080",
		"198.18.0.1:8080": "198.18.0.1:8080",
	} {
		if got := loopback(in); got != want {
			t.Errorf("loopback(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		config string
		pos    []string
	}{
		{[]string{"-c", "f", "h1", "h2", "h3"}, "f", []string{"h1", "h2", "h3"}},
		{[]string{"h1", "h2", "h3", "h4", "-c", "f"}, "f", []string{"h1", "h2", "h3", "h4"}},
		{[]string{"h1", "-c", "f", "h2", "h3"}, "f", []string{"h1", "h2", "h3"}},
		{[]string{"-c", "f", "--", "h1", "-c", "g"}, "f", []string{"h1", "-c", "g"}},
		{[]string{"h1", "--", "-h2", "h3"}, "", []string{"h1", "-h2", "h3"}},
		{[]string{"a", "b", "c", "d", "e", "f", "g", "h"}, "", []string{"a", "b", "c", "d", "e", "f", "g", "h"}},
	} {
		var c commonFlags
		fs := newFlagSet("test", &bytes.Buffer{}, &c)
		pos, err := parseArgs(fs, tc.args)
		if err != nil || c.config != tc.config || strings.Join(pos, " ") != strings.Join(tc.pos, " ") {
			t.Errorf("parseArgs(%q) = %q, -c %q, %v; want %q, -c %q", tc.args, pos, c.config, err, tc.pos, tc.config)
		}
	}
	var c commonFlags
	if _, err := parseArgs(newFlagSet("test", &bytes.Buffer{}, &c), []string{"h1", "--bogus"}); err != errUsage {
		t.Errorf("an unknown flag after a host: %v, want errUsage", err)
	}
}

// TestImageCloneEveryHost: every host named is acted on, however many, and
// an unknown or repeated name refuses the command before anything is done.
func TestImageCloneEveryHost(t *testing.T) {
	cfg, dataDir := imageLab(t, nodeHost(3, `{ image = "roots/node3.img", from = "base" }`))
	golden := filepath.Join(dataDir, "golden", "base.img")
	root := func(h string) string { return filepath.Join(dataDir, "roots", h+".img") }

	for _, args := range [][]string{
		{"clone", "-c", cfg, "node1", "nobody", "node3"},
		{"clone", "-c", cfg, "node1", "node2", "node1"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"image"}, args...), &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), "nothing done") {
			t.Errorf("netsan image %q: exit %d\n%s%s", args, code, &stdout, &stderr)
		}
		if _, err := os.Stat(root("node1")); err == nil {
			t.Fatalf("netsan image %q cloned node1 although it was refused", args)
		}
	}
	var stderr bytes.Buffer
	run([]string{"image", "clone", "-c", cfg, "node1", "nobody", "node3"}, &bytes.Buffer{}, &stderr)
	if !strings.Contains(stderr.String(), `no host "nobody"`) {
		t.Errorf("refusal does not name the unknown host:\n%s", &stderr)
	}

	out, errOut, err := runImage("clone", "-c", cfg, "node1", "node2", "node3")
	if err != nil {
		t.Fatalf("clone of three hosts: %v\n%s", err, errOut)
	}
	for _, h := range []string{"node1", "node2", "node3"} {
		if !strings.Contains(out, h+": cloned") || !sameFile(t, golden, root(h)) {
			t.Errorf("clone of three hosts: %s not cloned:\n%s", h, out)
		}
		if err := os.WriteFile(root(h), []byte("dirty"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err = runImage("reset", "--yes", "node1", "node2", "node3", "--force", "-c", cfg)
	if err != nil {
		t.Fatalf("reset of three hosts: %v\n%s", err, errOut)
	}
	for _, h := range []string{"node1", "node2", "node3"} {
		if !strings.Contains(out, h+": reset") || !sameFile(t, golden, root(h)) {
			t.Errorf("reset of three hosts: %s not reset:\n%s", h, out)
		}
	}
}

// TestImageImportRefusesNonDisk: a file that is no disk image is refused
// with the reason, exit 1, and nothing is written.
func TestImageImportRefusesNonDisk(t *testing.T) {
	cfg, dataDir := imageLab(t, "")
	src := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(src, []byte("hello world"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"image", "import", "-c", cfg, src, "notes"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "not a disk image: 11 bytes") {
		t.Errorf("import of an 11-byte file: exit %d\n%s%s", code, &stdout, &stderr)
	}
	ents, err := os.ReadDir(filepath.Join(dataDir, "golden"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "base.img" {
		t.Errorf("a refused import left files in golden/: %v", ents)
	}
}

// TestImageListOrphans: the root of a host removed from the inventory is
// kept and listed as orphaned; roots in use and clones in progress are not.
func TestImageListOrphans(t *testing.T) {
	cfg, dataDir := imageLab(t, "")
	if _, _, err := runImage("clone", "-c", cfg, "node1", "node2"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "roots", ".node3.img.tmp-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	writeFile(t, cfg, src[:strings.Index(src, "[[host]]\nname = \"node2\"")])
	out, _, err := runImage("list", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var orphaned []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[1] == "orphaned" {
			orphaned = append(orphaned, strings.Join(f, " "))
		}
	}
	if len(orphaned) != 1 || !strings.HasPrefix(orphaned[0], "- orphaned - roots/node2.img 16.0MiB") {
		t.Errorf("image list after node2 left the inventory:\n%s\nwant one orphaned row for roots/node2.img", out)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "roots", "node2.img")); err != nil {
		t.Errorf("node2's root: %v", err)
	}
}

// TestImageCloneAll: clone --all clones every host whose root has a golden
// image and no other; run again it keeps every root, says so, and
// succeeds. Hosts named beside --all are a usage error.
func TestImageCloneAll(t *testing.T) {
	cfg, dataDir := imageLab(t, nodeHost(3, `{ image = "roots/node3.img", size = "1MiB" }`))
	golden := filepath.Join(dataDir, "golden", "base.img")
	root := func(h string) string { return filepath.Join(dataDir, "roots", h+".img") }
	out, errOut, err := runImage("clone", "--all", "-c", cfg)
	if err != nil {
		t.Fatalf("clone --all: %v\n%s", err, errOut)
	}
	for _, h := range []string{"node1", "node2"} {
		if !strings.Contains(out, h+": cloned") || !sameFile(t, golden, root(h)) {
			t.Errorf("clone --all: %s not cloned:\n%s", h, out)
		}
	}
	if _, err := os.Stat(root("node3")); err == nil || strings.Contains(out, "node3") {
		t.Errorf("clone --all touched node3, whose root has no golden image:\n%s", out)
	}
	if err := os.WriteFile(root("node1"), []byte("written by node1"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = runImage("clone", "--all", "-c", cfg)
	if err != nil {
		t.Fatalf("clone --all again: %v\n%s", err, errOut)
	}
	for _, h := range []string{"node1", "node2"} {
		if !strings.Contains(out, h+": "+root(h)+" exists; kept (netsan image reset "+h+" replaces it)") {
			t.Errorf("clone --all again does not say %s's root is kept:\n%s", h, out)
		}
	}
	if b, _ := os.ReadFile(root("node1")); string(b) != "written by node1" {
		t.Errorf("clone --all again replaced node1's root")
	}
	if code, _, errs := runNetsanIn("image", "clone", "--all", "node1", "-c", cfg); code != 2 || !strings.Contains(errs, "name hosts or --all, not both") {
		t.Errorf("clone --all node1: exit %d\n%s", code, errs)
	}
}

// TestImageResetConfirm: image reset asks on a terminal and goes on only
// on yes; without a terminal it refuses, saying so, unless --yes.
func TestImageResetConfirm(t *testing.T) {
	netsantest.NeedTools(t, "script")
	bin := netsantest.Binary(t)
	cfg, dataDir := imageLab(t, "")
	golden, root := filepath.Join(dataDir, "golden", "base.img"), filepath.Join(dataDir, "roots", "node1.img")
	if _, _, err := runImage("clone", "-c", cfg, "node1"); err != nil {
		t.Fatal(err)
	}
	dirty := []byte("written by node1")
	if err := os.WriteFile(root, dirty, 0o644); err != nil {
		t.Fatal(err)
	}
	kept := func() bool { b, _ := os.ReadFile(root); return bytes.Equal(b, dirty) }

	// No terminal (stdin /dev/null): refused, nothing done.
	out, err := exec.Command(bin, "image", "reset", "--force", "-c", cfg, "node1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stdin is not a terminal") || !strings.Contains(string(out), "--yes") || !kept() {
		t.Errorf("reset without a terminal: %v\n%s", err, out)
	}
	// On a terminal (script(1) gives it one), the answer decides.
	for _, answer := range []string{"n", "y"} {
		c := exec.Command("script", "-qec", bin+" image reset --force -c "+cfg+" node1", "/dev/null")
		c.Stdin = strings.NewReader(answer + "\n")
		out, err := c.CombinedOutput()
		if !strings.Contains(string(out), "Replace the root of node1 with a fresh clone? What was written to it is lost. [y/N]") {
			t.Errorf("reset on a terminal did not ask:\n%s", out)
		}
		switch answer {
		case "n":
			if err == nil || !strings.Contains(string(out), "not confirmed; nothing done") || !kept() {
				t.Errorf("reset answered no: %v\n%s", err, out)
			}
		case "y":
			if err != nil || !strings.Contains(string(out), "node1: reset") || !sameFile(t, golden, root) {
				t.Errorf("reset answered yes: %v\n%s", err, out)
			}
		}
	}
}
