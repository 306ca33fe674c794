//go:build ceph

package ceph

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLockLease: two clients contend for one lock with a lease. The
// holder renews it and is seen by the other with its cookie and address;
// a lease not renewed lapses and the other takes it, after which the first
// cannot renew; a released lock is free at once.
func TestLockLease(t *testing.T) {
	tc, a := connect(t)
	b := client(t, tc)
	const oid, name, lease = "netsan.test", "leader", 2 * time.Second
	addrA, err := a.ClientAddr()
	if err != nil {
		t.Fatal(err)
	}
	addrB, _ := b.ClientAddr()
	if addrA == "" || addrA == addrB {
		t.Fatalf("client addresses %q and %q: want two different ones", addrA, addrB)
	}

	lock := func(c *Cluster, cookie string, renew bool) bool {
		t.Helper()
		ok, err := c.LockExclusive(oid, name, cookie, lease, renew)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	holder := func(want string) {
		t.Helper()
		cookie, addr, err := b.LockHolder(oid, name)
		if err != nil {
			t.Fatal(err)
		}
		if cookie != want {
			t.Fatalf("holder %q, want %q", cookie, want)
		}
		if want == "a" && addr != addrA {
			t.Fatalf("holder's address %q, want a's %q", addr, addrA)
		}
	}
	holder("")
	if !lock(a, "a", false) {
		t.Fatal("a did not get a free lock")
	}
	if !lock(a, "a", false) {
		t.Fatal("a could not take again a lock it holds")
	}
	if lock(b, "b", false) {
		t.Fatal("b got a lock a holds")
	}
	if lock(b, "b", true) {
		t.Fatal("b renewed a lock it does not hold")
	}
	holder("a")
	// Renewed every half lease, a's lock outlives three leases.
	for range 6 {
		time.Sleep(lease / 2)
		if !lock(a, "a", true) {
			t.Fatal("a could not renew its lock")
		}
		if lock(b, "b", false) {
			t.Fatal("b got a renewed lock")
		}
	}
	// Not renewed, it lapses.
	time.Sleep(lease + 500*time.Millisecond)
	holder("")
	if !lock(b, "b", false) {
		t.Fatal("b did not get a lapsed lock")
	}
	if lock(a, "a", true) {
		t.Fatal("a renewed a lock that lapsed and b took")
	}
	if err := b.Unlock(oid, name, "b"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(oid, name, "b"); err != nil {
		t.Fatalf("unlocking a lock not held: %v", err)
	}
	if !lock(a, "a", false) {
		t.Fatal("a did not get a released lock at once")
	}
}

// TestBlocklist: a client fenced by another fails every operation with
// EBLOCKLISTED (ESHUTDOWN), its address is in the cluster's blocklist,
// and the fencing client goes on working. The omap the gateways keep
// their records in reads back what was set.
func TestBlocklist(t *testing.T) {
	tc, a := connect(t)
	b := client(t, tc)
	const oid = "netsan.test"
	if err := b.SetOmap(oid, map[string][]byte{"b": []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetOmap(oid, map[string][]byte{"a": []byte("two")}); err != nil {
		t.Fatal(err)
	}
	m, err := a.Omap(oid)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || string(m["a"]) != "two" || string(m["b"]) != "one" {
		t.Fatalf("omap %q, want a=two b=one", m)
	}
	if m, err := a.Omap("netsan.none"); err != nil || len(m) != 0 {
		t.Fatalf("omap of a missing object: %q, %v; want none", m, err)
	}

	addrB, err := b.ClientAddr()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Blocklist(addrB); err != nil {
		t.Fatal(err)
	}
	err = b.SetOmap(oid, map[string][]byte{"b": []byte("fenced")})
	if !errors.Is(err, syscall.ESHUTDOWN) {
		t.Fatalf("a fenced client's write: %v, want EBLOCKLISTED (ESHUTDOWN)", err)
	}
	if _, err := b.LockExclusive(oid, "leader", "b", time.Second, false); !errors.Is(err, syscall.ESHUTDOWN) {
		t.Fatalf("a fenced client's lock: %v, want EBLOCKLISTED (ESHUTDOWN)", err)
	}
	if err := a.SetOmap(oid, map[string][]byte{"a": []byte("three")}); err != nil {
		t.Fatalf("the fencing client's write: %v", err)
	}
	if m, _ := a.Omap(oid); string(m["b"]) != "one" {
		t.Fatalf("omap b=%q after the fence, want one", m["b"])
	}
	out, err := tc.Ceph("osd", "blocklist", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, addrB) {
		t.Fatalf("osd blocklist ls does not list %s:\n%s", addrB, out)
	}
}
