package bootmenu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
)

// ipxeCommands is iPXE's command set (ipxe.org/cmd), with the options this
// check knows for the commands the templates use. nil: options not checked.
var ipxeCommands = map[string][]string{
	"autoboot": nil, "chain": {"--name", "--autofree", "--replace", "--timeout"},
	"choose": {"--default", "--timeout", "--menu", "--keep"}, "clear": nil, "colour": nil,
	"console": nil, "cpair": nil, "cpuid": nil, "dhcp": nil, "echo": {"-n"}, "exit": nil,
	"goto": {}, "ifclose": nil, "ifconf": nil, "ifopen": nil, "ifstat": nil, "imgargs": nil,
	"imgexec": nil, "imgfetch": nil, "imgfree": nil, "imgload": nil, "imgselect": nil,
	"imgstat": nil, "imgtrust": nil, "imgverify": nil, "inc": nil, "initrd": nil,
	"iseq": {}, "isset": {}, "item": {"--key", "--default", "--gap"}, "kernel": nil,
	"login": nil, "menu": {"--name", "--delete"}, "module": nil, "nslookup": nil, "ntp": nil,
	"param": nil, "params": nil, "ping": nil, "poweroff": nil,
	"prompt": {"--key", "--timeout"}, "read": nil, "reboot": {"--warm"}, "route": nil,
	"sanboot": {"--drive", "--filename", "--extra", "--label", "--uuid", "--no-describe", "--keep"},
	"sanhook": nil, "sanunhook": nil, "set": nil, "shell": {}, "show": nil, "sleep": nil,
	"sync": nil, "time": nil, "boot": nil, "pxebs": nil, "vcreate": nil, "vdestroy": nil,
}

// optionTakesValue lists the options above that consume the next word
// (choose --default does too; item --default does not).
var optionTakesValue = map[string]bool{
	"--name": true, "--timeout": true, "--default": false, "--menu": true, "--key": true,
	"--drive": true, "--filename": true, "--extra": true, "--label": true, "--uuid": true,
}

// checkIPXE checks a script against iPXE's grammar as far as a script can be
// checked without running it: #!ipxe first, each command known with known
// options, every goto target a label, the menu's items and default labelled.
func checkIPXE(script string) []string {
	var problems []string
	bad := func(n int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("line %d: ", n)+fmt.Sprintf(format, args...))
	}
	lines := strings.Split(script, "\n")
	if lines[0] != "#!ipxe" {
		bad(1, "first line %q, want #!ipxe", lines[0])
	}
	if !strings.HasSuffix(script, "\n") {
		bad(len(lines), "no final newline")
	}
	labels := map[string]bool{}
	var gotos, items []string
	var chooseDefault string
	for i, line := range lines[1:] {
		n := i + 2
		if strings.HasSuffix(line, `\`) {
			bad(n, "ends in a backslash (iPXE would join the next line)")
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
			continue
		case strings.HasPrefix(t, ":"):
			if strings.ContainsAny(t[1:], " \t") || len(t) == 1 {
				bad(n, "bad label %q", t)
			}
			labels[t[1:]] = true
			continue
		}
		words := strings.Fields(t)
		var cmds [][]string
		start := 0
		for j, w := range words {
			if w == "||" || w == "&&" {
				cmds = append(cmds, words[start:j])
				start = j + 1
			} else if strings.Contains(w, "||") || strings.Contains(w, "&&") {
				bad(n, "operator glued to %q", w)
			}
		}
		cmds = append(cmds, words[start:])
		for _, c := range cmds {
			if len(c) == 0 {
				bad(n, "empty command around || or &&")
				continue
			}
			opts, ok := ipxeCommands[c[0]]
			if !ok {
				bad(n, "unknown command %q", c[0])
				continue
			}
			var args []string
			for k := 1; k < len(c); k++ {
				w := c[k]
				if w == "--" {
					args = append(args, c[k+1:]...)
					break
				}
				if strings.HasPrefix(w, "--") || (len(w) == 2 && w[0] == '-') {
					if opts != nil && !slices.Contains(opts, w) {
						bad(n, "%s has no option %s", c[0], w)
					}
					if optionTakesValue[w] || c[0] == "choose" && w == "--default" {
						if k+1 >= len(c) {
							bad(n, "%s %s needs a value", c[0], w)
							break
						}
						if c[0] == "choose" && w == "--default" {
							chooseDefault = c[k+1]
						}
						k++
					}
					continue
				}
				args = append(args, w)
			}
			switch c[0] {
			case "goto":
				if len(args) != 1 {
					bad(n, "goto needs one label")
				} else if args[0] != "${selected}" {
					gotos = append(gotos, args[0])
				}
			case "item":
				if !slices.Contains(c, "--gap") {
					if len(args) < 2 {
						bad(n, "item needs a label and text")
					} else {
						items = append(items, args[0])
					}
				}
			case "iseq":
				if len(args) != 2 {
					bad(n, "iseq needs two values")
				}
			case "choose":
				if len(args) != 1 {
					bad(n, "choose needs one setting name")
				}
			case "sanboot":
				for _, a := range args {
					if !strings.HasPrefix(a, "iscsi:") {
						bad(n, "sanboot argument %q is not an iscsi: URI", a)
					}
				}
			}
		}
	}
	for _, g := range gotos {
		if !labels[g] {
			problems = append(problems, fmt.Sprintf("goto %s: no such label", g))
		}
	}
	for _, it := range items {
		if !labels[it] {
			problems = append(problems, fmt.Sprintf("menu item %s: no such label", it))
		}
	}
	if chooseDefault != "" && !slices.Contains(items, chooseDefault) {
		problems = append(problems, fmt.Sprintf("choose --default %s: no such item", chooseDefault))
	}
	return problems
}

// The checker itself must catch what it claims to.
func TestCheckIPXECatches(t *testing.T) {
	for _, s := range []string{
		"echo hi\n",
		"#!ipxe\nsanbot\n",
		"#!ipxe\ngoto nowhere\n",
		"#!ipxe\nsanboot --file x\n",
		"#!ipxe\nsanboot ||\n",
		"#!ipxe\nchoose --default san selected\n:san\n",
		"#!ipxe\nsanboot --filename \\EFI\\\n",
		"#!ipxe\necho a||b\n",
		"#!ipxe\nmenu m\nitem x X\n",
	} {
		if p := checkIPXE(s); len(p) == 0 {
			t.Errorf("checkIPXE(%q) found nothing", s)
		}
	}
}

func TestScripts(t *testing.T) {
	r := newTestTree(t).resolver(t)
	for _, tc := range []struct {
		mac       string
		kind      Kind
		want      []string // lines that must appear
		forbidden []string
	}{
		{"52-54-00-00-00-01", KindScript,
			[]string{"sanboot || goto failed"},
			[]string{"sanboot iscsi:", "--filename"}},
		{"52-54-00-00-00-02", KindScript,
			[]string{`sanboot --filename \EFI\debian\grubx64.efi || goto failed`, "sanboot || goto failed",
				"iseq ${platform} efi && goto san_efi || goto san"},
			[]string{"sanboot iscsi:"}},
		{"52-54-00-00-00-03", KindScript,
			[]string{"sanboot --no-describe --drive 0x80 || goto failed", "exit"},
			[]string{"sanboot iscsi:", "sanboot ||"}},
		{"52-54-00-00-00-04", KindScript,
			[]string{"item san Boot from SAN (iqn.2026-11.example.lab:lab1)",
				"choose --default san --timeout 10000 selected || goto shell",
				"sanboot iscsi:198.18.0.1::3261:0:iqn.2026-11.example.lab:lab1 || goto failed",
				`sanboot --filename \EFI\redhat\grub.efi iscsi:198.18.0.1::3261:0:iqn.2026-11.example.lab:lab1 || goto failed`,
				"item local Boot from local disk", "item shell iPXE shell", "item reboot Reboot"},
			nil},
		{"52-54-00-00-00-06", KindScript, // menu without a root: no SAN entry
			[]string{"choose --default local --timeout 10000 selected || goto shell"},
			[]string{"item san", "sanboot iscsi:", "sanboot ||"}},
		{"52-54-00-00-00-05", KindScript, []string{"shell"}, []string{"sanboot"}},
		{"02-00-00-ab-cd-ef", KindUnknown,
			[]string{"item --gap MAC address: 02-00-00-ab-cd-ef", "item --gap IP address:  198.18.0.200",
				`item --gap   mac  = "02:00:00:ab:cd:ef"`, `item --gap   name = "host-abcdef"`},
			[]string{"sanboot", "iqn.", "iscsi:"}},
	} {
		mac, err := net.ParseMAC(tc.mac)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"boot/" + tc.mac + ".ipxe", "boot/" + mac.String() + ".ipxe", "boot/" + strings.ToUpper(tc.mac) + ".ipxe"} {
			got, f := readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.200"), MAC: mac}, name)
			if f.Kind != tc.kind {
				t.Errorf("%s: kind %s, want %s", name, f.Kind, tc.kind)
			}
			for _, p := range checkIPXE(got) {
				t.Errorf("%s: %s\n%s", name, p, got)
			}
			lines := strings.Split(got, "\n")
			for _, w := range tc.want {
				if !slices.Contains(lines, w) {
					t.Errorf("%s: no line %q in\n%s", name, w, got)
				}
			}
			for _, w := range tc.forbidden {
				if strings.Contains(got, w) {
					t.Errorf("%s: contains %q:\n%s", name, w, got)
				}
			}
		}
	}
}

// Every template, rendered for every boot mode and for values with
// characters iPXE would interpret, stays a valid script.
func TestScriptsHostileValues(t *testing.T) {
	tt := newTestTree(t)
	for i := range tt.inv.Hosts {
		tt.inv.Hosts[i].Name += " ${x} || reboot #"
		tt.inv.Hosts[i].EFIFilename = `\EFI\a b\` + "$" + `{c}\`
	}
	r := tt.resolver(t)
	for _, h := range tt.inv.Hosts {
		if h.Boot == inventory.BootLinux {
			// Its IQNs go on a kernel command line, where no rewriting
			// keeps their meaning: refused, to its own address too.
			c := Client{IP: h.IP.Addr}
			if f, err := r.Resolve(c, ScriptName(h.MAC.HardwareAddr)); err == nil || !strings.Contains(err.Error(), "kernel command line") {
				t.Errorf("%s: linux script with a hostile name: %v, want refused", h.MAC, err)
				if f != nil {
					f.Close()
				}
			}
			continue
		}
		got, _ := readAll(t, r, anyClient, ScriptName(h.MAC.HardwareAddr))
		for _, p := range checkIPXE(got) {
			t.Errorf("%s: %s\n%s", h.MAC, p, got)
		}
		if strings.Contains(got, "${x}") || strings.Contains(got, "|| reboot #") {
			t.Errorf("%s: value not neutralised:\n%s", h.MAC, got)
		}
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"a":               "a",
		"./a":             "a",
		"a//b":            "a/b",
		"a/./b/":          "a/b",
		"boot/x.ipxe":     "boot/x.ipxe",
		"9ffefde1/a.elf":  "9ffefde1/a.elf",
		"..a/b..":         "..a/b..",
		"dir/...":         "dir/...",
		"undionly.kpxe":   "undionly.kpxe",
		"pxelinux.cfg/01": "pxelinux.cfg/01",
	} {
		got, err := CleanName(in)
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The shipped example inventories give every host a script that passes the
// iPXE check, and every SAN-booting Pi a one-line cmdline.txt.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	var scripts, cmdlines int
	defer func() { t.Logf("%d example files: %d scripts, %d cmdline.txt checked", len(files), scripts, cmdlines) }()
	for _, file := range files {
		inv, _, err := inventory.Load(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		r, err := New(inv, zap.NewNop())
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r.SetMACFinder(hostAddrs(inv))
		for _, h := range inv.Hosts {
			got, _ := readAll(t, r, Client{IP: h.IP.Addr}, ScriptName(h.MAC.HardwareAddr))
			scripts++
			for _, p := range checkIPXE(got) {
				t.Errorf("%s host %s: %s\n%s", filepath.Base(file), h.Name, p, got)
			}
			if h.Serial != "" && h.BootsFromSAN() {
				got, _ := readAll(t, r, Client{IP: h.IP.Addr}, h.Serial+"/cmdline.txt")
				cmdlines++
				if strings.Count(got, "\n") != 1 || !strings.Contains(got, "iscsi_target_name="+inv.TargetIQN(&h)+" ") {
					t.Errorf("%s host %s: cmdline.txt %q", filepath.Base(file), h.Name, got)
				}
			}
		}
	}
}

// A boot = "linux" host's script has iPXE fetch its kernel and initramfs
// from netsan (over HTTP when it runs, else TFTP) and boot them with the
// command line a Pi's cmdline.txt has (the same code writes both), then
// the host's own cmdline. It carries the CHAP secret, so only the host's
// own address gets it.
func TestLinuxScript(t *testing.T) {
	tt := newTestTree(t)
	r := tt.resolver(t)
	linux1 := Client{IP: netip.MustParseAddr("198.18.0.18")}
	args := "ip=dhcp iscsi_initiator=iqn.2026-11.example.lab:linux1 iscsi_target_name=iqn.2026-11.example.lab:linux1" +
		" iscsi_target_ip=198.18.0.1 iscsi_target_port=3261 iscsi_username=linux1 iscsi_password=linux1-root-secret-0ddba11" +
		" root=/dev/sda2 rootfstype=ext4 rootwait console=ttyS0"
	got, f := readAll(t, r, linux1, "boot/52-54-00-00-00-08.ipxe")
	for _, want := range []string{
		"\nkernel tftp://198.18.0.1/debian12/vmlinuz initrd=initrd.img " + args + " || goto failed\n",
		"\ninitrd --name initrd.img tftp://198.18.0.1/debian12/initrd.img || goto failed\n",
		"\nboot || goto failed\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "sanboot") || f.Kind != KindScript || f.Host != "linux1" {
		t.Errorf("script (%s, %s):\n%s", f.Kind, f.Host, got)
	}
	// The Pi's cmdline.txt is the same parameters, from the same code.
	pi, _ := readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.21")}, "9ffefde1/cmdline.txt")
	if !strings.Contains(pi, " ip=dhcp iscsi_initiator=iqn.2026-11.example.lab:pi1 ") {
		t.Errorf("pi1 cmdline.txt: %q", pi)
	}

	for _, ip := range []string{"198.18.0.200", "198.18.0.11"} {
		if _, err := r.Resolve(Client{IP: netip.MustParseAddr(ip)}, "boot/52-54-00-00-00-08.ipxe"); !errors.Is(err, ErrForbidden) {
			t.Errorf("linux1's script to %s: %v, want ErrForbidden", ip, err)
		}
	}
	// node1 boots from SAN: its script has no secret, whoever asks.
	if _, err := r.Resolve(Client{IP: netip.MustParseAddr("198.18.0.200")}, "boot/52-54-00-00-00-01.ipxe"); err != nil {
		t.Errorf("node1's script: %v", err)
	}

	// With [http], the kernel and initramfs come over HTTP, from the
	// address the script was asked at.
	httpInv := tt.parseWith(t, "authoritative", "\n[http]\nlisten = \"0.0.0.0:8080\"\n")
	if err := r.Reload(httpInv); err != nil {
		t.Fatal(err)
	}
	got, _ = readAll(t, r, Client{IP: linux1.IP, Local: netip.MustParseAddr("198.18.0.2")}, "boot/52-54-00-00-00-08.ipxe")
	if !strings.Contains(got, "\nkernel http://198.18.0.2:8080/debian12/vmlinuz initrd=initrd.img ip=dhcp ") ||
		!strings.Contains(got, "\ninitrd --name initrd.img http://198.18.0.2:8080/debian12/initrd.img ") {
		t.Errorf("script with [http]:\n%s", got)
	}

	// A secret iPXE's command line would not pass as written is refused,
	// not mangled into a login that fails.
	httpInv.HostByName("linux1").CHAP.Secret = "linux1-secret-$with{expansion}"
	if _, err := r.Resolve(linux1, "boot/52-54-00-00-00-08.ipxe"); err == nil || !strings.Contains(err.Error(), "iPXE's command line") {
		t.Errorf("a secret with $: %v, want a refusal", err)
	}
}
