//go:build ceph

package ceph_test

// dhcpd on leases kept in RADOS, with real peers: the server is this test
// binary re-executed (TestMain) in a network namespace that also holds the
// single-node cluster, so that a test can kill -9 it; the clients are
// busybox udhcpc in namespaces of their own on the server's bridge.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
)

// dhcpChildEnv holds the inventory of the server a child process runs
// instead of the tests; confEnv the ceph.conf it connects with.
const dhcpChildEnv, confEnv = "NETSAN_CEPH_TEST_DHCPD", "NETSAN_CEPH_TEST_CONF"

// leaseObject is the records the child keeps its leases in.
const leaseObject = "leases"

func TestMain(m *testing.M) {
	if inv := os.Getenv(dhcpChildEnv); inv != "" {
		if err := serveDHCP(inv, os.Getenv(confEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveDHCP is the child: a dhcpd server whose leases are records in the
// cluster's pool, serving until SIGTERM; READY once it listens.
func serveDHCP(path, conf string) error {
	inv, ps, err := inventory.Load(path)
	if err != nil {
		return fmt.Errorf("%v %w", ps, err)
	}
	c, err := ceph.Connect(ceph.Config{Conf: conf, Pool: "rbd"}, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	recs, err := c.Records(leaseObject)
	if err != nil {
		return err
	}
	log, _ := zap.NewProduction()
	s, err := dhcpd.New(inv, log, dhcpd.WithLeaseStore(dhcpd.LeaseRecords(recs)))
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		return err
	}
	fmt.Println("READY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return s.Serve(ctx)
}

// dhcpLab is a bridge at 198.18.0.1/24 in the server's namespace, with the
// cluster there on 127.0.0.1.
type dhcpLab struct {
	*netsantest.Lab
	t    *testing.T
	dir  string
	ceph *cephtest.Cluster
	n    int // servers started
}

func newDHCPLab(t *testing.T) *dhcpLab {
	l := &dhcpLab{Lab: netsantest.NewLab(t, "cephdhcp", "busybox"), t: t, dir: t.TempDir()}
	l.Bridge("198.18.0.1/24")
	l.ceph = cephtest.Start(t, cephtest.Options{NetNS: l.Server})
	return l
}

// startServer starts a server with a data_dir of its own, so that what it
// knows of the leases comes from the cluster alone.
func (l *dhcpLab) startServer() *netsantest.Process {
	l.t.Helper()
	l.n++
	inv := filepath.Join(l.dir, fmt.Sprintf("netsan-%d.toml", l.n))
	if err := os.WriteFile(inv, []byte(fmt.Sprintf(`
[server]
address  = "198.18.0.1"
data_dir = %q

[dhcp]
interface = "br0"
subnet    = "198.18.0.0/24"
range     = ["198.18.0.100", "198.18.0.110"]
`, filepath.Join(l.dir, fmt.Sprintf("data-%d", l.n)))), 0o644); err != nil {
		l.t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.Server, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), dhcpChildEnv+"="+inv, confEnv+"="+l.ceph.Conf)
	log := netsantest.NewLog(l.t, fmt.Sprintf("server %d", l.n))
	p := netsantest.Start(l.t, cmd, log)
	netsantest.WaitFor(l.t, fmt.Sprintf("server %d READY", l.n), 20*time.Second, func() bool { return strings.Contains(log.String(), "READY") })
	return p
}

// udhcpcScript writes a udhcpc script that configures the address it is
// given (a renewal is sent from it) and appends "<event> <ip>" to events.
func (l *dhcpLab) udhcpcScript(name string) (script, events string) {
	script, events = filepath.Join(l.dir, name+".sh"), filepath.Join(l.dir, name+".events")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
case $1 in bound|renew) ip addr replace $ip/24 dev $interface ;; esac
echo "$1 $ip" >> `+events+`
`), 0o755); err != nil {
		l.t.Fatal(err)
	}
	return script, events
}

func readEvents(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// boundIP is the address of the first "bound" event, "" before one.
func boundIP(events string) string {
	for _, line := range strings.Split(events, "\n") {
		if ip, ok := strings.CutPrefix(line, "bound "); ok {
			return ip
		}
	}
	return ""
}

// TestLeasesInRADOS: a pool lease that dhcpd ACKs is in RADOS before the
// ACK leaves, and a new server on the same pool continues it.
//
// While the only OSD is stopped (SIGSTOP), a client gets no ACK: the
// server waits for the write. Once it resumes, the client is bound, the
// server is killed with SIGKILL at once, and a client of its own (rados)
// finds the lease under its address in the object netsan.leases. A new
// server with an empty data_dir then offers another client, which asks for
// that address, another one, and ACKs the first client's renewal (udhcpc
// SIGUSR1: a unicast REQUEST from the bound address) with the same address.
func TestLeasesInRADOS(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace test skipped in -short mode")
	}
	l := newDHCPLab(t)
	srv := l.startServer()

	const macA = "52:54:00:00:aa:01"
	ns := l.Attach("a", macA, "")
	script, events := l.udhcpcScript("a")
	osd := l.ceph.OSD.Process
	if err := l.ceph.FreezeOSD(); err != nil {
		t.Fatal(err)
	}
	client := netsantest.Start(t, exec.Command("ip", "netns", "exec", ns, "busybox", "udhcpc", "-f", "-i", "eth0", "-T", "1", "-A", "1", "-s", script),
		netsantest.NewLog(t, "udhcpc a"))
	time.Sleep(5 * time.Second)
	bound := readEvents(events)
	if err := osd.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(bound, "bound") {
		t.Fatalf("the client was bound while the OSD could not store its lease:\n%s", bound)
	}
	resumed := time.Now()
	netsantest.WaitFor(t, "udhcpc a bound", 60*time.Second, func() bool { return boundIP(readEvents(events)) != "" })
	t.Logf("bound %s after the OSD resumed", time.Since(resumed).Round(time.Millisecond))
	srv.Kill(t)
	ip := boundIP(readEvents(events))

	got := filepath.Join(l.dir, "lease.json")
	if out, err := l.ceph.Rados("getomapval", ceph.ObjectPrefix+leaseObject, ip, got); err != nil {
		t.Fatalf("lease of %s in RADOS after kill -9 of the server: %v\n%s", ip, err, out)
	}
	var lease dhcpd.Lease
	if b, err := os.ReadFile(got); err != nil || json.Unmarshal(b, &lease) != nil {
		t.Fatalf("lease record %q: %v", b, err)
	}
	if lease.IP.String() != ip || lease.MAC != macA || lease.State != dhcpd.StateBound || !lease.Expires.After(time.Now()) {
		t.Fatalf("lease record in RADOS: %+v, want %s bound to %s", lease, ip, macA)
	}

	l.startServer()
	other, otherEvents := l.udhcpcScript("b")
	nsB := l.Attach("b", "52:54:00:00:aa:02", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", nsB, "busybox", "udhcpc", "-f", "-q", "-n", "-t", "4", "-T", "2",
		"-i", "eth0", "-s", other, "-r", ip).CombinedOutput(); err != nil {
		t.Fatalf("udhcpc b: %v\n%s", err, out)
	}
	if got := boundIP(readEvents(otherEvents)); got == "" || got == ip {
		t.Errorf("the new server gave the other client %q; %s is %s's", got, ip, macA)
	}

	before := len(readEvents(events))
	if err := client.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// A NAK would show as deconfig, then a new bound.
	netsantest.WaitFor(t, "udhcpc a's answer from the new server", 30*time.Second, func() bool {
		return strings.Contains(readEvents(events)[before:], "\n")
	})
	t.Logf("udhcpc a's events:\n%s", readEvents(events))
	if ev := readEvents(events)[before:]; !strings.HasPrefix(ev, "renew "+ip+"\n") {
		t.Errorf("udhcpc a's events after SIGUSR1:\n%s\nwant renew %s", ev, ip)
	}
}
