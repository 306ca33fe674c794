package iscsi

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/netsantest"
)

// Test names. The IQNs are the examples' shape; nothing leaves 127.0.0.1.
const (
	testBase      = "iqn.2026-11.test.netsan"
	testTarget    = testBase + ":disk"
	testInitiator = testBase + ":node1"
	otherInit     = testBase + ":node2"
)

// testServer is a Server on 127.0.0.1:0 over temp sparse images.
type testServer struct {
	*Server
	addr string // host:port
	dir  string
}

// startServer serves cfg (Listen and image paths are filled in: a LUN's
// Path, when relative, is placed in a temp dir).
func startServer(t *testing.T, cfg Config, tune ...func(*Server)) *testServer {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	if testing.Verbose() && os.Getenv("NETSAN_ISCSI_DEBUG") != "" {
		log = zaptest.NewLogger(t)
	}
	return startServerLog(t, cfg, log, tune...)
}

func startServerLog(t *testing.T, cfg Config, log *zap.Logger, tune ...func(*Server)) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.StateDir = dir
	for i := range cfg.Targets {
		for j := range cfg.Targets[i].LUNs {
			l := &cfg.Targets[i].LUNs[j]
			if _, rbd := ceph.ParseBacking(l.Path); !rbd && !filepath.IsAbs(l.Path) {
				l.Path = filepath.Join(dir, l.Path)
			}
		}
	}
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tune {
		f(srv)
	}
	netsantest.Serve(t, 30*time.Second, srv.Serve)
	addrs := srv.ListenAddrs()
	if len(addrs) != 1 {
		t.Fatalf("listen addresses %v", addrs)
	}
	return &testServer{Server: srv, addr: addrs[0].String(), dir: dir}
}

// serveOwn serves oneDisk on 127.0.0.1:0 until the test calls cancel
// (or ends), for tests of what Serve does when it stops; done has Serve's
// result.
func serveOwn(t *testing.T, log *zap.Logger) (addr string, cancel func(), done <-chan error) {
	t.Helper()
	cfg := oneDisk(8 << 20)
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Targets[0].LUNs[0].Path = t.TempDir() + "/d.img"
	srv, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	return srv.ListenAddrs()[0].String(), cancel, served
}

// url is the libiscsi URL of a LUN; userinfo is "" or "user%secret".
func (ts *testServer) url(userinfo, iqn string, lun int) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return fmt.Sprintf("iscsi://%s%s/%s/%d", userinfo, ts.addr, iqn, lun)
}

// oneDisk is a target with one LUN of size bytes admitting testInitiator.
func oneDisk(size int64, acl ...ACL) Config {
	if acl == nil {
		acl = []ACL{{Initiator: testInitiator}}
	}
	return Config{Targets: []Target{{
		IQN:  testTarget,
		LUNs: []LUN{{Number: 0, Path: "disk0.img", Size: size}},
		ACL:  acl,
	}}}
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

// run runs a tool with a deadline and returns its combined output.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return out.String(), err
}

func mustRun(t *testing.T, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
