//go:build !ceph

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netsan/netsan/netsantest"
)

// TestWithoutCeph: a netsan built without Ceph support refuses an
// inventory that asks for Ceph, in check and in serve, at the line that
// asks, naming the way to a build that has it.
func TestWithoutCeph(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "netsan.toml")
	src := "[server]\naddress = \"198.18.0.1\"\ndata_dir = \".\"\n[iscsi]\nlisten = [\"127.0.0.1:13260\"]\nbase_iqn = \"iqn.2026-11.x.y\"\n" +
		"[[target]]\nname = \"data\"\nluns = [ { lun = 0, rbd = \"rbd/db\", size = \"1G\" } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.x.y:a\"\n" +
		"[ceph]\nconf = \"/nonexistent/ceph.conf\"\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	want := file + ":9:21: rbd = \"rbd/db\": this netsan was built without Ceph support: build it with `make build-ceph`"

	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-c", file}, &stdout, &stderr); code != 1 || !strings.Contains(stdout.String()+stderr.String(), want) {
		t.Errorf("check: exit %d, output:\n%s%s\nwant exit 1 and %q", code, stdout.String(), stderr.String(), want)
	}

	cmd := exec.Command(netsantest.Binary(t), "serve", "-c", file, "--log-format", "console")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "make build-ceph") {
		t.Errorf("serve: %v, output:\n%s\nwant exit 1 naming make build-ceph", err, out)
	}
}
