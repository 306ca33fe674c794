// Package cephtest starts a single-node Ceph cluster for a test, as
// net/http/httptest starts a server: one monitor and one OSD on memstore,
// auth none, pool size 1, no manager, on a free port of 127.0.0.1 (or an
// address the test gives). The daemons belong to the test and are killed by
// PID at its cleanup.
package cephtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/netsan/netsan/netsantest"
)

// Cluster is a running single-node cluster.
type Cluster struct {
	// Conf is the ceph.conf a client reads: the monitor's address, auth none.
	Conf string
	// Pool is a replicated pool of size 1, initialised for RBD.
	Pool string
	// Dir holds the daemons' data, logs and sockets.
	Dir string

	Mon, OSD *netsantest.Process
	t        testing.TB
}

// Options change where and how the cluster runs; the zero value is a
// cluster on 127.0.0.1 with 2 GiB of memstore and a pool "rbd".
type Options struct {
	// Addr is the monitor's IP (default 127.0.0.1). It must be an address of
	// the namespace the test runs in.
	Addr string
	// NetNS runs the daemons in that network namespace (ip netns exec).
	NetNS string
	// StoreBytes is the memstore size (default 2 GiB); what tests write
	// lives in RAM.
	StoreBytes int64
	// Pool is the pool made and initialised for RBD (default "rbd").
	Pool string
}

// Daemons are the Debian packages a cluster needs; make deps installs them.
var daemons = []string{"ceph-mon", "ceph-osd", "monmaptool", "ceph", "rbd"}

// Installed reports whether the Ceph daemons and tools are on the PATH, and
// which one is missing if not.
func Installed() (bool, string) {
	for _, d := range daemons {
		if _, err := exec.LookPath(d); err != nil {
			return false, d
		}
	}
	return true, ""
}

// Start starts a cluster and returns once the OSD is up and an RBD image
// can be created in the pool, typically 8-12 s. It skips t where the Ceph
// packages are not installed and fails it where they are but the cluster
// does not come up within a minute.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if ok, missing := Installed(); !ok {
		t.Skipf("%s not installed (make deps installs ceph-mon ceph-osd ceph-common)", missing)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1"
	}
	if o.StoreBytes == 0 {
		o.StoreBytes = 2 << 30
	}
	if o.Pool == "" {
		o.Pool = "rbd"
	}
	port := netsantest.FreePort(t, "tcp")
	c := &Cluster{Dir: t.TempDir(), Pool: o.Pool, t: t}
	c.Conf = filepath.Join(c.Dir, "ceph.conf")
	fsid, err := uuid()
	if err != nil {
		t.Fatal(err)
	}
	mon := fmt.Sprintf("v2:%s", net.JoinHostPort(o.Addr, strconv.Itoa(port)))
	for _, d := range []string{"mon", "osd", "run"} {
		if err := os.Mkdir(filepath.Join(c.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`[global]
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
`, fsid, mon, c.Dir, o.StoreBytes)
	if err := os.WriteFile(c.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	wrap := func(name string, args ...string) *exec.Cmd {
		if o.NetNS != "" {
			return exec.Command("ip", append([]string{"netns", "exec", o.NetNS, name}, args...)...)
		}
		return exec.Command(name, args...)
	}
	c.run(wrap("monmaptool", "--create", "--fsid", fsid, "--addv", "a", "["+mon+"]", filepath.Join(c.Dir, "monmap")))
	c.run(wrap("ceph-mon", "-c", c.Conf, "--mkfs", "-i", "a", "--monmap", filepath.Join(c.Dir, "monmap")))
	c.Mon = netsantest.Start(t, wrap("ceph-mon", "-c", c.Conf, "-i", "a", "-f"), netsantest.NewLog(t, "ceph-mon"))
	c.run(wrap("ceph", "-c", c.Conf, "--connect-timeout", "30", "osd", "create"))
	c.run(wrap("ceph", "-c", c.Conf, "osd", "crush", "add", "osd.0", "1", "root=default"))
	c.run(wrap("ceph-osd", "-c", c.Conf, "-i", "0", "--mkfs"))
	c.OSD = netsantest.Start(t, wrap("ceph-osd", "-c", c.Conf, "-i", "0", "-f"), netsantest.NewLog(t, "ceph-osd"))
	c.run(wrap("ceph", "-c", c.Conf, "osd", "pool", "create", o.Pool, "8", "8"))
	c.run(wrap("rbd", "-c", c.Conf, "pool", "init", o.Pool))
	// The pool is usable once the OSD is up and its placement groups are
	// active: an image create is the proof.
	netsantest.WaitFor(t, "rbd create on the new cluster", time.Minute, func() bool {
		return wrap("rbd", "-c", c.Conf, "create", "--size", "1", o.Pool+"/cephtest-ready").Run() == nil
	})
	c.run(wrap("rbd", "-c", c.Conf, "rm", "--no-progress", o.Pool+"/cephtest-ready"))
	return c
}

// Rbd runs the rbd command against the cluster and returns its output,
// failing the test on an error.
func (c *Cluster) Rbd(args ...string) string {
	c.t.Helper()
	return c.run(exec.Command("rbd", append([]string{"-c", c.Conf}, args...)...))
}

// Ceph runs the ceph command against the cluster and returns its output.
func (c *Cluster) Ceph(args ...string) string {
	c.t.Helper()
	return c.run(exec.Command("ceph", append([]string{"-c", c.Conf}, args...)...))
}

func (c *Cluster) run(cmd *exec.Cmd) string {
	c.t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("%s: %v", cmd, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Fatalf("%s: %v\n%s", cmd, err, out.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		c.t.Fatalf("%s: no answer within a minute\n%s", cmd, out.String())
	}
	return out.String()
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
