package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/netsan/netsan/netsantest"
)

func TestMain(m *testing.M) {
	netsantest.Main(m)
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[server]\naddress = \"198.18.0.1\"\n[iscsi]\nbase_iqn = \"iqn.2026-11.x.y\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nbot = \"san\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"check", "--offline", "-c", "../../examples/lab.toml"}, 0, "lab.toml: OK (hosts: 3, targets: 1, images: 1)"},
		{[]string{"check", "-c", bad}, 1, bad + `:8:1: unknown key "host.bot"; did you mean boot?`},
		{[]string{"check", "-c", filepath.Join(dir, "missing.toml")}, 1, "no such file"},
		{[]string{"check", "-x"}, 2, "flag provided but not defined"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"hosts", "-c", "../../examples/pi-cluster.toml"}, 0, "pi3   d8:3a:dd:00:00:03  198.18.20.13  san   iqn.2026-11.example.picluster:pi3  roots/pi3.img  16.0GiB  (missing)"},
		{[]string{"version"}, 0, "netsan "},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("netsan %v: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out, tc.code, tc.out)
		}
	}
}

// TestHelp: every command explains itself with -h (and --help): its
// usage on stdout, nothing on stderr, exit 0; a flag it does not have is
// a usage error on stderr, exit 2.
func TestHelp(t *testing.T) {
	cmds := slices.Sorted(maps.Keys(commandHelp))
	if len(cmds) < 7 {
		t.Fatalf("commandHelp has %d commands", len(cmds))
	}
	for _, cmd := range append(cmds, "image", "") {
		for _, h := range []string{"-h", "--help"} {
			args := append(strings.Fields(cmd), h)
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			if code != 0 || stderr.Len() > 0 || !strings.HasPrefix(stdout.String(), strings.TrimSpace("usage: netsan "+cmd)) {
				t.Errorf("netsan %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, &stdout, &stderr)
			}
		}
		if _, ok := commandHelp[cmd]; !ok {
			continue
		}
		args := append(strings.Fields(cmd), "--no-such-flag")
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || stdout.Len() > 0 || !strings.Contains(stderr.String(), "usage: netsan "+cmd) {
			t.Errorf("netsan %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, &stdout, &stderr)
		}
	}
}
