package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const base = `
[server]
address  = "198.18.0.1"
data_dir = "/var/lib/netsan"

[dhcp]
subnet = "198.18.0.0/24"
range  = ["198.18.0.100", "198.18.0.199"]

[iscsi]
base_iqn = "iqn.2026-11.example.lab"

[[image]]
name = "golden"
path = "golden/g.img"
`

func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../examples/*.toml")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		inv, ps, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, p := range ps {
			t.Errorf("%s: unexpected warning %s", f, p)
		}
		if len(inv.Hosts) == 0 {
			t.Errorf("%s: no hosts", f)
		}
	}
}

func TestGoodInventory(t *testing.T) {
	src := base + `
[tftp]
root = "tftp"

[[host]]
name = "node1"
mac  = "52-54-00-00-00-01"
ip   = "198.18.0.11"
root = { image = "roots/node1.img", from = "golden", size = "8GiB" }

[[host]]
name = "pc"
mac  = "52:54:00:00:00:02"
boot = "local"

[[target]]
name = "data"
luns = [ { lun = 0, image = "data/db.img", size = "100G" }, { lun = 3, device = "/dev/vg/lv" } ]
[[target.acl]]
initiator = "iqn.2026-11.example.lab:node1"
map = { 1 = 3 }
`
	inv, ps := Parse("/etc/netsan/netsan.toml", []byte(src))
	if inv == nil {
		t.Fatalf("rejected: %v", ps)
	}
	h := inv.HostByName("node1")
	if h.Boot != BootSAN || h.Root.Size.Bytes != 8<<30 || h.Root.Image != "/var/lib/netsan/roots/node1.img" {
		t.Errorf("node1 = %+v root %+v", h, h.Root)
	}
	if got := inv.RootPath(h); got != "iscsi:198.18.0.1::3260:0:iqn.2026-11.example.lab:node1" {
		t.Errorf("RootPath = %q", got)
	}
	if got := inv.HostByName("pc").Boot; got != BootLocal {
		t.Errorf("pc boot = %q", got)
	}
	if inv.TFTP.Root != "/etc/netsan/tftp" || inv.TFTP.IPXEDir != "/usr/lib/ipxe" {
		t.Errorf("tftp = %+v", inv.TFTP)
	}
	if !inv.DHCP.On() || inv.TFTP.On() == false || inv.HTTP.On() || !inv.ISCSI.On() {
		t.Errorf("On: dhcp %v tftp %v http %v iscsi %v", inv.DHCP.On(), inv.TFTP.On(), inv.HTTP.On(), inv.ISCSI.On())
	}
	if inv.DHCP.LeaseTime.Duration != time.Hour || inv.DHCP.Mode != ModeAuthoritative {
		t.Errorf("dhcp defaults = %+v", inv.DHCP)
	}
	if got := inv.Targets[0].LUNs[0].Size.Bytes; got != 100<<30 {
		t.Errorf("lun size %d", got)
	}
	if got := inv.Targets[0].ACL[0].Map["1"]; got != 3 {
		t.Errorf("map = %v", inv.Targets[0].ACL[0].Map)
	}
	if w := ps.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
}

// TestGoldenImageReadOnlyLUN: a data LUN may serve a golden image only
// read-only, as a file or as an RBD image.
func TestGoldenImageReadOnlyLUN(t *testing.T) {
	for _, lun := range []string{`image = "golden/g.img"`, `rbd = "golden"`} {
		src := base + "[ceph]\n[[image]]\nname = \"rbdgolden\"\nrbd = \"golden\"\n[[target]]\nname = \"data\"\nluns = [ { lun = 0, " + lun + ", read_only = true } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.example.lab:x\"\n"
		if inv, ps := Parse("netsan.toml", []byte(src)); inv == nil {
			t.Errorf("read-only lun %s refused: %v", lun, ps)
		}
		src = strings.Replace(src, ", read_only = true", "", 1)
		if inv, ps := Parse("netsan.toml", []byte(src)); inv != nil || !strings.Contains(fmt.Sprint(ps), "which is never written") {
			t.Errorf("writable lun %s: %v", lun, ps)
		}
	}
}

// base is 15 lines, so a case's first line is line 16. Each bad inventory must be refused with this message at this line (and,
// where given, column) — the line a person has to edit.
func TestBadInventories(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string // appended to base
		line int
		col  int
		msg  string
		warn bool
	}{
		{"typo in host key", "[[host]]\nname = \"n1\"\nmac = \"52:54:00:00:00:01\"\nboto = \"san\"\n", 19, 1, `unknown key "host.boto"; did you mean boot?`, false},
		{"typo in section", "[dhcp2]\nx = 1\n", 16, 1, `unknown key "dhcp2"; did you mean dhcp?`, false},
		{"typo in inline table", "[[host]]\nname = \"n1\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"r.img\", sise = \"1G\" }\n", 19, 27, `unknown key "host.root.sise"; did you mean size?`, false},
		{"bad mac", "[[host]]\nname = \"n1\"\nmac = \"52:54:00:00:00\"\nboot = \"local\"\n", 18, 1, `mac "52:54:00:00:00"`, false},
		{"duplicate mac", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"local\"\n[[host]]\nname = \"b\"\nmac = \"52:54:00:00:00:01\"\nboot = \"local\"\n", 22, 1, "already used by host a", false},
		{"duplicate name", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"local\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:02\"\nboot = \"local\"\n", 21, 1, `host name "a" is already used`, false},
		{"duplicate ip", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nip = \"198.18.0.5\"\nboot = \"local\"\n[[host]]\nname = \"b\"\nmac = \"52:54:00:00:00:02\"\nip = \"198.18.0.5\"\nboot = \"local\"\n", 24, 1, "ip 198.18.0.5 is already used by host a", false},
		{"ip outside subnet", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nip = \"198.19.0.5\"\nboot = \"local\"\n", 19, 1, "outside subnet 198.18.0.0/24", false},
		{"ip in dynamic range", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nip = \"198.18.0.150\"\nboot = \"local\"\n", 19, 1, "inside the dynamic range", false},
		{"bad size", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"r.img\", size = \"8 GB\" }\n", 19, 27, `bad size "8 GB"`, false},
		{"bad listen", "[http]\nlisten = \"8080\"\n", 17, 1, `listen "8080"`, false},
		{"image escapes data_dir", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"../../etc/shadow\" }\n", 19, 10, "escapes data_dir", false},
		{"unknown golden image", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"r.img\", from = \"nope\" }\n", 19, 27, `root.from "nope"`, false},
		{"root is golden image", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"golden/g.img\" }\n", 19, 10, "is a golden image", false},
		{"shared root", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"r.img\" }\n[[host]]\nname = \"b\"\nmac = \"52:54:00:00:00:02\"\nroot = { image = \"r.img\" }\n", 23, 10, "already the root of host a", false},
		{"linux without root", "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nkernel = \"d/vmlinuz\"\ninitrd = \"d/initrd.img\"\n", 21, 1, `boot = "linux" needs a root`, false},
		{"linux without kernel", "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nroot = { image = \"r.img\" }\ninitrd = \"d/initrd.img\"\n", 18, 1, `boot = "linux" needs a kernel`, false},
		{"linux kernel out of tftp.root", "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nroot = { image = \"r.img\" }\nkernel = \"../vmlinuz\"\ninitrd = \"d/initrd.img\"\n", 23, 1, `kernel "../vmlinuz": a relative path under tftp.root`, false},
		{"linux initrd with a space", "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nroot = { image = \"r.img\" }\nkernel = \"d/vmlinuz\"\ninitrd = \"d/initrd img\"\n", 24, 1, `initrd "d/initrd img": a relative path`, false},
		{"linux without tftp.root", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nroot = { image = \"r.img\" }\nkernel = \"d/vmlinuz\"\ninitrd = \"d/initrd.img\"\n", 21, 1, `kernel "d/vmlinuz" is looked up under tftp.root, and [tftp] has no root`, false},
		{"linux cmdline with $", "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nroot = { image = \"r.img\" }\nkernel = \"d/vmlinuz\"\ninitrd = \"d/initrd.img\"\ncmdline = \"console=ttyS0 x=${y}\"\n", 25, 1, `would not reach the kernel as written`, false},
		{"kernel on a san host", "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nroot = { image = \"r.img\" }\nkernel = \"d/vmlinuz\"\n", 22, 1, `kernel is read only for boot = "linux"`, true},
		{"san without root", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"san\"\n", 19, 1, `boot = "san" needs a root`, false},
		{"bad boot mode", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"pxe\"\n", 19, 1, `boot "pxe"`, false},
		{"secure_boot without linux", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"local\"\nsecure_boot = true\n", 20, 1, `secure_boot: only a boot = "linux" host boots through shim and GRUB (this one is "local")`, false},
		{"short chap secret", "[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"local\"\nchap = { user = \"a\", secret = \"short\" }\n", 20, 22, "CHAP secret is 5 bytes", true},
		{"target without acl", "[[target]]\nname = \"data\"\nluns = [ { lun = 0, image = \"d.img\", size = \"1G\" } ]\n", 16, 1, `target "data" has no acl`, true},
		{"acl maps missing lun", "[[target]]\nname = \"data\"\nluns = [ { lun = 0, image = \"d.img\", size = \"1G\" } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.example.lab:x\"\nmap = { 0 = 7 }\n", 21, 9, "has no lun 7", false},
		{"second target's acl", "[[target]]\nname = \"d1\"\nluns = [ { lun = 0, image = \"d1.img\", size = \"1G\" } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.example.lab:x\"\n[[target]]\nname = \"d2\"\nluns = [ { lun = 0, image = \"d2.img\", size = \"1G\" } ]\n[[target.acl]]\ninitiator = \"bogus\"\n", 25, 1, `initiator "bogus"`, false},
		{"lun is golden image", "[[target]]\nname = \"data\"\nluns = [ { lun = 0, image = \"d.img\", size = \"1G\" },\n  { lun = 1, image = \"golden/g.img\" } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.example.lab:x\"\n", 19, 3, `is golden image "golden", which is never written`, false},
		{"duplicate lun", "[[target]]\nname = \"data\"\nluns = [ { lun = 0, image = \"a.img\" },\n  { lun = 0, image = \"b.img\" } ]\n[[target.acl]]\ninitiator = \"iqn.2026-11.example.lab:x\"\n", 19, 5, "lun 0 is defined twice", false},
		{"syntax error", "[[host]]\nname = \"a\n", 17, 10, "cannot contain newlines", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, ps := Parse("netsan.toml", []byte(base+tc.src))
			if !tc.warn && inv != nil {
				t.Fatalf("accepted; problems: %v", ps)
			}
			if tc.warn && inv == nil {
				t.Fatalf("refused for a warning: %v", ps)
			}
			for _, p := range ps {
				if strings.Contains(p.Message, tc.msg) && p.Warning == tc.warn {
					if p.Pos.Line != tc.line || (tc.col != 0 && p.Pos.Col != tc.col) {
						t.Errorf("%q at %d:%d, want %d:%d", p.Message, p.Pos.Line, p.Pos.Col, tc.line, tc.col)
					}
					want := "netsan.toml:"
					if !strings.HasPrefix(p.String(), want) {
						t.Errorf("String() = %q", p.String())
					}
					return
				}
			}
			t.Errorf("no problem containing %q (warning=%v); got %v", tc.msg, tc.warn, ps)
		})
	}
}

func TestBadDuration(t *testing.T) {
	src := "[server]\naddress = \"198.18.0.1\"\n[dhcp]\nsubnet = \"198.18.0.0/24\"\nlease_time = \"forever\"\n"
	_, ps := Parse("d.toml", []byte(src))
	if len(ps) != 1 || ps[0].Pos.Line != 5 || !strings.Contains(ps[0].Message, "lease_time") {
		t.Fatalf("problems = %v", ps)
	}
}

func TestAllProblemsInOneRun(t *testing.T) {
	src := base + `
[[host]]
name = "a"
mac = "zz"
boot = "nope"
[[host]]
name = "Bad_Name"
mac = "52:54:00:00:00:02"
ip = "10.1.2.3"
bogus = 1
`
	_, ps := Parse("x.toml", []byte(src))
	errs := ps.Errors()
	if len(errs) < 5 {
		t.Fatalf("want at least 5 errors, got %d: %v", len(errs), errs)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i].Pos.Line < errs[i-1].Pos.Line {
			t.Errorf("not in file order: %v then %v", errs[i-1], errs[i])
		}
	}
	text := ps.Err().Error()
	for _, want := range []string{`mac "zz"`, `boot "nope"`, `host name "Bad_Name"`, "outside subnet", `unknown key "host.bogus"`} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}

// Load tells a file it cannot read from one that does not validate by the
// error's type.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Load(filepath.Join(dir, "none.toml"))
	var invalid *InvalidError
	if err == nil || !errors.Is(err, fs.ErrNotExist) || errors.As(err, &invalid) {
		t.Fatalf("missing file: err = %v", err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(base+"[[host]]\nname = \"a\"\nmac = \"zz\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, ps, err := Load(bad)
	if inv != nil || !errors.As(err, &invalid) || len(invalid.Problems.Errors()) == 0 || len(invalid.Problems) != len(ps) {
		t.Fatalf("invalid file: inventory %v, problems %v, err %v", inv, ps, err)
	}
	if !strings.Contains(err.Error(), `mac "zz"`) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("invalid file: err = %v", err)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	if inv, _, err := Load(good); inv == nil || err != nil {
		t.Errorf("good file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"8GiB": 8 << 30, "100G": 100 << 30, "512MiB": 512 << 20, "4096": 4096, "1T": 1 << 40, "2 KiB": 2048} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "8GB", "-1G", "1.5G", "G", "99999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestDiff(t *testing.T) {
	old, ps := Parse("a.toml", []byte(base+"[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"local\"\n[[host]]\nname = \"b\"\nmac = \"52:54:00:00:00:02\"\nboot = \"local\"\n"))
	if old == nil {
		t.Fatal(ps)
	}
	new, ps := Parse("a.toml", []byte(base+"[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"shell\"\n[[host]]\nname = \"c\"\nmac = \"52:54:00:00:00:03\"\nboot = \"local\"\n"))
	if new == nil {
		t.Fatal(ps)
	}
	c := Diff(old, new)
	if got := c.String(); got != "hosts +c -b ~a" {
		t.Errorf("Diff = %q", got)
	}
	if c.DHCP || c.ISCSI || c.Empty() {
		t.Errorf("Diff = %+v", c)
	}
	if !Diff(old, old).Empty() {
		t.Error("Diff(old, old) not empty")
	}
}

// TestUnknownKeySuggestion: an unknown key is answered with the nearest
// key valid at its place, when one is near enough to be a typo, and with
// none otherwise.
func TestUnknownKeySuggestion(t *testing.T) {
	for _, tc := range []struct{ key, src, want string }{
		{"dhcp.lease_tme", "[dhcp]\nlease_tme = \"2h\"\n", `unknown key "dhcp.lease_tme"; did you mean lease_time?`},
		{"iscsi.base_ign", "[iscsi]\nbase_ign = \"x\"\n", `unknown key "iscsi.base_ign"; did you mean base_iqn?`},
		{"host.chap.secert", "[[host]]\nchap = { secert = \"x\" }\n", `unknown key "host.chap.secert"; did you mean secret?`},
		{"target.acl.initator", "[[target]]\n[[target.acl]]\ninitator = \"x\"\n", `unknown key "target.acl.initator"; did you mean initiator?`},
		{"dhcp.frobnicate", "[dhcp]\nfrobnicate = 1\n", `unknown key "dhcp.frobnicate"`},
		{"ip at the top", "ip = \"x\"\n", `unknown key "ip"`},
	} {
		_, ps := Parse("netsan.toml", []byte(tc.src))
		var got []string
		for _, p := range ps {
			if strings.HasPrefix(p.Message, "unknown key") {
				got = append(got, p.Message)
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: unknown-key problems %q, want exactly %q", tc.key, got, tc.want)
		}
	}
}

// TestIPv6RADefault: dhcp.ipv6_ra defaults to on when netsan hands out
// addresses and off in proxy mode (the LAN's router owns IPv6), and an
// explicit value holds in either mode.
func TestIPv6RADefault(t *testing.T) {
	for _, tc := range []struct {
		dhcp string
		want bool
	}{
		{`subnet = "198.18.0.0/24"`, true},
		{`mode = "proxy"`, false},
		{"subnet = \"198.18.0.0/24\"\nipv6_ra = false", false},
		{"mode = \"proxy\"\nipv6_ra = true", true},
		{"subnet = \"198.18.0.0/24\"\nenabled = false", false},
	} {
		inv, ps := Parse("/etc/netsan/netsan.toml", []byte("[server]\naddress = \"198.18.0.1\"\n[dhcp]\n"+tc.dhcp+"\n"))
		if inv == nil || ps.Err() != nil {
			t.Fatalf("%q: %v", tc.dhcp, ps)
		}
		if inv.DHCP.IPv6RA == nil {
			t.Fatalf("%q: Load left ipv6_ra unset", tc.dhcp)
		}
		if got := inv.DHCP.AnswersRS(); got != tc.want {
			t.Errorf("%q: AnswersRS = %v, want %v", tc.dhcp, got, tc.want)
		}
	}
}

// A boot = "linux" host with a root, a kernel and an initramfs under
// tftp.root and a command line of its own passes without a word.
func TestLinuxHost(t *testing.T) {
	src := base + "[tftp]\nroot = \"/srv/tftp\"\n[[host]]\nname = \"a\"\nmac = \"52:54:00:00:00:01\"\nboot = \"linux\"\nroot = { image = \"r.img\" }\n" +
		"kernel = \"debian12/vmlinuz\"\ninitrd = \"debian12/initrd.img\"\ncmdline = \"console=ttyS0 quiet\"\nchap = { user = \"a\", secret = \"a-secret-0123456\" }\n"
	inv, ps := Parse("netsan.toml", []byte(src))
	if inv == nil || len(ps) != 0 {
		t.Fatalf("refused or warned: %v", ps)
	}
	if h := inv.Hosts[0]; h.Boot != BootLinux || h.Kernel != "debian12/vmlinuz" || h.Initrd != "debian12/initrd.img" || h.Cmdline != "console=ttyS0 quiet" {
		t.Errorf("host = %+v", h)
	}
	for name, ok := range map[string]bool{"vmlinuz": true, "debian12/vmlinuz": true, "a/b/c.img": true,
		"": false, "/boot/vmlinuz": false, "../vmlinuz": false, "a/../b": false, "a//b": false, "a/./b": false,
		"a b": false, `a\b`: false, "a#b": false, "a?b": false, "a%20b": false, "a$b": false} {
		if TFTPName(name) != ok {
			t.Errorf("TFTPName(%q) = %v, want %v", name, !ok, ok)
		}
	}
}

// TestMaxSessionsDefault: iscsi.max_sessions defaults to 256, or two a
// host when that is more, so that a 500-host storm is not refused at the
// 257th login; an explicit value holds.
func TestMaxSessionsDefault(t *testing.T) {
	hosts := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "[[host]]\nname = \"n%d\"\nmac = \"02:00:00:00:%02x:%02x\"\n", i, i>>8, i&0xff)
		}
		return b.String()
	}
	for _, tc := range []struct {
		iscsi string
		hosts int
		want  int
	}{
		{"", 3, 256},
		{"", 500, 1000},
		{"max_sessions = 300", 500, 300},
	} {
		inv, ps := Parse("/etc/netsan/netsan.toml", []byte("[server]\naddress = \"198.18.0.1\"\n[iscsi]\nbase_iqn = \"iqn.2026-11.example\"\n"+tc.iscsi+"\n"+hosts(tc.hosts)))
		if inv == nil || ps.Err() != nil {
			t.Fatalf("%q, %d hosts: %v", tc.iscsi, tc.hosts, ps)
		}
		if got := inv.ISCSI.MaxSessions; got != tc.want {
			t.Errorf("%q, %d hosts: max_sessions %d, want %d", tc.iscsi, tc.hosts, got, tc.want)
		}
	}
}
