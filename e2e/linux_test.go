package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// linuxKernel builds (or finds cached) the lab's kernel and Debian's
// open-iscsi initramfs for it.
func linuxKernel(t *testing.T) lab.Linux {
	t.Helper()
	ctx, cancel := testContext(t, 10*time.Minute)
	defer cancel()
	k, err := lab.LinuxKernel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkRootMarker checks the line the root file system's /sbin/init printed:
// it runs from partition 2 of an iSCSI disk whose session is logged in to
// h's own root target.
func checkRootMarker(t *testing.T, line string, h lab.Host) {
	t.Helper()
	f := lab.Fields(line)
	want := map[string]string{"host": h.Name, "target": h.Target, "initiator": h.Initiator, "hostname": h.Name}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("marker %s = %q, want %q (line %q)", k, f[k], v, line)
		}
	}
	if !regexp.MustCompile(`^/dev/sd[a-z]+2$`).MatchString(f["root"]) || !strings.HasPrefix(f["session"], "session") {
		t.Errorf("marker root = %q session = %q, want partition 2 of an iSCSI disk (line %q)", f["root"], f["session"], line)
	}
}

// checkCHAPLogin checks netsan's log: a normal session of initiator to
// target logged in with CHAP, and none without.
func (s *served) checkCHAPLogin(t *testing.T, h lab.Host) {
	t.Helper()
	b, err := os.ReadFile(s.netsan.Log)
	if err != nil {
		t.Fatal(err)
	}
	var chap, other []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "\tlogin\t") || !strings.Contains(l, h.Target) || strings.Contains(l, `"discovery": true`) {
			continue
		}
		if strings.Contains(l, `"auth": "CHAP"`) {
			chap = append(chap, l)
		} else {
			other = append(other, l)
		}
	}
	if len(chap) == 0 || len(other) > 0 {
		t.Errorf("logins to %s: %d with CHAP, %d without (want only CHAP):\n%s", h.Target, len(chap), len(other), strings.Join(append(chap, other...), "\n"))
	}
}

// piSerial is the test Pi's serial: its TFTP prefix.
const piSerial = "9ffefde1"

// TestPiChain plays a Raspberry Pi 4's bootloader, apart from its ROM: its
// DHCP with the Pi's vendor class, architecture and MAC prefix, then TFTP
// of every file its firmware reads, in the firmware's order, under its
// serial. The firmware files and the device tree are stand-ins and the
// lab's x86 kernel stands in for kernel8.img (nothing here runs arm64);
// the initramfs is Debian's own with open-iscsi. QEMU then boots the kernel,
// initramfs and command line the "Pi" fetched (plus console=ttyS0): the
// initramfs must log in to the Pi's root clone with CHAP, on the
// parameters netsan wrote in cmdline.txt, and mount it.
func TestPiChain(t *testing.T) {
	needNetsan(t)
	k := linuxKernel(t)
	h := host(t, 7)
	h.MAC = "dc:a6:32:4e:53:07"
	pi := lab.NetsanHost{Host: h, Boot: "san", Serial: piSerial,
		CHAP: &lab.CHAP{User: "pi-node7", Secret: "pi-node7-secret-c0ffee"}}

	tftp := filepath.Join(env.tmpRoot, "pi-"+t.Name())
	dir := filepath.Join(tftp, piSerial)
	t.Cleanup(func() { os.RemoveAll(tftp) })
	if err := k.Install(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "kernel8.img")); err != nil {
		t.Fatal(err)
	}
	standIns := map[string]string{
		"start4.elf":          "stand-in for the Pi 4 firmware\n",
		"fixup4.dat":          "stand-in for the Pi 4 firmware's memory split\n",
		"bcm2711-rpi-4-b.dtb": "stand-in for the Pi 4 device tree\n",
		"config.txt":          "[pi4]\narm_64bit=1\nkernel=kernel8.img\ninitramfs initrd.img followkernel\n",
	}
	for name, body := range standIns {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s := serveTFTP(t, tftp, []lab.NetsanHost{pi})
	ctx, cancel := testContext(t, bootTimeout+2*time.Minute)
	defer cancel()
	ns, err := s.Client(ctx, h.MAC)
	if err != nil {
		t.Fatal(err)
	}
	// The Pi 4 EEPROM's DHCP: PXE's vendor class, option 93 architecture 0,
	// option 94 UNDI 2.1; it trusts an answer with option 43 "Raspberry Pi Boot".
	start := time.Now()
	ans := dhcp(ctx, t, s.Lab, ns, "-x", "0x5d:0000", "-x", "0x5e:010201", "-O", "43", "-O", "66")
	if ans["siaddr"] != lab.ServerIP {
		t.Errorf("Pi got next-server %q, want %s", ans["siaddr"], lab.ServerIP)
	}
	if v, _ := hex.DecodeString(ans["opt43"]); !bytes.Contains(v, []byte("Raspberry Pi Boot")) {
		t.Fatalf("Pi got option 43 %q, without \"Raspberry Pi Boot\" it would not boot", v)
	}

	// The firmware's reads: start4.elf and fixup4.dat, then config.txt,
	// the device tree, the kernel and the initramfs config.txt names, and
	// the kernel's command line.
	got := filepath.Join(s.Dir, "pi")
	files := make(map[string][]byte)
	for _, name := range []string{"start4.elf", "fixup4.dat", "config.txt", "bcm2711-rpi-4-b.dtb", "kernel8.img", "initrd.img", "cmdline.txt"} {
		local := filepath.Join(got, name)
		if err := os.MkdirAll(got, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := lab.RunIn(ctx, ns, "busybox", "tftp", "-g", "-r", piSerial+"/"+name, "-l", local, lab.ServerIP); err != nil {
			t.Fatalf("TFTP %s/%s: %v", piSerial, name, err)
		}
		if files[name], err = os.ReadFile(local); err != nil {
			t.Fatal(err)
		}
		if want, ok := standIns[name]; ok && string(files[name]) != want {
			t.Errorf("%s over TFTP = %q, want %q", name, files[name], want)
		}
	}
	if !strings.Contains(string(files["config.txt"]), "initramfs initrd.img") {
		t.Fatalf("config.txt names no initramfs: %q", files["config.txt"])
	}
	fetched := time.Since(start).Round(100 * time.Millisecond)
	cmdline := strings.TrimSpace(string(files["cmdline.txt"]))
	t.Logf("Pi files fetched in %v; cmdline.txt: %s", fetched, cmdline)
	for _, w := range []string{"iscsi_username=" + pi.CHAP.User, "iscsi_password=" + pi.CHAP.Secret, "iscsi_target_name=" + h.Target, "ip=dhcp"} {
		if !strings.Contains(" "+cmdline+" ", " "+w+" ") {
			t.Errorf("cmdline.txt lacks %s", w)
		}
	}

	m := machine(h, lab.BIOS)
	m.Kernel = filepath.Join(got, "kernel8.img")
	m.Initrd = filepath.Join(got, "initrd.img")
	m.Append = cmdline + " console=ttyS0"
	_, took := s.bootRoot(t, ctx, h, m)
	t.Logf("%v with the Pi's DHCP and TFTP", took+fetched)
}

// bootRoot boots m, a kernel-and-initramfs boot of h, until its root's
// marker, checks it and that netsan saw CHAP logins only, and returns the
// guest, powered off, and the time from QEMU's start to the marker.
func (s *served) bootRoot(t *testing.T, ctx context.Context, h lab.Host, m lab.Machine) (*lab.Guest, time.Duration) {
	t.Helper()
	g, err := s.Boot(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	line, err := g.WaitLine(ctx, lab.MarkerRoot)
	if err != nil {
		t.Fatal(err)
	}
	took := g.Elapsed()
	t.Logf("%s after %v from QEMU's start", line, took)
	checkRootMarker(t, line, h)
	s.checkCHAPLogin(t, h)
	if err := g.Wait(ctx); err != nil {
		t.Error(err)
	}
	return g, took
}

// linuxTFTP is a tftp.root, removed when t ends, holding the lab's kernel
// and open-iscsi initramfs as debian12/vmlinuz and debian12/initrd.img.
func linuxTFTP(t *testing.T) string {
	t.Helper()
	k := linuxKernel(t)
	tftp := filepath.Join(env.tmpRoot, "linux-"+t.Name())
	t.Cleanup(func() { os.RemoveAll(tftp) })
	if err := k.Install(filepath.Join(tftp, "debian12")); err != nil {
		t.Fatal(err)
	}
	return tftp
}

// serveTFTP is serve with tftp.root set to root.
func serveTFTP(t *testing.T, root string, hosts []lab.NetsanHost) *served {
	t.Helper()
	return serveWith(t, env.golden, hosts, func(inv *lab.Inventory) { inv.TFTPRoot = root })
}

// TestLinuxBoot: a BIOS guest with boot = "linux" and CHAP. iPXE's DHCP
// gets no root-path (it hooks no drive) and its script over HTTP; the
// script has it fetch the kernel and Debian's open-iscsi initramfs over
// HTTP and boot them with the iscsi_* parameters; the initramfs logs in
// with CHAP to the host's own root clone and mounts it.
func TestLinuxBoot(t *testing.T) {
	needNetsan(t)
	h := host(t, 8)
	nh := lab.NetsanHost{Host: h, Boot: "linux", CHAP: &lab.CHAP{User: "node8", Secret: "node8-root-secret-0ddba11"},
		Kernel: "debian12/vmlinuz", Initrd: "debian12/initrd.img", Cmdline: "console=ttyS0"}
	s := serveTFTP(t, linuxTFTP(t), []lab.NetsanHost{nh})
	ctx, cancel := testContext(t, bootTimeout)
	defer cancel()
	s.bootRoot(t, ctx, h, machine(h, lab.BIOS))
	// The kernel and initramfs came over HTTP, from netsan's tftp.root.
	b, err := os.ReadFile(s.netsan.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"boot/" + strings.ReplaceAll(h.MAC, ":", "-") + ".ipxe", "debian12/vmlinuz", "debian12/initrd.img"} {
		if !regexp.MustCompile(`http\t.*"file": "` + regexp.QuoteMeta(f) + `"`).Match(b) {
			t.Errorf("netsan's log shows no HTTP request for %s", f)
		}
	}
}
