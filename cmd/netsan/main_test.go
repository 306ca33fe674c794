package main

import (
	"bytes"
	"os"
	"path/filepath"
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
		{[]string{"check", "-c", bad}, 1, bad + `:8:1: unknown key "host.bot"`},
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
