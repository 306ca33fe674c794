package bootmenu

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netsan/netsan/inventory/inventorytest"
)

// sb1 is a secure_boot host with CHAP; lin1 boots Linux without either
// (as does the test fleet's linux1, with CHAP).
const grubHosts = `
[[host]]
name = "sb1"
mac  = "52:54:00:00:00:51"
ip   = "198.18.0.51"
boot = "linux"
kernel = "debian12/vmlinuz"
initrd = "debian12/initrd.img"
cmdline = "console=ttyS0 quiet"
secure_boot = true
root = { image = "roots/sb1.img", size = "1GiB" }
chap = { user = "sb1", secret = "sb1-root-secret-c0ffee" }

[[host]]
name = "lin1"
mac  = "52:54:00:00:00:52"
ip   = "198.18.0.52"
boot = "linux"
kernel = "debian12/vmlinuz"
initrd = "debian12/initrd.img"
root = { image = "roots/lin1.img", size = "1GiB" }
`

func grubTree(t *testing.T) (*testTree, *Resolver) {
	t.Helper()
	tt := newTestTree(t)
	tt.inv = tt.parseWith(t, "authoritative", grubHosts)
	return tt, tt.resolver(t)
}

// A boot = "linux" host's grub/<MAC>.cfg, under either spelling of the MAC
// (GRUB's $net_default_mac has colons): its kernel and initramfs from the
// TFTP root, the command line netsan writes for it word by word; with
// CHAP only to its own MAC.
func TestGRUBHostConfig(t *testing.T) {
	tt, r := grubTree(t)
	sb1 := Client{IP: netip.MustParseAddr("198.18.0.51")}
	words, err := r.state.Load().kernelArgs(tt.inv.HostByName("sb1"))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(words, " ")
	want := "# netsan: sb1 (52:54:00:00:00:51)\n" +
		"set netsan_host=sb1\n" +
		"echo netsan: sb1: loading /debian12/vmlinuz\n" +
		"linux /debian12/vmlinuz " + args + "\n" +
		"echo netsan: sb1: loading /debian12/initrd.img\n" +
		"initrd /debian12/initrd.img\n" +
		"boot\n" +
		"echo netsan: sb1: GRUB did not boot /debian12/vmlinuz, see above\n"
	for _, name := range []string{"grub/52:54:00:00:00:51.cfg", "grub/52-54-00-00-00-51.cfg", GRUBConfigName(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x51})} {
		got, f := readAll(t, r, sb1, name)
		if got != want || f.Kind != KindScript || f.Host != "sb1" || f.MAC != "52:54:00:00:00:51" {
			t.Errorf("%s:\n got %q (%s, %s)\nwant %q", name, got, f.Kind, f.Host, want)
		}
	}
	for _, w := range []string{"iscsi_username=sb1", "iscsi_password=sb1-root-secret-c0ffee", "iscsi_target_name=iqn.2026-11.example.lab:sb1", "console=ttyS0", "quiet"} {
		if !strings.Contains(" "+args+" ", " "+w+" ") {
			t.Errorf("command line %q lacks %s", args, w)
		}
	}
	// The secret stays with sb1: another machine's address is refused.
	if f, err := r.Resolve(Client{IP: netip.MustParseAddr("198.18.0.52")}, "grub/52:54:00:00:00:51.cfg"); !errors.Is(err, ErrForbidden) || f != nil {
		t.Errorf("sb1's grub.cfg to lin1's address: %v, want ErrForbidden", err)
	}
	// Without CHAP there is nothing to keep.
	got, _ := readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.200")}, "grub/52:54:00:00:00:52.cfg")
	if !strings.Contains(got, "\nlinux /debian12/vmlinuz ip=dhcp ") || strings.Contains(got, "iscsi_password") {
		t.Errorf("lin1's grub.cfg: %q", got)
	}
	// A host that does not boot Linux, and a stranger, have none.
	for _, name := range []string{"grub/52:54:00:00:00:01.cfg", "grub/02:00:00:00:00:99.cfg"} {
		if _, err := r.Resolve(sb1, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
}

// grub/grub.cfg is the same for every machine and sends GRUB on to the
// machine's own file.
func TestGRUBStub(t *testing.T) {
	_, r := grubTree(t)
	got, f := readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.51")}, "grub/grub.cfg")
	if !strings.Contains(got, `source "${prefix}/${net_default_mac}.cfg"`) || f.Kind != KindScript || f.Host != "sb1" {
		t.Errorf("grub/grub.cfg (%s, %s): %q", f.Kind, f.Host, got)
	}
	other, _ := readAll(t, r, anyClient, "grub/grub.cfg")
	if other != got {
		t.Errorf("grub/grub.cfg differs between machines: %q and %q", got, other)
	}
}

// shim and GRUB are served from tftp.root when it has them, else from
// where Debian's packages put them; with neither, not found.
func TestSignedLoaders(t *testing.T) {
	tt, r := grubTree(t)
	system := filepath.Join(tt.dir, "usr")
	inventorytest.WriteFiles(t, system, map[string]string{"shim.signed": "Debian's shim", "grubnet.signed": "Debian's GRUB"})
	r.system = map[string]string{ShimName: filepath.Join(system, "shim.signed"), GRUBName: filepath.Join(system, "grubnet.signed")}
	if err := r.Reload(tt.inv); err != nil {
		t.Fatal(err)
	}
	sb1 := Client{IP: netip.MustParseAddr("198.18.0.51")}
	for name, want := range map[string]string{ShimName: "Debian's shim", GRUBName: "Debian's GRUB"} {
		got, f := readAll(t, r, sb1, name)
		if got != want || f.Kind != KindLoader || f.Host != "sb1" || f.Path != r.system[name] {
			t.Errorf("%s: %q (%s, %s, %s), want %q", name, got, f.Kind, f.Host, f.Path, want)
		}
		if p := findSigned(tt.root, name, r.system); p != r.system[name] {
			t.Errorf("findSigned(%s) = %q, want %q", name, p, r.system[name])
		}
	}
	// tftp.root's own copy wins.
	inventorytest.WriteFiles(t, tt.root, map[string]string{GRUBName: "root's GRUB"})
	if got, f := readAll(t, r, sb1, GRUBName); got != "root's GRUB" || f.Kind != KindFile {
		t.Errorf("%s with tftp.root's copy: %q (%s)", GRUBName, got, f.Kind)
	}
	if p := findSigned(tt.root, GRUBName, r.system); p != filepath.Join(tt.root, GRUBName) {
		t.Errorf("findSigned with tftp.root's copy = %q", p)
	}
	// Only those two names reach the system files.
	if err := os.Remove(filepath.Join(system, "shim.signed")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ShimName, "shim.signed", "mmx64.efi"} {
		if _, err := r.Resolve(sb1, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if p := findSigned(tt.root, ShimName, r.system); p != "" {
		t.Errorf("findSigned of a missing shim = %q", p)
	}
}

func TestGRUBWord(t *testing.T) {
	for in, want := range map[string]string{
		"iscsi_target_name=iqn.2026-11.example.lab:sb1": "iscsi_target_name=iqn.2026-11.example.lab:sb1",
		"/debian12/vmlinuz":                             "/debian12/vmlinuz",
		"root=PARTUUID=5e3da5f1-02":                     "root=PARTUUID=5e3da5f1-02",
		"a$b":                                           "'a$b'",
		"x;reboot":                                      "'x;reboot'",
		"it's":                                          `'it'\''s'`,
		"/my kernel":                                    "'/my kernel'",
		"":                                              "''",
	} {
		if got := grubWord(in); got != want {
			t.Errorf("grubWord(%q) = %s, want %s", in, got, want)
		}
	}
}

// A grub/linux.cfg beside the inventory replaces the embedded one.
func TestGRUBTemplateOverride(t *testing.T) {
	tt, r := grubTree(t)
	inventorytest.WriteFiles(t, tt.dir, map[string]string{"templates/grub/linux.cfg": "echo custom {{.Name}}\nlinux {{.Kernel}} {{.Args}}\nboot\n"})
	if err := r.Reload(tt.inv); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.52")}, "grub/52-54-00-00-00-52.cfg")
	if !strings.HasPrefix(got, "echo custom lin1\nlinux /debian12/vmlinuz ip=dhcp ") {
		t.Errorf("override: %q", got)
	}
}
