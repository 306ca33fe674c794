package netsantest

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// IP runs ip(8) with args and fails t, with its output, when it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Netns makes network namespace name with its lo up, deleted when t ends.
func Netns(t testing.TB, name string) string {
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
func Machine(t testing.TB, ns, mac, cidr, peerNS, peer, bridge string) string {
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
