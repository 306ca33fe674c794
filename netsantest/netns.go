package netsantest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TB is what the namespace builder needs of its user. A testing.TB is
// one; a program that builds a lab (bench/dhcp) supplies its own, whose
// Fatalf and Skipf run the cleanups and end it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
}

// NeedTools skips t when a program it drives is not installed.
func NeedTools(t TB, tools ...string) {
	t.Helper()
	if err := Installed(tools...); err != nil {
		t.Skipf("%v", err)
	}
}

// Installed says which of tools, the first, is not on PATH; nil when all are.
func Installed(tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed", tool)
		}
	}
	return nil
}

// IP runs ip(8) with args and fails t, with its output, when it fails.
func IP(t TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Netns makes network namespace name with its lo up, deleted when t ends.
func Netns(t TB, name string) string {
	t.Helper()
	IP(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	IP(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// Machine makes namespace ns, a machine whose eth0 has mac (and cidr when
// set): a veth whose other end, peer, goes into namespace peerNS, into its
// bridge when bridge is set. Both ends are up when it returns, eth0 with
// its carrier: packets sent before the kernel sees it are dropped.
func Machine(t TB, ns, mac, cidr, peerNS, peer, bridge string) string {
	t.Helper()
	Netns(t, ns)
	IP(t, "-n", ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", peer, "netns", peerNS)
	if bridge != "" {
		IP(t, "-n", peerNS, "link", "set", peer, "master", bridge)
	}
	IP(t, "-n", peerNS, "link", "set", peer, "up")
	if cidr != "" {
		IP(t, "-n", ns, "addr", "add", cidr, "dev", "eth0")
	}
	IP(t, "-n", ns, "link", "set", "eth0", "up")
	WaitFor(t, ns+" eth0 carrier", 20*time.Second, func() bool {
		out, _ := exec.Command("ip", "-n", ns, "link", "show", "eth0").Output()
		return strings.Contains(string(out), "LOWER_UP") && strings.Contains(string(out), "state UP")
	})
	return ns
}

// Lab is one test's network namespaces, named <prefix>-<id>-<role> with a
// random id so that runs side by side do not collide; each is deleted when
// the test ends.
type Lab struct {
	t      TB
	prefix string
	ID     string
	Server string // the server's namespace, <prefix>-<id>-s
	cables int
}

// NewLab skips t unless it runs as root with ip(8) and tools installed,
// and makes the server's namespace.
func NewLab(t TB, prefix string, tools ...string) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("network namespaces need root")
	}
	NeedTools(t, append([]string{"ip"}, tools...)...)
	b := make([]byte, 3)
	rand.Read(b)
	l := &Lab{t: t, prefix: prefix, ID: hex.EncodeToString(b)}
	l.Server = Netns(t, l.Name("s"))
	return l
}

// Name is the namespace of role: <prefix>-<id>-<role>.
func (l *Lab) Name(role string) string { return l.prefix + "-" + l.ID + "-" + role }

// IP runs ip(8) in namespace ns, or in the test's own when ns is "".
func (l *Lab) IP(ns string, args ...string) {
	l.t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	IP(l.t, args...)
}

// Bridge makes bridge br0 with address cidr in the server's namespace, for
// Attach to cable machines to.
func (l *Lab) Bridge(cidr string) {
	l.t.Helper()
	l.IP(l.Server, "link", "add", "br0", "type", "bridge")
	l.IP(l.Server, "addr", "add", cidr, "dev", "br0")
	l.IP(l.Server, "link", "set", "br0", "up")
}

// Attach makes namespace Name(role), a machine whose eth0 has mac (and
// cidr when set), cabled to br0.
func (l *Lab) Attach(role, mac, cidr string) string {
	l.t.Helper()
	l.cables++
	return Machine(l.t, l.Name(role), mac, cidr, l.Server, l.CableEnd(l.cables), "br0")
}

// CableEnd is the server's end (a port of br0) of the n-th machine Attach
// cabled, counting from 1: to put it on a bridge made again.
func (l *Lab) CableEnd(n int) string { return fmt.Sprintf("v%s%d", l.ID, n) } // ≤ 15 bytes

// Cable makes namespace Name(role), a machine whose eth0 has mac (and cidr
// when set), cabled straight to the server's veth0, which gets serverCIDR.
func (l *Lab) Cable(role, mac, cidr, serverCIDR string) string {
	l.t.Helper()
	ns := Machine(l.t, l.Name(role), mac, cidr, l.Server, "veth0", "")
	l.IP(l.Server, "addr", "add", serverCIDR, "dev", "veth0")
	return ns
}

// InNetns runs f on a thread inside namespace ns. Sockets f opens stay in
// ns whichever thread uses them later. The thread is put back in its own
// namespace and handed back to the runtime, not ended: a child process
// started earlier from that thread with Pdeathsig (cephtest's daemons,
// lab's netsan) would be killed when it ends, as the kernel sends that
// signal when the parent thread exits, not the process. Only a thread
// that cannot go back leaves with its goroutine.
func InNetns(t TB, ns string, f func()) {
	t.Helper()
	if err := Enter(ns, f); err != nil {
		t.Fatalf("%v", err)
	}
}

// Enter is InNetns for a goroutine that is not the test's: it returns the
// error instead of failing a test.
func Enter(ns string, f func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer home.Close()
		fd, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		f()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	return nil
}

// UDPRcvbufErrors is the number of UDP datagrams namespace ns has dropped
// at a full socket receive buffer (RcvbufErrors in its /proc/net/snmp).
func UDPRcvbufErrors(ns string) (int64, error) {
	var snmp []byte
	var err error
	if nerr := Enter(ns, func() { snmp, err = os.ReadFile("/proc/thread-self/net/snmp") }); nerr != nil {
		return 0, nerr
	}
	if err != nil {
		return 0, err
	}
	var names []string
	for line := range strings.Lines(string(snmp)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

// Forward lets a program in the test's own namespace (a browser, say)
// reach addr in namespace ns: it returns a 127.0.0.1 address whose
// connections it carries to addr, each dialled from inside ns. It stops
// when t ends.
func Forward(t TB, ns, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("forward to %s in %s: %v", addr, ns, err)
	}
	var wg sync.WaitGroup
	conns := map[net.Conn]bool{}
	var mu sync.Mutex
	track := func(c net.Conn, open bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if open && conns == nil {
			return false // stopping
		}
		if open {
			conns[c] = true
		} else {
			delete(conns, c)
		}
		return true
	}
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			var (
				out     net.Conn
				dialErr error
			)
			err = Enter(ns, func() { out, dialErr = net.DialTimeout("tcp", addr, 10*time.Second) })
			if err != nil || dialErr != nil || !track(in, true) || !track(out, true) {
				in.Close()
				if out != nil {
					out.Close()
				}
				continue
			}
			wg.Go(func() {
				var both sync.WaitGroup
				for _, p := range [][2]net.Conn{{out, in}, {in, out}} {
					both.Go(func() {
						io.Copy(p[0], p[1])
						// The other side hears EOF; both connections
						// close once both directions have ended.
						if cw, ok := p[0].(interface{ CloseWrite() error }); ok {
							cw.CloseWrite()
						}
					})
				}
				both.Wait()
				for _, c := range []net.Conn{in, out} {
					c.Close()
					track(c, false)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
