package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// TestServeUnprivileged runs serve as nobody with only CAP_NET_BIND_SERVICE,
// as dist/netsan.service does: it binds ports below 1024 and serves; without
// the capability it fails with a clear error instead of half-starting.
func TestServeUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	netsantest.NeedTools(t, "setpriv", "iscsi-inq")
	dir, err := os.MkdirTemp("", "netsan-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := netsantest.Binary(t)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// 860 is iSCSI's system port; nothing on a test machine uses it.
	const port = 860
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, inventorytest.Loopback(data, 0, port, "iqn.2026-11.example.test")+`[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
root = { image = "roots/node1.img", size = "8MiB" }
`)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}

	serve := func(caps ...string) *exec.Cmd {
		args := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
		args = append(args, caps...)
		args = append(args, bin, "serve", "-c", path, "--log-format", "json")
		return exec.Command("setpriv", args...)
	}

	// Without the capability: refused, with the reason.
	out, err := serve("--inh-caps=-all").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("serve without CAP_NET_BIND_SERVICE: err %v, output:\n%s", err, out)
	}

	// With it: serves as uid 65534.
	cmd := serve("--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service")
	netsantest.Start(t, cmd, netsantest.NewLog(t, "netsan"))
	iqn := "iqn.2026-11.example.test:node1"
	var inqErr error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var out []byte
		out, inqErr = exec.Command("iscsi-inq", "-i", iqn, fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", port, iqn)).CombinedOutput()
		if inqErr == nil {
			break
		}
		inqErr = fmt.Errorf("%v: %s", inqErr, out)
	}
	if inqErr != nil {
		t.Fatalf("iscsi-inq against the unprivileged server: %v", inqErr)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUid:\t65534\t65534\t65534\t65534\n") {
		t.Errorf("netsan is not running as nobody:\n%s", status)
	}
	fi, err := os.Stat(filepath.Join(data, "roots/node1.img"))
	if err != nil || fi.Size() != 8<<20 {
		t.Errorf("root image: %v %v", fi, err)
	}
}
