package dhcpd

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestAdvertisementBytes: netsan's RA is RFC 4861 §4.2's message with
// nothing set but its source link-layer address: hop limit unspecified,
// M and O clear, router lifetime, reachable and retransmit time 0.
func TestAdvertisementBytes(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	b, err := advertisement(mac)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{134, 0, 0, 0, // type, code, checksum (the kernel's)
		0, 0, 0, 0, // hop limit, M/O flags, router lifetime
		0, 0, 0, 0, 0, 0, 0, 0, // reachable, retransmit
		1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56}
	if !bytes.Equal(b, want) {
		t.Errorf("advertisement\n got % x\nwant % x", b, want)
	}
	a, ok := parseAdvertisement(b[4:])
	if !ok || a.configures() {
		t.Errorf("netsan's own advertisement reads as configuring hosts: %+v %v", a, ok)
	}
}

// TestParseAdvertisement: what marks a real router (router lifetime, a
// prefix with a valid lifetime, M or O) and how long it keeps netsan quiet.
func TestParseAdvertisement(t *testing.T) {
	ra := func(flags byte, lifetime uint16, opts ...[]byte) []byte {
		b := []byte{64, flags, byte(lifetime >> 8), byte(lifetime), 0, 0, 0, 0, 0, 0, 0, 0}
		for _, o := range opts {
			b = append(b, o...)
		}
		return b
	}
	prefix := func(valid uint32) []byte {
		o := make([]byte, 32)
		o[0], o[1], o[2], o[3] = optPrefix, 4, 64, 0xc0
		o[4], o[5], o[6], o[7] = byte(valid>>24), byte(valid>>16), byte(valid>>8), byte(valid)
		copy(o[16:], netip.MustParseAddr("2001:2:0:1::").AsSlice())
		return o
	}
	for _, tc := range []struct {
		name       string
		data       []byte
		ok, config bool
		hold       time.Duration
	}{
		{"lifetime 0, nothing", ra(0, 0), true, false, 0},
		{"default router", ra(0, 1800), true, true, 1800 * time.Second},
		{"prefix only", ra(0, 0, prefix(600)), true, true, 600 * time.Second},
		{"prefix forever", ra(0, 0, prefix(0xffffffff)), true, true, maxRouterHold},
		{"router outlives prefix", ra(0, 1800, prefix(600)), true, true, 1800 * time.Second},
		{"withdrawn prefix", ra(0, 0, prefix(0)), true, false, 0},
		{"managed", ra(0x80, 0), true, true, maxRouterHold},
		{"other", ra(0x40, 0), true, true, maxRouterHold},
		{"short", []byte{64, 0, 0}, false, false, 0},
		{"zero-length option", ra(0, 1800, []byte{3, 0, 0, 0, 0, 0, 0, 0}), false, false, 0},
		{"option past the end", ra(0, 1800, []byte{1, 2, 0, 0, 0, 0, 0, 0}), false, false, 0},
	} {
		a, ok := parseAdvertisement(tc.data)
		if ok != tc.ok || ok && a.configures() != tc.config || tc.config && a.hold() != tc.hold {
			t.Errorf("%s: ok %v configures %v hold %v, want %v %v %v", tc.name, ok, a.configures(), a.hold(), tc.ok, tc.config, tc.hold)
		}
	}
	a, _ := parseAdvertisement(ra(0, 0, prefix(600)))
	if len(a.prefixes) != 1 || a.prefixes[0] != netip.MustParsePrefix("2001:2:0:1::/64") {
		t.Errorf("prefixes %v", a.prefixes)
	}
}

// TestPacer: multicast answers are MIN_DELAY_BETWEEN_RAS apart, and a
// solicitation arriving while one is due is answered by it.
func TestPacer(t *testing.T) {
	var p pacer
	t0 := time.Unix(1000, 0)
	if d, ok := p.schedule(t0, 5*time.Millisecond); !ok || d != 5*time.Millisecond {
		t.Fatalf("first: %v %v", d, ok)
	}
	if _, ok := p.schedule(t0.Add(time.Millisecond), time.Millisecond); ok {
		t.Fatal("a second answer scheduled while one is due")
	}
	p.done(t0.Add(5*time.Millisecond), true)
	if d, ok := p.schedule(t0.Add(time.Second), 7*time.Millisecond); !ok || d != 2*time.Second+12*time.Millisecond {
		t.Fatalf("1 s after a multicast: %v %v, want 2.012s", d, ok)
	}
	p.done(t0.Add(3*time.Second), false) // not sent: a router spoke up
	if d, ok := p.schedule(t0.Add(4*time.Second), time.Millisecond); !ok || d != time.Millisecond {
		t.Fatalf("3 s after the last multicast: %v %v", d, ok)
	}
}

// TestRouterWatch: a router's advertisement silences netsan for its hold,
// logged once; a refresh extends it; the router withdrawing ends it; the
// end of a silence that ran out is told once.
func TestRouterWatch(t *testing.T) {
	var w routerWatch
	r1, r2 := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::2")
	t0 := time.Unix(1000, 0)
	if _, ok := w.present(t0); ok {
		t.Fatal("silent before any router")
	}
	if !w.heard(r1, t0, t0.Add(30*time.Second)) {
		t.Error("the first advertisement did not start a silence")
	}
	if w.heard(r1, t0.Add(10*time.Second), t0.Add(40*time.Second)) {
		t.Error("a refresh started a second silence")
	}
	if w.heard(r2, t0.Add(11*time.Second), t0.Add(20*time.Second)) {
		t.Error("a second router started a second silence")
	}
	if rt, ok := w.present(t0.Add(39 * time.Second)); !ok || rt != r1 {
		t.Errorf("at 39 s: %v %v, want silent for r1 until 40 s", rt, ok)
	}
	if w.ended(t0.Add(39 * time.Second)) {
		t.Error("ended while silent")
	}
	if _, ok := w.present(t0.Add(40 * time.Second)); ok {
		t.Error("still silent after the router lifetime")
	}
	if !w.ended(t0.Add(41*time.Second)) || w.ended(t0.Add(42*time.Second)) {
		t.Error("the end of the silence not told exactly once")
	}
	w.heard(r1, t0.Add(50*time.Second), t0.Add(80*time.Second))
	if w.leave(r2, t0.Add(51*time.Second)) {
		t.Error("another router's withdrawal ended the silence")
	}
	if !w.leave(r1, t0.Add(52*time.Second)) {
		t.Error("the router's withdrawal did not end the silence")
	}
	if _, ok := w.present(t0.Add(53 * time.Second)); ok || w.ended(t0.Add(53*time.Second)) {
		t.Error("silent, or an end to tell, after the withdrawal")
	}
}
