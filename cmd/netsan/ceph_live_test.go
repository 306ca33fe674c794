//go:build ceph

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/netsantest"
)

// cephInventory is an inventory for a server on 127.0.0.1 with its data
// in dir, Ceph from conf, and the sections in body.
func cephInventory(dir, conf, body string) string {
	return fmt.Sprintf("[server]\naddress = \"127.0.0.1\"\ndata_dir = \"data\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n"+
		"[ceph]\nconf = %q\n", conf) + body
}

// baseImage is the [[image]] stanza of golden image rbd/base.
const baseImage = "[[image]]\nname = \"base\"\nrbd  = \"rbd/base\"\n"

// runNetsan runs a netsan command in this process and returns its exit
// status and output.
func runNetsan(args ...string) (int, string) {
	var out bytes.Buffer
	code := run(args, &out, &out)
	return code, out.String()
}

// TestCephUnreachable: a cluster that does not answer is an error at the
// [ceph] stanza in check, and serve exits 1 naming it, both within the
// connection timeout.
func TestCephUnreachable(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ceph.conf")
	writeFile(t, conf, fmt.Sprintf("[global]\nmon host = v2:127.0.0.1:%d\nauth client required = none\nms bind msgr1 = false\n", netsantest.FreePort(t, "tcp")))
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, cephInventory(dir, conf, "[iscsi]\nenabled = false\nbase_iqn = \"iqn.2026-11.example.test\"\n"))

	bin := netsantest.Binary(t)
	start := time.Now()
	serve := exec.Command(bin, "serve", "-c", path, "--log-format", "console")
	var serveOut netsantest.LogBuffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	code, out := runNetsan("check", "-c", path)
	want := at(t, path, "[ceph]") + ": [ceph]: the cluster did not answer within 10s"
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("check: exit %d\n%s\nwant exit 1 and %q", code, out, want)
	}
	err := serve.Wait()
	took := time.Since(start)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(serveOut.String(), "ceph cluster unreachable") ||
		!strings.Contains(serveOut.String(), "did not answer within 10s") {
		t.Errorf("serve: %v\n%s\nwant exit 1, the cluster unreachable", err, serveOut.String())
	}
	if took > 30*time.Second {
		t.Errorf("serve took %s to give up on the cluster, want about 10 s", took)
	}
	t.Logf("serve and check gave up after %s", took.Round(time.Millisecond))
	if code, out := runNetsan("check", "--offline", "-c", path); code != 0 {
		t.Errorf("check --offline: exit %d\n%s", code, out)
	}
}

// readRBD reads n bytes at off of an RBD image.
func readRBD(t *testing.T, c *ceph.Cluster, name string, off int64, n int) []byte {
	t.Helper()
	s, err := c.OpenImage(ceph.Name{Pool: "rbd", Image: name}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := make([]byte, n)
	if _, err := s.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCephImages: against a real cluster, image import writes raw and
// qcow2 disks into RBD golden images (refusing a name taken) and prints
// their stanza; check finds a golden image a missing root needs absent, at
// its stanza; image clone makes Ceph clones and keeps an existing root;
// image list shows size, used and parent; serve connects, clones missing
// roots at start and on reload, and refuses a reload that changes [ceph];
// image reset makes a fresh clone.
func TestCephImages(t *testing.T) {
	tc := cephtest.Start(t, cephtest.Options{})
	c, err := ceph.Connect(ceph.Config{Conf: tc.Conf}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	dir := t.TempDir()
	path := filepath.Join(dir, "netsan.toml")
	const iscsiOff = "[iscsi]\nenabled = false\nbase_iqn = \"iqn.2026-11.example.test\"\n"
	writeFile(t, path, cephInventory(dir, tc.Conf, iscsiOff))

	// Import: a raw disk and the same as qcow2.
	raw := filepath.Join(dir, "disk.raw")
	block := bytes.Repeat([]byte("netsan golden image\n"), 200) // 4000 bytes
	writeDisk(t, raw, 64<<20, block, 1<<20, 17<<20, 33<<20, 49<<20)
	qcow := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	code, out := runNetsan("image", "import", "-c", path, raw, "base")
	if code != 0 || !strings.Contains(out, "[[image]]\nname = \"base\"\nrbd  = \"rbd/base\"\n") || !strings.Contains(out, "(raw) as rbd rbd/base: 64.0MiB") {
		t.Fatalf("import of a raw disk: exit %d\n%s", code, out)
	}
	if code, out := runNetsan("image", "import", "-c", path, qcow, "fromqcow"); code != 0 || !strings.Contains(out, "(qcow2) as rbd rbd/fromqcow: 64.0MiB") {
		t.Fatalf("import of a qcow2 disk: exit %d\n%s", code, out)
	}
	for _, name := range []string{"base", "fromqcow"} {
		if got := readRBD(t, c, name, 17<<20, len(block)); !bytes.Equal(got, block) {
			t.Errorf("rbd/%s at 17 MiB: %q…, want the disk's", name, got[:20])
		}
		if got := readRBD(t, c, name, 510, 2); !bytes.Equal(got, []byte{0x55, 0xaa}) {
			t.Errorf("rbd/%s: no MBR signature", name)
		}
	}
	// Thin: zeros were not written, so 4 of the 16 objects (4 MiB each)
	// hold data.
	if info, err := c.Stat(ceph.Name{Pool: "rbd", Image: "base"}); err != nil || info.Size != 64<<20 || info.Used != 16<<20 {
		t.Errorf("rbd/base: %+v %v, want 64 MiB with 16 MiB used", info, err)
	}
	if code, out := runNetsan("image", "import", "-c", path, raw, "base"); code == 0 || !strings.Contains(out, "rbd rbd/base: file already exists") {
		t.Errorf("import onto an existing rbd image: exit %d\n%s", code, out)
	}

	hosts := baseImage + nodeHost(1, `{ rbd = "node1", from = "base", size = "96MiB" }`) + nodeHost(2, `{ rbd = "rbd/node2", from = "base" }`)
	gone := "[[image]]\nname = \"gone\"\nrbd  = \"gone\"\n" + nodeHost(3, `{ rbd = "node3", from = "gone" }`)
	writeFile(t, path, cephInventory(dir, tc.Conf, iscsiOff+hosts+gone))
	code, out = runNetsan("check", "-c", path)
	want := at(t, path, `root = { rbd = "node3"`) + `: host node3: root rbd:rbd/node3 is missing and must be cloned from golden image "gone", but rbd rbd/gone does not exist`
	if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "node1") || strings.Contains(out, "node2") {
		t.Errorf("check: exit %d\n%s\nwant exit 1 and only %q", code, out, want)
	}
	writeFile(t, path, cephInventory(dir, tc.Conf, iscsiOff+hosts))
	if code, out := runNetsan("check", "-c", path); code != 0 {
		t.Errorf("check: exit %d\n%s", code, out)
	}

	list := func() string {
		t.Helper()
		code, out := runNetsan("image", "list", "-c", path)
		if code != 0 {
			t.Fatalf("image list: exit %d\n%s", code, out)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	parent := "parent rbd/base@" + ceph.GoldenSnap
	for _, want := range []string{
		"base golden - rbd:rbd/base 64.0MiB 16.0MiB -",
		"node1 root base rbd:rbd/node1 96.0MiB (missing) -",
		"node2 root base rbd:rbd/node2 64.0MiB (missing) -",
	} {
		if got := list(); !strings.Contains(got, want) {
			t.Errorf("image list before cloning:\n%s\nwant %q", got, want)
		}
	}
	if code, out := runNetsan("image", "clone", "-c", path, "node1"); code != 0 || !strings.Contains(out, "node1: cloned rbd:rbd/node1 from base (rbd clone)") {
		t.Fatalf("image clone: exit %d\n%s", code, out)
	}
	if code, out := runNetsan("image", "clone", "-c", path, "node1"); code != 0 || !strings.Contains(out, "node1: rbd:rbd/node1 exists; kept") {
		t.Errorf("image clone of an existing root: exit %d\n%s", code, out)
	}
	if got, want := list(), "node1 root base rbd:rbd/node1 96.0MiB 0B "+parent; !strings.Contains(got, want) {
		t.Errorf("image list after cloning:\n%s\nwant %q", got, want)
	}
	if code, out := runNetsan("hosts", "-c", path); code != 0 || !strings.Contains(strings.Join(strings.Fields(out), " "), "iqn.2026-11.example.test:node1 rbd:rbd/node1 - -") {
		t.Errorf("hosts: exit %d\n%s\nwant node1's root as rbd:rbd/node1", code, out)
	}

	// serve: connects, clones node2 at start, node4 on a reload, and
	// refuses a reload that changes [ceph].
	httpPort := netsantest.FreePort(t, "tcp")
	httpOn := fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", httpPort)
	writeFile(t, path, cephInventory(dir, tc.Conf, iscsiOff+httpOn+hosts))
	log := netsantest.NewLog(t, "netsan")
	p := netsantest.Start(t, exec.Command(netsantest.Binary(t), "serve", "-c", path, "--log-format", "json"), log)
	netsantest.WaitFor(t, "netsan starting", 30*time.Second, func() bool { return strings.Contains(log.String(), "netsan starting") })
	if !strings.Contains(log.String(), "connected to ceph") {
		t.Error("serve did not log its connection to the cluster")
	}
	if out := tc.MustRbd(t, "info", "rbd/node2"); !strings.Contains(out, "parent: rbd/base@"+ceph.GoldenSnap) {
		t.Errorf("rbd info rbd/node2 after serve started:\n%s", out)
	}
	node4 := nodeHost(4, `{ rbd = "node4", from = "base" }`)
	writeFile(t, path, cephInventory(dir, tc.Conf, iscsiOff+httpOn+hosts+node4))
	netsantest.WaitFor(t, "node4's root cloned by a reload", 30*time.Second, func() bool {
		ok, err := c.Exists(ceph.Name{Pool: "rbd", Image: "node4"})
		return ok && err == nil && strings.Contains(log.String(), "reloaded")
	})
	writeFile(t, path, cephInventory(dir, tc.Conf+".other", iscsiOff+httpOn+hosts+node4))
	netsantest.WaitFor(t, "a [ceph] change refused", 30*time.Second, func() bool {
		return strings.Contains(log.String(), "reload refused: [ceph] changed; restart netsan")
	})
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	writeFile(t, path, cephInventory(dir, tc.Conf, iscsiOff+httpOn+hosts+node4))

	// Reset: what node1 wrote is gone, it reads the golden image again.
	s, err := c.OpenImage(ceph.Name{Pool: "rbd", Image: "node1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt(bytes.Repeat([]byte{0x11}, len(block)), 17<<20); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if code, out := runNetsan("image", "reset", "--yes", "-c", path, "node1"); code != 0 || !strings.Contains(out, "node1: reset rbd:rbd/node1 from base (rbd clone)") {
		t.Fatalf("image reset: exit %d\n%s", code, out)
	}
	if got := readRBD(t, c, "node1", 17<<20, len(block)); !bytes.Equal(got, block) {
		t.Errorf("node1 after reset: %q…, want the golden image's", got[:20])
	}
	if got, want := list(), "node1 root base rbd:rbd/node1 96.0MiB 0B "+parent; !strings.Contains(got, want) {
		t.Errorf("image list after reset:\n%s\nwant %q", got, want)
	}
}

// TestCephServeISCSI: netsan built with Ceph serves a root that is a Ceph
// clone of a golden RBD image over iSCSI: libiscsi's tools see the target
// and its LUN, and QEMU's iSCSI driver reads the golden image's bytes from
// it; a data LUN created empty is written and read back; image reset
// --force with the host logged in gives it a fresh clone the target serves.
func TestCephServeISCSI(t *testing.T) {
	for _, tool := range []string{"qemu-img", "qemu-io", "iscsi-inq", "iscsi-ls"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	tc := cephtest.Start(t, cephtest.Options{})
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	block := bytes.Repeat([]byte("netsan golden image\n"), 200)
	writeDisk(t, raw, 32<<20, block, 1<<20, 17<<20)
	tc.MustRbd(t, "import", "--no-progress", raw, "rbd/base")

	httpPort, iscsiPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "tcp")
	path := filepath.Join(dir, "netsan.toml")
	const base = "iqn.2026-11.example.test"
	writeFile(t, path, cephInventory(dir, tc.Conf, fmt.Sprintf(`[http]
listen = "127.0.0.1:%d"
[iscsi]
listen = ["127.0.0.1:%d"]
base_iqn = %q
[[target]]
name = "data"
luns = [ { lun = 0, rbd = "db", size = "16MiB" }, { lun = 1, rbd = "base", read_only = true } ]
`, httpPort, iscsiPort, base)+baseImage+nodeHost(1, `{ rbd = "node1", from = "base", size = "48MiB" }`)))
	log := netsantest.NewLog(t, "netsan")
	netsantest.Start(t, exec.Command(netsantest.Binary(t), "serve", "-c", path, "--log-format", "json"), log)

	const iqn = base + ":node1"
	url := func(target string, lun int) string {
		return fmt.Sprintf("iscsi://127.0.0.1:%d/%s/%d", iscsiPort, target, lun)
	}
	netsantest.WaitFor(t, "iSCSI up", 60*time.Second, func() bool { return exec.Command("iscsi-inq", "-i", iqn, url(iqn, 0)).Run() == nil })
	out, err := exec.Command("iscsi-inq", "-i", iqn, url(iqn, 0)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "DIRECT_ACCESS") {
		t.Errorf("iscsi-inq: %v\n%s", err, out)
	}
	out, err = exec.Command("iscsi-ls", "-s", "-i", iqn, fmt.Sprintf("iscsi://127.0.0.1:%d", iscsiPort)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Target:"+iqn+" ") || !strings.Contains(string(out), "Lun:0") {
		t.Errorf("iscsi-ls:\n%s%v\nwant %s with its LUN 0", out, err, iqn)
	}

	// The root reads as the golden image, grown with zeros.
	readRoot := func() []byte {
		t.Helper()
		back := filepath.Join(dir, "back.raw")
		if out, err := exec.Command("qemu-img", "convert", "--image-opts", "-O", "raw",
			fmt.Sprintf("driver=iscsi,transport=tcp,portal=127.0.0.1:%d,target=%s,lun=0,initiator-name=%s", iscsiPort, iqn, iqn), back).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert from %s: %v\n%s", url(iqn, 0), err, out)
		}
		b, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	golden, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := append(golden, make([]byte, 16<<20)...)
	if got := readRoot(); !bytes.Equal(got, want) {
		t.Fatalf("root read over iSCSI (%d bytes) is not the golden image's %d bytes and 16 MiB of zeros", len(got), len(golden))
	}
	if out := tc.MustRbd(t, "info", "rbd/node1"); !strings.Contains(out, "parent: rbd/base@"+ceph.GoldenSnap) {
		t.Errorf("rbd info rbd/node1:\n%s", out)
	}

	// The data LUN, created empty, takes writes; the golden image served
	// read-only refuses them.
	data := base + ":data"
	opts := func(target string, lun int) string {
		return fmt.Sprintf("driver=iscsi,transport=tcp,portal=127.0.0.1:%d,target=%s,lun=%d,initiator-name=%s", iscsiPort, target, lun, iqn)
	}
	qio := func(target string, lun int, cmd string) (string, error) {
		out, err := exec.Command("qemu-io", "--image-opts", opts(target, lun), "-c", cmd).CombinedOutput()
		return string(out), err
	}
	if out, err := qio(data, 0, "write -P 0x77 1M 64k"); err != nil || !strings.Contains(out, "wrote 65536/65536") {
		t.Errorf("write to the data LUN: %v\n%s", err, out)
	}
	if out, err := qio(data, 0, "read -P 0x77 1M 64k"); err != nil || strings.Contains(out, "Pattern verification failed") {
		t.Errorf("read back from the data LUN: %v\n%s", err, out)
	}
	if out, err := qio(data, 1, "write -P 0x66 1M 4k"); err == nil && strings.Contains(out, "wrote 4096/4096") {
		t.Errorf("a write to the golden image (read-only LUN) succeeded:\n%s", out)
	}

	// /metrics tells the RBD images' sizes as it does files'.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`netsan_image_size_bytes{host="node1",image="base",kind="root"} 5.0331648e+07`,
		`netsan_image_size_bytes{host="",image="base",kind="golden"} 3.3554432e+07`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A live session dirties the root; reset is refused, then --force logs
	// it out and the target serves the fresh clone.
	liveWrite(t, nil, opts(iqn, 0), "write -P 0x11 17M 64k")
	if code, out := runNetsan("image", "reset", "--yes", "-c", path, "node1"); code == 0 || !strings.Contains(out, "live session") {
		t.Fatalf("reset with a live session: exit %d\n%s", code, out)
	}
	if code, out := runNetsan("image", "reset", "--yes", "-c", path, "--force", "node1"); code != 0 || !strings.Contains(out, "node1: reset rbd:rbd/node1 from base (rbd clone)") {
		t.Fatalf("reset --force: exit %d\n%s", code, out)
	}
	if got := readRoot(); !bytes.Equal(got, want) {
		t.Errorf("root read over iSCSI after reset is not the golden image")
	}
	if out := tc.MustRbd(t, "ls", "rbd"); strings.Contains(out, "replaced") || !strings.Contains(out, "node1") {
		t.Errorf("rbd ls rbd after reset:\n%s\nwant node1, and the old root removed", out)
	}
}
