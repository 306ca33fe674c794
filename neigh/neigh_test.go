package neigh

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/netsantest"
)

// TestLookup: a machine in another namespace pings us, and the kernel's
// ARP entry gives its MAC; the same address with another MAC on a second
// interface is told apart by the local address, and an address nobody
// used has no entry.
func TestLookup(t *testing.T) {
	l := netsantest.NewLab(t, "neigh")
	srv := l.Server
	const cliMAC, otherMAC = "02:00:5e:10:00:02", "02:00:5e:10:00:99"
	cli := l.Cable("c", cliMAC, "198.18.0.2/24", "198.18.0.1/24")
	ip := func(args ...string) { l.IP(srv, args...) }
	// A second segment where 198.18.0.2 is somebody else (a static entry).
	ip("link", "add", "veth1", "type", "veth", "peer", "name", "veth1p")
	ip("addr", "add", "198.18.1.1/24", "dev", "veth1")
	ip("link", "set", "veth1", "up")
	ip("neigh", "add", "198.18.0.2", "lladdr", otherMAC, "dev", "veth1", "nud", "permanent")
	// A datagram from the client makes it ARP for us, which leaves its
	// entry in our table (a link not up yet drops the first; resend).
	netsantest.InNetns(t, cli, func() {
		c, err := net.Dial("udp4", "198.18.0.1:9")
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			c.Write([]byte("hello"))
			out, _ := exec.Command("ip", "-n", srv, "neigh", "show", "198.18.0.2", "dev", "veth0").Output()
			if strings.Contains(string(out), cliMAC) {
				return
			}
		}
		t.Error("the client's ARP entry never appeared")
	})

	addr := netip.MustParseAddr
	netsantest.InNetns(t, srv, func() {
		for _, c := range []struct {
			ip, local string
			mac       string // "" = an error wanted
			noEntry   bool
		}{
			{"198.18.0.2", "198.18.0.1", cliMAC, false},
			{"::ffff:198.18.0.2", "::ffff:198.18.0.1", cliMAC, false}, // as a dual-stack socket reports it
			{"198.18.1.2", "198.18.1.1", "", true},                    // nobody spoke from it
			{"198.18.0.2", "198.18.1.1", otherMAC, false},
			{"198.18.0.2", "127.0.0.1", "", true}, // loopback has no neighbours
			{"198.18.0.2", "", "", false},         // two MACs, no way to choose
		} {
			var local netip.Addr
			if c.local != "" {
				local = addr(c.local)
			}
			mac, err := Lookup(addr(c.ip), local)
			switch {
			case c.mac != "" && (err != nil || mac.String() != c.mac):
				t.Errorf("Lookup(%s, %s) = %s, %v; want %s", c.ip, c.local, mac, err, c.mac)
			case c.mac == "" && err == nil:
				t.Errorf("Lookup(%s, %s) = %s; want an error", c.ip, c.local, mac)
			case c.mac == "" && errors.Is(err, ErrNoEntry) != c.noEntry:
				t.Errorf("Lookup(%s, %s): %v; ErrNoEntry %v wanted", c.ip, c.local, err, c.noEntry)
			}
		}
		if _, err := Lookup(addr("198.18.0.2"), addr("198.18.7.7")); err == nil {
			t.Error("a local address no interface holds was accepted")
		}
	})
}
