package lab

import (
	"context"
	"testing"
	"time"
)

// TestBridgeIPv6: the lab's bridge has IPv6 on, as a LAN does, for netsan
// and the reference alike, and its link-local address skips duplicate
// address detection: a router advertisement can leave it as soon as a
// guest's tap brings its carrier up.
func TestBridgeIPv6(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace test skipped in -short mode")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, t.TempDir(), "labv6")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := l.Run(ctx, "sysctl", "-n", "net.ipv6.conf."+Bridge+".disable_ipv6", "net.ipv6.conf."+Bridge+".accept_dad")
	if err != nil {
		t.Fatal(err)
	}
	if out != "0\n0\n" {
		t.Errorf("%s disable_ipv6, accept_dad = %q, want 0 and 0", Bridge, out)
	}
}
