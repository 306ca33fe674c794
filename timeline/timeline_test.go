package timeline

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

const (
	mac = "52:54:00:00:00:01"
	iqn = "iqn.2026-11.example.test:node1"
)

// at records e at t0+sec seconds, as the services would have.
func at(r *Recorder, key string, sec int, step Step, detail string) {
	t := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second)
	r.record(key, Event{Step: step, At: t, Detail: detail})
}

func steps(b *Boot) string {
	if b == nil {
		return "<nil>"
	}
	s := ""
	for _, e := range b.Events {
		s += fmt.Sprintf("%d:%s×%d ", e.At.Second()+60*e.At.Minute(), e.Step, e.Count)
	}
	return s
}

// TestLastBoot: a PXE ROM's boot through iPXE to a login is one boot; the
// next discover after the login starts another; so does a discover after a
// quiet time, login or not; repeats in a row are counted, not listed.
func TestLastBoot(t *testing.T) {
	r := New(0, 0)
	if b := LastBoot(r.Events(mac, iqn)); b != nil {
		t.Fatalf("boot of a machine never seen: %+v", b)
	}
	// First boot: ROM, loader, iPXE, script, login.
	at(r, mac, 0, Discover, "pxe")
	at(r, mac, 1, Ack, "198.18.0.11")
	at(r, mac, 2, Loader, "tftp undionly.kpxe")
	at(r, mac, 4, Discover, "ipxe")
	at(r, mac, 4, Ack, "198.18.0.11")
	at(r, mac, 5, Script, "http boot/52-54-00-00-00-01.ipxe")
	at(r, iqn, 6, Login, iqn)
	b := LastBoot(r.Events(mac, iqn))
	if got, want := steps(b), "0:dhcp_discover×1 1:dhcp_ack×1 2:loader×1 4:dhcp_discover×1 4:dhcp_ack×1 5:script×1 6:iscsi_login×1 "; got != want {
		t.Fatalf("first boot:\n got %s\nwant %s", got, want)
	}
	if b.At(Discover).Second() != 0 || b.At(Ack).Second() != 1 || b.At(Login).Second() != 6 || !b.At(File).IsZero() {
		t.Errorf("first of each step: %v", b.Steps)
	}

	// A reboot a minute later: its discover follows the login.
	at(r, mac, 70, Discover, "ipxe")
	at(r, mac, 71, Ack, "198.18.0.11")
	at(r, mac, 72, Script, "")
	at(r, mac, 73, File, "vmlinuz")
	at(r, mac, 74, File, "initrd.img")
	b = LastBoot(r.Events(mac, iqn))
	if got, want := steps(b), "70:dhcp_discover×1 71:dhcp_ack×1 72:script×1 73:file×2 "; got != want {
		t.Fatalf("second boot:\n got %s\nwant %s", got, want)
	}
	if e := b.Events[3]; e.Detail != "vmlinuz" || e.Last.Second() != 14 {
		t.Errorf("repeated step keeps the first's detail and the last's time: %+v", e)
	}
	// The initramfs's own discover, no login yet: the same boot.
	at(r, mac, 80, Discover, "other")
	if got := LastBoot(r.Events(mac, iqn)).Start.Second(); got != 10 {
		t.Errorf("initramfs discover started a new boot at :%d", got)
	}
	// No login, but quiet for NewBootGap: a new boot.
	at(r, mac, 80+int(NewBootGap/time.Second), Discover, "pxe")
	if got, want := steps(LastBoot(r.Events(mac, iqn))), "200:dhcp_discover×1 "; got != want {
		t.Errorf("after a quiet time:\n got %s\nwant %s", got, want)
	}
}

// TestBounds: keys and events per key are bounded; the least recently
// active key and the oldest events go first.
func TestBounds(t *testing.T) {
	r := New(3, 4)
	for i := range 10 {
		at(r, "a", i, []Step{Discover, Ack}[i%2], fmt.Sprint(i))
	}
	es := r.Events("a")
	if len(es) != 4 || es[0].Detail != "6" || es[3].Detail != "9" {
		t.Fatalf("events kept: %+v", es)
	}
	at(r, "b", 20, Discover, "")
	at(r, "c", 21, Discover, "")
	at(r, "a", 22, Ack, "") // a is now the most recent
	at(r, "d", 23, Discover, "")
	if r.Events("b") != nil {
		t.Error("b, the least recently active, was kept")
	}
	for _, k := range []string{"a", "c", "d"} {
		if r.Events(k) == nil {
			t.Errorf("%s forgotten", k)
		}
	}
}

// TestNilAndConcurrent: a nil Recorder takes calls; a real one takes them
// from many goroutines (run with -race).
func TestNilAndConcurrent(t *testing.T) {
	var nilr *Recorder
	nilr.Record(mac, Discover, "")
	if nilr.Events(mac) != nil {
		t.Fatal("a nil recorder returned events")
	}
	r := New(0, 0)
	r.Record("", Discover, "") // no machine: not kept
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				r.Record(fmt.Sprintf("m%d", j%16), Step(fmt.Sprint(i)), "")
				r.Events("m1", "m2")
			}
		})
	}
	wg.Wait()
	if len(r.byID) != 16 {
		t.Errorf("%d keys, want 16", len(r.byID))
	}
}
