package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// TestSecureBoot: OVMF with Secure Boot enforced and Microsoft's keys
// enrolled (it runs only what their UEFI CA signed) PXE-boots a
// secure_boot host through the signed chain netsan serves it: shim
// (Debian's shim-signed) over TFTP as its DHCP file, GRUB's network image
// (grub-efi-amd64-signed) that shim fetches beside itself, grub/grub.cfg and
// the host's own grub/<MAC>.cfg, then Debian's signed kernel, which GRUB
// has shim verify, and Debian's open-iscsi initramfs, which logs in to the
// host's root with CHAP on the command line netsan wrote and mounts it.
// The kernel must say Secure Boot is on, and the root's /sbin/init must
// find itself on the host's own iSCSI root. A second host's kernel, the
// same with one byte changed, must be refused.
func TestSecureBoot(t *testing.T) {
	needNetsan(t)
	ctx, cancel := testContext(t, 5*time.Minute)
	chain, err := lab.SignedChain(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	tftp := linuxTFTP(t)
	for _, name := range []string{"shimx64.efi", "grubx64.efi"} {
		if err := lab.Clone(filepath.Join(chain, name), filepath.Join(tftp, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The same kernel with one byte changed: its signature no longer holds.
	tampered := filepath.Join(tftp, "debian12", "vmlinuz-tampered")
	if err := tamper(filepath.Join(tftp, "debian12", "vmlinuz"), tampered); err != nil {
		t.Fatal(err)
	}
	h, bad := host(t, 9), host(t, 10)
	sb := lab.NetsanHost{Host: h, Boot: "linux", SecureBoot: true,
		Kernel: "debian12/vmlinuz", Initrd: "debian12/initrd.img", Cmdline: "console=ttyS0",
		CHAP: &lab.CHAP{User: "sb-node9", Secret: "sb-node9-secret-c0ffee"}}
	sbBad := sb
	sbBad.Host, sbBad.Kernel, sbBad.CHAP = bad, "debian12/vmlinuz-tampered", nil
	s := serveTFTP(t, tftp, []lab.NetsanHost{sb, sbBad})
	ctx, cancel = testContext(t, 2*bootTimeout)
	defer cancel()
	g, _ := s.bootRoot(t, ctx, h, machine(h, lab.UEFISecureBoot))

	// Each step of the chain said what it did on the console: the
	// firmware's PXE ran shim, shim fetched GRUB, GRUB ran the host's
	// configuration, the kernel's EFI stub and the kernel found Secure
	// Boot on (a kernel booted without it says "disabled").
	con := g.Console()
	for _, want := range []string{
		"NBP filename is shimx64.efi",
		"Fetching Netboot Image grubx64.efi",
		"netsan: " + h.Name + ": loading /debian12/vmlinuz",
		"netsan: " + h.Name + ": loading /debian12/initrd.img",
		"EFI stub: UEFI Secure Boot is enabled.",
		"secureboot: Secure boot enabled",
		"iscsi_target_name=" + h.Target,
	} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(con, "iPXE") {
		t.Errorf("console shows iPXE: the chain was not shim's")
	}
	s.logServed(t, g, "shimx64.efi", "grubx64.efi", "grub/grub.cfg", ".cfg", "debian12/vmlinuz", "debian12/initrd.img")

	// Secure Boot is enforced, not only reported: the tampered kernel is
	// refused, and GRUB goes on to the line after its boot.
	g, err = s.Boot(ctx, machine(bad, lab.UEFISecureBoot))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	if err := g.WaitText(ctx, "netsan: "+bad.Name+": GRUB did not boot"); err != nil {
		t.Fatal(err)
	}
	con = g.Console()
	if strings.Contains(con, "Linux version") {
		t.Errorf("the tampered kernel ran")
	}
	i := strings.Index(con, "netsan: "+bad.Name+": loading /debian12/vmlinuz-tampered")
	t.Logf("tampered kernel refused after %v:\n%s", g.Elapsed(), con[max(i, 0):])
}

// tamper copies the kernel src to dst with one byte in its middle changed.
func tamper(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 0xff
	return os.WriteFile(dst, b, 0o644)
}

// logServed logs netsan's log lines about the files named (any of which
// the line's "file" contains), to show what each step of a chain fetched.
func (s *served) logServed(t *testing.T, g *lab.Guest, names ...string) {
	t.Helper()
	b, err := os.ReadFile(s.netsan.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		for _, n := range names {
			if strings.Contains(l, `"file": "`) && strings.Contains(l, n+`"`) {
				t.Logf("netsan: %s", l)
				break
			}
		}
	}
	t.Logf("QEMU started %s", g.Started.Format("15:04:05.000"))
}
