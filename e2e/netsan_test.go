package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// served is a lab with netsan running in it.
type served struct {
	*lab.Lab
	inv lab.Inventory
	// roots maps host name to its root image's absolute path.
	roots map[string]string
	// netsan is the running netsan.
	netsan *lab.Proc
}

// serve starts netsan in a new lab for hosts (boot = "san" and "linux"
// hosts get a root cloned from the golden image) and targets.
func serve(t *testing.T, hosts []lab.NetsanHost, targets []lab.DataTarget, discovery *lab.CHAP) *served {
	t.Helper()
	return serveGolden(t, env.golden, hosts, targets, discovery)
}

// serveGolden is serve with golden as the golden image.
func serveGolden(t *testing.T, golden string, hosts []lab.NetsanHost, targets []lab.DataTarget, discovery *lab.CHAP) *served {
	t.Helper()
	return serveWith(t, golden, hosts, func(inv *lab.Inventory) {
		inv.Targets, inv.DiscoveryCHAP = targets, discovery
	})
}

// serveWith is serve with golden as the golden image, and the inventory
// completed by more before netsan starts.
func serveWith(t *testing.T, golden string, hosts []lab.NetsanHost, more func(*lab.Inventory)) *served {
	t.Helper()
	l := newLab(t)
	data := filepath.Join(l.Dir, "data")
	s := &served{Lab: l, roots: make(map[string]string), inv: lab.Inventory{
		DataDir: data,
		BaseIQN: baseIQN,
		Golden:  "golden/golden.img",
		Hosts:   hosts,
	}}
	more(&s.inv)
	if err := lab.Clone(golden, filepath.Join(data, s.inv.Golden)); err != nil {
		t.Fatal(err)
	}
	for i := range s.inv.Hosts {
		h := &s.inv.Hosts[i]
		if h.Boot != "" && h.Boot != "san" && h.Boot != "linux" {
			continue
		}
		h.Image = "roots/" + h.Name + ".img"
		// The clone is made here rather than left to netsan's `from`, so the
		// boot tests do not depend on it.
		s.roots[h.Name] = filepath.Join(data, h.Image)
		if err := lab.Clone(golden, s.roots[h.Name]); err != nil {
			t.Fatal(err)
		}
	}
	s.start(t, env.netsan)
	return s
}

// start runs bin as the lab's netsan on s.inv, and fails t at its end if
// netsan logged a panic.
func (s *served) start(t *testing.T, bin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := s.StartNetsan(ctx, bin, s.inv)
	if err != nil {
		t.Fatal(err)
	}
	s.netsan = p
	t.Cleanup(func() {
		// netsan recovers a panic in one connection and logs it; a boot
		// that needed that is not a clean boot.
		if b, _ := os.ReadFile(p.Log); bytes.Contains(b, []byte("panic")) {
			t.Errorf("netsan logged a panic (see netsan.log)")
		}
	})
}

func sanHost(t *testing.T, n int) lab.NetsanHost {
	return lab.NetsanHost{Host: host(t, n), Boot: "san"}
}

// bootMarker boots h with fw and returns its marker line, checked.
func (s *served) bootMarker(t *testing.T, ctx context.Context, h lab.Host, fw lab.Firmware) {
	t.Helper()
	s.bootMachine(t, ctx, h, machine(h, fw))
}

// bootMachine is bootMarker for a machine of h set up by the caller.
func (s *served) bootMachine(t *testing.T, ctx context.Context, h lab.Host, m lab.Machine) {
	t.Helper()
	fw := m.Firmware
	g, err := s.Boot(ctx, m)
	if err != nil {
		t.Error(err)
		return
	}
	defer g.Stop()
	line, err := g.WaitLine(ctx, lab.MarkerBoot)
	if err != nil {
		t.Error(err)
		return
	}
	t.Logf("%s after %v", line, g.Elapsed())
	checkMarker(t, line, h, fw.String())
	if err := g.Wait(ctx); err != nil {
		t.Error(err)
	}
}

// bootOwnRoot serves SAN host n alone and boots it with fw to the Linux
// marker; the write lands in its own root.
func bootOwnRoot(t *testing.T, n int, fw lab.Firmware) *served {
	needNetsan(t)
	h := sanHost(t, n)
	s := serve(t, []lab.NetsanHost{h}, nil, nil)
	ctx, cancel := testContext(t, bootTimeout)
	defer cancel()
	s.bootMarker(t, ctx, h.Host, fw)
	checkStamp(t, s.roots[h.Name], h.Name)
	return s
}

// Test 1: SeaBIOS + iPXE NIC ROM, no disk: DHCP → script → sanboot of its
// root LUN → the Linux marker; the write lands in its own root only.
func TestBIOSBoot(t *testing.T) {
	s := bootOwnRoot(t, 1, lab.BIOS)
	checkStamp(t, filepath.Join(s.inv.DataDir, s.inv.Golden), "")
}

// Test 3: OVMF's own PXE (no NIC option ROM) → ipxe.efi over TFTP → iPXE →
// script → sanboot of \EFI\BOOT\BOOTX64.EFI on the root LUN → marker.
func TestUEFIBoot(t *testing.T) { bootOwnRoot(t, 3, lab.UEFI) }

// Test 4: two guests at once, each from its own clone of the golden image.
// Each stamps its root's scratch sector after reading it: had they shared
// storage, the second would have read the first one's name (prev=...).
func TestTwoGuests(t *testing.T) {
	needNetsan(t)
	a, b := sanHost(t, 4), sanHost(t, 5)
	s := serve(t, []lab.NetsanHost{a, b}, nil, nil)
	ctx, cancel := testContext(t, bootTimeout+time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range []lab.NetsanHost{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.bootMarker(t, ctx, h.Host, lab.BIOS)
		}()
	}
	wg.Wait()
	checkStamp(t, s.roots[a.Name], a.Name)
	checkStamp(t, s.roots[b.Name], b.Name)
	checkStamp(t, filepath.Join(s.inv.DataDir, s.inv.Golden), "")
}

// Test 6: a MAC netsan does not know gets the "who are you" menu naming its
// MAC, and boots nobody's root.
func TestUnknownHost(t *testing.T) {
	needNetsan(t)
	known := sanHost(t, 7)
	s := serve(t, []lab.NetsanHost{known}, nil, nil)
	ctx, cancel := testContext(t, bootTimeout)
	defer cancel()
	stranger := lab.Host{Name: "stranger", MAC: "52:54:00:4e:53:ee"}
	g, err := s.Boot(ctx, machine(stranger, lab.BIOS))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	// The menu is drawn full-screen: its text is not in lines.
	if err := g.WaitText(ctx, "not in the inventory"); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitText(ctx, "MAC address: "+strings.ReplaceAll(stranger.MAC, ":", "-")); err != nil {
		t.Fatal(err)
	}
	t.Logf("menu for %s after %v", stranger.MAC, g.Elapsed())
	// The menu waits for a key: give a wrong default time to act before
	// looking for what must not be there.
	select {
	case <-g.Done():
	case <-time.After(15 * time.Second):
	}
	g.Stop()
	con := g.Console()
	for _, bad := range []string{lab.MarkerBoot, "NETSAN-LAB-IBFT", "Linux version"} {
		if strings.Contains(con, bad) {
			t.Errorf("unknown host's console shows %q: it booted something", bad)
		}
	}
	checkStamp(t, s.roots[known.Name], "")
}

// Test 5: an installed host (local disk) with open-iscsi in it discovers the
// data target with CHAP, logs in with mutual CHAP, makes ext4, writes files,
// reboots, logs in again, finds the filesystem clean and reads the files
// back. Discovery needs authentication (discovery_chap is set); the host
// uses its own CHAP credential for it, which is what lets SendTargets show
// it a target whose ACL has CHAP.
func TestDataLUN(t *testing.T) {
	needNetsan(t)
	target := storeTarget()
	target.Image = "data/data0.img"
	s := serve(t, nil, []lab.DataTarget{target}, storeDiscovery)
	s.attachData(t, target)
	fsck(t, filepath.Join(s.inv.DataDir, target.Image))
}

// storeInitiator is the installed host of the data LUN tests.
const storeInitiator = baseIQN + ":store1"

// storeDiscovery is the data LUN tests' discovery CHAP.
var storeDiscovery = &lab.CHAP{User: "discover", Secret: "discovery-secret-01"}

// storeTarget is the data target of the data LUN tests, with mutual CHAP,
// its backing left to the test.
func storeTarget() lab.DataTarget {
	return lab.DataTarget{
		Name: "data", Size: "256MiB", Initiator: storeInitiator,
		CHAP: &lab.CHAP{User: "store1", Secret: "store1-secret-0001",
			MutualUser: "netsan-data", MutualSecret: "target-secret-0001"},
	}
}

// attachData boots the installed host store1, which discovers target with
// its CHAP, logs in with mutual CHAP, makes ext4, writes files, reboots,
// logs in again and reads them back.
func (s *served) attachData(t *testing.T, target lab.DataTarget) {
	t.Helper()
	// The installed host's disk: the golden image told to run its data mode.
	disk := filepath.Join(s.Dir, "store1-disk.img")
	if err := lab.Clone(env.golden, disk); err != nil {
		t.Fatal(err)
	}
	targetIQN := baseIQN + ":" + target.Name
	c := target.CHAP
	if err := lab.SetCommandLine(disk, "netsan.mode=data netsan.portal="+lab.ServerIP+":3260"+
		" netsan.initiator="+target.Initiator+" netsan.target="+targetIQN+
		" netsan.chap="+c.User+":"+c.Secret+" netsan.mutual="+c.MutualUser+":"+c.MutualSecret+
		" netsan.discovery_chap="+c.User+":"+c.Secret,
		"/initrd.img", "/data.img"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := testContext(t, 2*bootTimeout)
	defer cancel()
	m := machine(lab.Host{Name: "store1", MAC: "52:54:00:4e:53:50"}, lab.BIOS)
	m.Disk, m.Reboot = disk, true
	g, err := s.Boot(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	for _, want := range []string{"phase=discovery target=" + targetIQN, "phase=write", "phase=verify"} {
		line, err := g.WaitLine(ctx, lab.MarkerData+" "+want)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s after %v", line, g.Elapsed())
	}
	if err := g.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// fsck checks the filesystem in img as netsan stored it, with the host's
// own e2fsck.
func fsck(t *testing.T, img string) {
	t.Helper()
	ctx, cancel := testContext(t, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-n", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}
