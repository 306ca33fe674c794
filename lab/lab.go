// Package lab builds throwaway boot labs for end-to-end tests, the demo and
// the boot benchmark: a network namespace holding a bridge on 198.18.0.1/24
// (and IPv6 link-local, as any LAN has), tap devices for QEMU guests, and
// the servers under test (netsan, or the dnsmasq + tgtd reference) running
// inside it. Nothing it starts can reach past the namespace.
//
// A Lab needs root, iproute2, procps (sysctl) and, for guests,
// qemu-system-x86.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses inside every lab. Only 198.18.0.0/15 is ever used.
const (
	ServerIP = "198.18.0.1"
	Prefix   = "198.18.0.1/24"
	Subnet   = "198.18.0.0/24"
	Bridge   = "br0"
	// A wide lab's bridge and subnet (NewWide): room for a thousand hosts
	// and more.
	WidePrefix = "198.18.0.1/15"
	WideSubnet = "198.18.0.0/15"
)

// Lab is one network namespace with a bridge and the processes started in it.
type Lab struct {
	// Name is the namespace's name: unique per lab.
	Name string
	// Dir receives logs, serial consoles and firmware variable stores.
	Dir string

	mu      sync.Mutex
	procs   []*Proc
	taps    int
	cleanup []func()
}

// onClose registers f to run on Close after every process has stopped.
func (l *Lab) onClose(f func()) {
	l.mu.Lock()
	l.cleanup = append(l.cleanup, f)
	l.mu.Unlock()
}

// Available reports why labs cannot be made on this machine, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("lab needs root (network namespaces, tap devices)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("iproute2 (ip) not installed")
	}
	if _, err := exec.LookPath("sysctl"); err != nil {
		return errors.New("procps (sysctl) not installed")
	}
	return nil
}

// New makes a namespace named prefix-<random> with the bridge up on Prefix.
// Close removes it and everything started in it.
func New(ctx context.Context, dir, prefix string) (*Lab, error) {
	return newLab(ctx, dir, prefix, Prefix)
}

// NewWide is New with the bridge on WidePrefix, for a boot storm's
// thousand simulated hosts; its inventories set Subnet to WideSubnet.
func NewWide(ctx context.Context, dir, prefix string) (*Lab, error) {
	return newLab(ctx, dir, prefix, WidePrefix)
}

func newLab(ctx context.Context, dir, prefix, cidr string) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	l := &Lab{Name: prefix + "-" + hex.EncodeToString(suffix), Dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := run(ctx, "ip", "netns", "add", l.Name); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"addr", "add", cidr, "dev", Bridge},
		{"link", "set", Bridge, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", append([]string{"-n", l.Name}, s...)...); err != nil {
			l.Close()
			return nil, err
		}
	}
	// IPv6 on, as on a real LAN, for whichever server the lab runs: iPXE
	// solicits a router there, and an advertisement can leave the bridge
	// only from its link-local address, usable at once without duplicate
	// address detection (no other machine on the bridge can hold it).
	if _, err := l.Run(ctx, "sysctl", "-q", "-w", "net.ipv6.conf."+Bridge+".disable_ipv6=0",
		"net.ipv6.conf."+Bridge+".accept_dad=0"); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Tap adds a tap device attached to the bridge and returns its name (unique
// inside this namespace only, which is all QEMU needs).
func (l *Lab) Tap(ctx context.Context) (string, error) {
	l.mu.Lock()
	l.taps++
	name := "tap" + strconv.Itoa(l.taps)
	l.mu.Unlock()
	if err := run(ctx, "ip", "-n", l.Name, "tuntap", "add", "dev", name, "mode", "tap"); err != nil {
		return "", err
	}
	if err := run(ctx, "ip", "-n", l.Name, "link", "set", name, "master", Bridge, "up"); err != nil {
		return "", err
	}
	return name, nil
}

// Command returns argv run inside the namespace.
func (l *Lab) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return l.commandIn(ctx, l.Name, argv...)
}

// commandIn returns argv run inside namespace ns.
func (l *Lab) commandIn(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Run runs argv inside the namespace and returns its combined output.
func (l *Lab) Run(ctx context.Context, argv ...string) (string, error) {
	return RunIn(ctx, l.Name, argv...)
}

// RunIn runs argv inside namespace ns (a lab's, or a Client's) and returns
// its combined output.
func RunIn(ctx context.Context, ns string, argv ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Proc is a process the lab started and stops on Close.
type Proc struct {
	Name string
	// Log holds the process's stdout and stderr.
	Log string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// stop is the signal that asks it to exit; tgtd ignores SIGTERM.
	stop syscall.Signal
}

// Start runs argv inside the namespace with output to Dir/name.log. The lab
// owns it: Close stops it if it is still running.
func (l *Lab) Start(name string, argv ...string) (*Proc, error) {
	return l.StartIn(l.Name, name, argv...)
}

// StartIn is Start inside namespace ns (a Client's or a Gateway's); the log
// is appended to, so a process started again under the same name adds to it.
func (l *Lab) StartIn(ns, name string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a terminal's ^C reaches the lab's cleanup
	// first rather than every child at once; and killed if this process
	// dies without cleaning up (a test binary's timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{}), stop: syscall.SIGTERM}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Pid is the process id (ip netns exec execs argv, so it is argv's).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process: a test's kill -9 (then wait on Done),
// SIGSTOP or SIGTERM.
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", p.Name, sig, err)
	}
	return nil
}

// Stop asks the process to exit, waits up to grace, then kills it.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(p.stop)
	// A process a test froze (SIGSTOP) takes the signal once it runs.
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// Close stops every process (last started first) and deletes the namespace,
// which removes the bridge and taps with it.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs, cleanup := l.procs, l.cleanup
	l.procs, l.cleanup = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		_ = procs[i].Stop(10 * time.Second)
	}
	for _, f := range cleanup {
		f()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Anything still inside is ours (a daemon that forked); the namespace
	// cannot go while it lives.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", l.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return run(ctx, "ip", "netns", "del", l.Name)
}

// WaitTCP waits until something accepts TCP connections at addr inside the
// namespace, polling for at most timeout.
func (l *Lab) WaitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		return fmt.Errorf("wait %q: want host:port", addr)
	}
	deadline := time.Now().Add(timeout)
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.Command(c, "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port).Run()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listening on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Client makes a namespace of its own holding eth0 with the given MAC,
// cabled to the bridge by a veth pair, for DHCP and TFTP clients that must
// not share the server's stack. It returns the namespace's name; Close
// deletes it.
func (l *Lab) Client(ctx context.Context, mac string) (string, error) {
	return l.Attach(ctx, "", mac, "")
}

// Attach makes a machine as Client does, named <lab>-<role> (<lab>-c<n>
// when role is ""), its eth0 with the address cidr when that is set: a
// gateway, or the Ceph cluster the gateways share.
func (l *Lab) Attach(ctx context.Context, role, mac, cidr string) (string, error) {
	l.mu.Lock()
	l.taps++
	n := strconv.Itoa(l.taps)
	l.mu.Unlock()
	if role == "" {
		role = "c" + n
	}
	ns := l.Name + "-" + role
	if err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return "", err
	}
	l.onClose(func() { _ = run(context.Background(), "ip", "netns", "del", ns) })
	steps := [][]string{
		{"-n", l.Name, "link", "add", "veth" + n, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", l.Name, "link", "set", "veth" + n, "master", Bridge, "up"},
		{"-n", ns, "link", "set", "eth0", "address", mac},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	if cidr != "" {
		steps = append(steps, []string{"-n", ns, "addr", "add", cidr, "dev", "eth0"})
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return "", err
		}
	}
	return ns, nil
}
