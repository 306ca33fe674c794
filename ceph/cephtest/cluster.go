// Package cephtest starts a single-node Ceph cluster for a test or a
// benchmark, as net/http/httptest starts a server: one monitor and one OSD
// on memstore, auth none, pool size 1, no manager, on a free port of
// 127.0.0.1 (or an address the caller gives). The daemons belong to the
// caller and are killed by PID when it stops them.
package cephtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Cluster is a running single-node cluster.
type Cluster struct {
	// Conf is the ceph.conf a client reads: the monitor's address, auth none.
	Conf string
	// Pool is a replicated pool of size 1, initialised for RBD.
	Pool string
	// Dir holds the daemons' data, logs and sockets.
	Dir string
	// Mon and OSD are the daemons; OSD.Process takes SIGSTOP for fault tests.
	Mon, OSD *exec.Cmd

	netns  string
	ownDir bool
	exited map[*exec.Cmd]chan struct{}
}

// Options change where and how the cluster runs; the zero value is a
// cluster on 127.0.0.1 with 2 GiB of memstore and a pool "rbd".
type Options struct {
	// Addr is the monitor's IP (default 127.0.0.1). It must be an address of
	// the namespace the daemons run in.
	Addr string
	// NetNS runs the daemons in that network namespace (ip netns exec).
	NetNS string
	// StoreBytes is the memstore size (default 2 GiB); what is written
	// lives in RAM.
	StoreBytes int64
	// Pool is the pool made and initialised for RBD (default "rbd").
	Pool string
	// Dir is where the cluster keeps its files (default: a new temporary
	// directory, removed by Stop).
	Dir string
}

// Tools are the commands a cluster needs: Debian's ceph-mon, ceph-osd and
// ceph-common, which make deps-ceph installs.
var Tools = []string{"ceph-mon", "ceph-osd", "monmaptool", "ceph", "rbd", "rados"}

// Installed reports whether the Ceph daemons and tools are on the PATH, and
// which one is missing if not.
func Installed() (bool, string) {
	for _, d := range Tools {
		if _, err := exec.LookPath(d); err != nil {
			return false, d
		}
	}
	return true, ""
}

// Start launches a cluster for t and stops it at t's cleanup, showing the
// daemons' logs if t failed. It skips t where the Ceph packages are not
// installed and fails it where they are but the cluster does not come up.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if ok, missing := Installed(); !ok {
		t.Skipf("%s not installed (make deps-ceph installs ceph-mon ceph-osd ceph-common)", missing)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	c, err := Launch(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, name := range []string{"mon.a.log", "osd.0.log"} {
				b, _ := os.ReadFile(filepath.Join(c.Dir, name))
				t.Logf("%s (last 4 KiB):\n%s", name, b[max(0, len(b)-4096):])
			}
		}
	})
	return c
}

// Launch starts a cluster and returns once the OSD is up and an RBD image
// can be created in the pool, typically 8-12 s; Stop kills it.
func Launch(o Options) (c *Cluster, err error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1"
	}
	if o.StoreBytes == 0 {
		o.StoreBytes = 2 << 30
	}
	if o.Pool == "" {
		o.Pool = "rbd"
	}
	c = &Cluster{Dir: o.Dir, Pool: o.Pool, netns: o.NetNS, exited: map[*exec.Cmd]chan struct{}{}}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "cephtest-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	port, err := freePort(o.Addr)
	if err != nil {
		return nil, err
	}
	c.Conf = filepath.Join(c.Dir, "ceph.conf")
	fsid, err := uuid()
	if err != nil {
		return nil, err
	}
	mon := "v2:" + net.JoinHostPort(o.Addr, strconv.Itoa(port))
	for _, d := range []string{"mon", "osd", "run"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(c.Conf, []byte(fmt.Sprintf(`[global]
fsid = %s
mon host = %s
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
ms bind msgr1 = false
osd crush chooseleaf type = 0
run dir = %[3]s/run
admin socket = %[3]s/run/$name.asok
log file = %[3]s/$name.log
mon data = %[3]s/mon
osd data = %[3]s/osd
osd objectstore = memstore
memstore device bytes = %[4]d
# A PG's read lease is 0.8 of the heartbeat grace (16 s by default). The
# fault tests stop the only OSD for 20-40 s: past its lease, a PG woken
# with no peer to renew it from stayed laggy, holding ops for minutes.
osd heartbeat grace = 120
`, fsid, mon, c.Dir, o.StoreBytes)), 0o644); err != nil {
		return nil, err
	}
	monmap := filepath.Join(c.Dir, "monmap")
	steps := [][]string{
		{"monmaptool", "--create", "--fsid", fsid, "--addv", "a", "[" + mon + "]", monmap},
		{"ceph-mon", "-c", c.Conf, "--mkfs", "-i", "a", "--monmap", monmap},
	}
	for _, s := range steps {
		if _, err := c.run(s...); err != nil {
			return nil, err
		}
	}
	if c.Mon, err = c.daemon("ceph-mon", "-c", c.Conf, "-i", "a", "-f"); err != nil {
		return nil, err
	}
	steps = [][]string{
		{"ceph", "-c", c.Conf, "--connect-timeout", "30", "osd", "create"},
		{"ceph", "-c", c.Conf, "osd", "crush", "add", "osd.0", "1", "root=default"},
		{"ceph-osd", "-c", c.Conf, "-i", "0", "--mkfs"},
	}
	for _, s := range steps {
		if _, err := c.run(s...); err != nil {
			return nil, err
		}
	}
	if c.OSD, err = c.daemon("ceph-osd", "-c", c.Conf, "-i", "0", "-f"); err != nil {
		return nil, err
	}
	if _, err := c.Ceph("osd", "pool", "create", o.Pool, "8", "8"); err != nil {
		return nil, err
	}
	if _, err := c.Rbd("pool", "init", o.Pool); err != nil {
		return nil, err
	}
	// The pool is usable once the OSD is up and its placement groups are
	// active: an image create is the proof.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.Rbd("create", "--size", "1", o.Pool+"/cephtest-ready")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cephtest: the cluster did not take an image within a minute: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := c.Rbd("rm", "--no-progress", o.Pool+"/cephtest-ready"); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop kills the daemons (OSD first), waits for them, and removes the
// cluster's directory if Launch made it.
func (c *Cluster) Stop() {
	for _, d := range []*exec.Cmd{c.OSD, c.Mon} {
		if d == nil {
			continue
		}
		_ = d.Process.Signal(syscall.SIGCONT) // a stopped OSD must see the kill
		_ = d.Process.Kill()
		<-c.exited[d]
	}
	c.OSD, c.Mon = nil, nil
	if c.ownDir {
		os.RemoveAll(c.Dir)
	}
}

// Rbd runs the rbd command against the cluster and returns its output.
func (c *Cluster) Rbd(args ...string) (string, error) {
	return c.run(append([]string{"rbd", "-c", c.Conf}, args...)...)
}

// Ceph runs the ceph command against the cluster and returns its output.
func (c *Cluster) Ceph(args ...string) (string, error) {
	return c.run(append([]string{"ceph", "-c", c.Conf}, args...)...)
}

// Rados runs the rados command against the cluster's pool and returns its
// output: a client of its own, apart from the process under test.
func (c *Cluster) Rados(args ...string) (string, error) {
	return c.run(append([]string{"rados", "-c", c.Conf, "-p", c.Pool}, args...)...)
}

// MustRbd is Rbd failing t on an error.
func (c *Cluster) MustRbd(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.Rbd(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *Cluster) command(args ...string) *exec.Cmd {
	if c.netns != "" {
		args = append([]string{"ip", "netns", "exec", c.netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	// The daemons must not outlive whoever started them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs a command for at most a minute and returns its output.
func (c *Cluster) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("cephtest: %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("cephtest: %v: %w\n%s", args, err, out.String())
		}
		return out.String(), nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("cephtest: %v: no answer within a minute\n%s", args, out.String())
	}
}

// daemon starts a daemon in the foreground; its log goes to Dir.
func (c *Cluster) daemon(args ...string) (*exec.Cmd, error) {
	cmd := c.command(args...)
	out, err := os.Create(filepath.Join(c.Dir, filepath.Base(args[0])+".out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cephtest: %s: %w", args[0], err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.exited[cmd] = exited
	return cmd, nil
}

func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		// In another namespace the address is not ours to bind: any
		// high port that is free here is as likely free there.
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return 0, err
		}
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func uuid() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// FreezeOSD stops the OSD (SIGSTOP) and returns once every thread of it
// has stopped: kill(2) returns before the threads of a busy process do,
// and one already running may finish an operation meanwhile, which a test
// of what happens while the OSD is away would count as served by it.
func (c *Cluster) FreezeOSD() error {
	p := c.OSD.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	tasks := fmt.Sprintf("/proc/%d/task", p.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		running, err := runningThreads(tasks)
		switch {
		case err != nil:
			return err
		case running == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("osd: %d threads still running 10 s after SIGSTOP", running)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runningThreads counts the threads under /proc/PID/task that are not
// stopped (state T).
func runningThreads(tasks string) (int, error) {
	ds, err := os.ReadDir(tasks)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range ds {
		b, err := os.ReadFile(filepath.Join(tasks, d.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		// "pid (comm) S ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			n++
		}
	}
	return n, nil
}
