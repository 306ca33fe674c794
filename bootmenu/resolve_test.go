package bootmenu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/netsan/netsan/inventory"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func readAll(t *testing.T, r *Resolver, c Client, name string) (string, *File) {
	t.Helper()
	f, err := r.Resolve(c, name)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %q: %v", name, err)
	}
	if int64(len(b)) != f.Size() {
		t.Errorf("%q: Size() = %d, read %d bytes", name, f.Size(), len(b))
	}
	return string(b), f
}

var anyClient = Client{IP: netip.MustParseAddr("198.18.0.200")}

func TestResolveFiles(t *testing.T) {
	r := newTestTree(t).resolver(t)
	for _, tc := range []struct {
		client Client
		name   string
		want   string
		kind   Kind
		host   string
	}{
		{anyClient, "undionly.kpxe", "UNDI loader", KindLoader, ""},
		{Client{IP: netip.MustParseAddr("198.18.0.11")}, "ipxe.efi", "EFI loader", KindLoader, "node1"},
		{anyClient, "hello.txt", "hello from root", KindFile, ""},
		{Client{IP: anyClient.IP, MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 3}}, "hello.txt", "hello from root", KindFile, "desk1"},
		{anyClient, "./hello.txt", "hello from root", KindFile, ""},
		{anyClient, "sub//deep.txt", "deep file", KindFile, ""},
		{anyClient, "sub/deep.txt", "deep file", KindFile, ""},
		// Pi prefixes: the serial's own file first, then the shared one.
		{anyClient, "9ffefde1/start4.elf", "pi1 start4", KindFile, "pi1"},
		{anyClient, "9ffefde1/hello.txt", "hello from root", KindFile, "pi1"},
		{anyClient, "9ffefde2/start4.elf", "shared start4", KindFile, "pi2"},
		// A Pi missing from the inventory still gets the shared files.
		{anyClient, "0badc0de/start4.elf", "shared start4", KindFile, ""},
		// boot = "local" Pi: its own cmdline.txt, not a generated one.
		{anyClient, "9ffefde3/cmdline.txt", "pi3 own cmdline", KindFile, "pi3"},
	} {
		got, f := readAll(t, r, tc.client, tc.name)
		if got != tc.want || f.Kind != tc.kind || f.Host != tc.host {
			t.Errorf("%q: got %q kind %s host %q; want %q kind %s host %q",
				tc.name, got, f.Kind, f.Host, tc.want, tc.kind, tc.host)
		}
	}
}

func TestResolveRefuses(t *testing.T) {
	tt := newTestTree(t)
	// Symlinks: one pointing out of the root (absolute and relative), one
	// inside it that stays in and must work, and a FIFO that must not hang.
	if err := os.Symlink(filepath.Join(tt.dir, "secret.txt"), filepath.Join(tt.root, "abs-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret.txt", filepath.Join(tt.root, "rel-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(tt.root, "etc-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello.txt", filepath.Join(tt.root, "in-link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(tt.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := tt.resolver(t)
	got, _ := readAll(t, r, anyClient, "in-link")
	if got != "hello from root" {
		t.Errorf("in-link: %q", got)
	}
	for _, tc := range []struct {
		name string
		want error
	}{
		{"../secret.txt", ErrBadName},
		{"sub/../../secret.txt", ErrBadName},
		{"/etc/passwd", ErrBadName},
		{"//etc/passwd", ErrBadName},
		{"hello.txt\x00.png", ErrBadName},
		{`..\secret.txt`, ErrBadName},
		{`sub\deep.txt`, ErrBadName},
		{"", ErrBadName},
		{".", ErrBadName},
		{"abs-out", ErrBadName},
		{"rel-out", ErrBadName},
		{"etc-link/passwd", ErrBadName},
		{"9ffefde1/../../secret.txt", ErrBadName},
		{"9ffefde1/rel-out", ErrBadName},
		{"fifo", ErrBadName},
		{"hello\ttxt", ErrBadName},
		{"missing.txt", fs.ErrNotExist},
		{"sub", fs.ErrNotExist},
		{"sub/", fs.ErrNotExist},
		{"qemu/nothing.rom", fs.ErrNotExist},
	} {
		f, err := r.Resolve(anyClient, tc.name)
		if err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			t.Errorf("Resolve(%q) = %q, want error %v", tc.name, b, tc.want)
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("Resolve(%q): %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Loaders are found by base name only: ipxe_dir's subdirectories are not served.
func TestLoaderBaseNameOnly(t *testing.T) {
	tt := newTestTree(t)
	if err := os.MkdirAll(filepath.Join(tt.ipxe, "qemu"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tt.ipxe, "qemu", "rom.rom"), []byte("rom"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's ipxe.efi is a symlink to /boot/ipxe.efi: links in ipxe_dir
	// are followed, as only base names are looked up there.
	if err := os.Symlink(filepath.Join(tt.dir, "secret.txt"), filepath.Join(tt.ipxe, "linked.efi")); err != nil {
		t.Fatal(err)
	}
	r := tt.resolver(t)
	if _, err := r.Resolve(anyClient, "qemu/rom.rom"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("qemu/rom.rom: %v, want not found", err)
	}
	if got, f := readAll(t, r, anyClient, "linked.efi"); got != "outside the root" || f.Kind != KindLoader {
		t.Errorf("linked.efi: %q %s", got, f.Kind)
	}
}

func TestPiCmdline(t *testing.T) {
	tt := newTestTree(t)
	// pi1's image carries an MBR with disk signature 0x5e3da5f1 and two partitions.
	var mbr [512]byte
	binary.LittleEndian.PutUint32(mbr[440:], 0x5e3da5f1)
	mbr[446+4] = 0x0c
	mbr[446+16+4] = 0x83
	mbr[510], mbr[511] = 0x55, 0xaa
	if err := os.MkdirAll(filepath.Join(tt.dir, "roots"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tt.dir, "roots", "pi1.img"), mbr[:], 0o644); err != nil {
		t.Fatal(err)
	}
	r := tt.resolver(t)

	pi1 := Client{IP: netip.MustParseAddr("198.18.0.21")}
	got, f := readAll(t, r, pi1, "9ffefde1/cmdline.txt")
	want := "console=serial0,115200 console=tty1 ip=dhcp" +
		" iscsi_initiator=iqn.2026-11.example.lab:pi1 iscsi_target_name=iqn.2026-11.example.lab:pi1" +
		" iscsi_target_ip=198.18.0.1 iscsi_target_port=3261" +
		" iscsi_username=pi1 iscsi_password=pi1-root-secret-c0ffee" +
		" root=PARTUUID=5e3da5f1-02 rootfstype=ext4 rootwait fsck.repair=yes\n"
	if got != want || f.Kind != KindCmdline || f.Host != "pi1" || f.MAC != "dc:a6:32:00:00:01" {
		t.Errorf("pi1 cmdline.txt:\n got %q (%s, %s)\nwant %q", got, f.Kind, f.Host, want)
	}

	// Mutual CHAP: the target's name defaults to its IQN; no image: /dev/sda2.
	got, _ = readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.22")}, "9ffefde2/cmdline.txt")
	for _, w := range []string{
		" iscsi_username=pi2 iscsi_password=pi2-root-secret-decade",
		" iscsi_in_username=iqn.2026-11.example.lab:pi2 iscsi_in_password=target-secret-0123",
		" root=/dev/sda2 ",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("pi2 cmdline.txt %q lacks %q", got, w)
		}
	}
	if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Errorf("pi2 cmdline.txt is not one line: %q", got)
	}

	// The CHAP secret goes to the Pi's own MAC only, whoever hands out
	// the addresses: another machine, an address whose MAC is unknown, and
	// a resolver that cannot tell (no MACFinder) are refused and logged.
	core, logs := observer.New(zap.InfoLevel)
	r.log = zap.New(core)
	stranger := net.HardwareAddr{0x02, 0, 0x5e, 0, 0, 0x50}
	r.SetMACFinder(addrTable{
		netip.MustParseAddr("198.18.0.21"): {0xdc, 0xa6, 0x32, 0, 0, 1},
		netip.MustParseAddr("198.18.0.50"): stranger,
		netip.MustParseAddr("198.18.0.23"): {0xdc, 0xa6, 0x32, 0, 0, 3},
	})
	for _, mode := range []string{"authoritative", "proxy"} {
		if err := r.Reload(tt.parse(t, mode)); err != nil {
			t.Fatal(err)
		}
		if got, _ := readAll(t, r, pi1, "9ffefde1/cmdline.txt"); !strings.Contains(got, "iscsi_password=pi1-root-secret-c0ffee") {
			t.Errorf("%s: pi1's own cmdline.txt: %q", mode, got)
		}
		for _, c := range []struct{ ip, mac string }{{"198.18.0.50", stranger.String()}, {"198.18.0.200", ""}} {
			f, err := r.Resolve(Client{IP: netip.MustParseAddr(c.ip)}, "9ffefde1/cmdline.txt")
			if !errors.Is(err, ErrForbidden) || f != nil {
				t.Errorf("%s: pi1 cmdline.txt to %s: %v, want ErrForbidden", mode, c.ip, err)
			}
			line := logs.FilterMessage("secret refused").Filter(func(e observer.LoggedEntry) bool {
				return e.ContextMap()["ip"] == c.ip
			}).All()
			if len(line) != 1 || line[0].Level != zap.WarnLevel || line[0].ContextMap()["host"] != "pi1" ||
				line[0].ContextMap()["mac"] != c.mac {
				t.Errorf("%s: refusal to %s logged as %+v, want one WARN with host pi1, mac %q", mode, c.ip, line, c.mac)
			}
		}
		logs.TakeAll()
		// A Pi without CHAP is not held back: pi3 boots locally, its own file.
		if got, _ := readAll(t, r, Client{IP: netip.MustParseAddr("198.18.0.50")}, "9ffefde3/cmdline.txt"); got != "pi3 own cmdline" {
			t.Errorf("%s: pi3 cmdline.txt: %q", mode, got)
		}
	}
	r.finder.Store(nil)
	if _, err := r.Resolve(pi1, "9ffefde1/cmdline.txt"); !errors.Is(err, ErrForbidden) {
		t.Errorf("without a MACFinder: %v, want ErrForbidden", err)
	}
}

func TestReloadSwaps(t *testing.T) {
	tt := newTestTree(t)
	r := tt.resolver(t)
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	got, f := readAll(t, r, anyClient, "boot/52-54-00-00-00-01.ipxe")
	if f.Kind != KindScript || !strings.Contains(got, "node1") {
		t.Fatalf("before reload: %s %q", f.Kind, got)
	}
	inv := tt.parse(t, "authoritative")
	inv.Hosts = inv.Hosts[1:] // node1 removed
	if err := r.Reload(inv); err != nil {
		t.Fatal(err)
	}
	got, f = readAll(t, r, Client{IP: anyClient.IP, MAC: mac}, "boot/52-54-00-00-00-01.ipxe")
	if f.Kind != KindUnknown || strings.Contains(got, "node1") {
		t.Errorf("after reload: %s %q", f.Kind, got)
	}
	// A broken template override fails the reload and keeps the old state.
	if err := os.MkdirAll(filepath.Join(tt.dir, "templates", "ipxe"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tt.dir, "templates", "ipxe", "san.ipxe"), []byte("#!ipxe\n{{.Nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(tt.inv); err == nil {
		t.Fatal("reload with a broken template succeeded")
	}
	if _, f := readAll(t, r, anyClient, "boot/52-54-00-00-00-01.ipxe"); f.Kind != KindUnknown {
		t.Errorf("failed reload changed the state: %s", f.Kind)
	}
}

// TestServiceReload: a server's Service warns, once a reload changes its
// listen address, that the new one waits for a restart, unless the server
// was handed its socket; a failed reload names the protocol. ListenAddrs
// tells the address Serve bound, or nil when it bound none.
func TestServiceReload(t *testing.T) {
	tt := newTestTree(t)
	for _, handed := range []bool{false, true} {
		core, logs := observer.New(zapcore.InfoLevel)
		svc, err := NewService("http", tt.parseWith(t, "authoritative", "[http]\nlisten = \":8080\"\n"), zap.New(core),
			func(inv *inventory.Inventory) string { return inv.HTTP.Listen }, func() bool { return handed })
		if err != nil {
			t.Fatal(err)
		}
		if got := svc.Listen(); got != ":8080" {
			t.Errorf("Listen = %q, want :8080", got)
		}
		if err := svc.Reload(tt.parseWith(t, "authoritative", "[http]\nlisten = \":8080\"\n[[host]]\nname = \"x1\"\nmac = \"52:54:00:00:00:99\"\nboot = \"local\"\n")); err != nil {
			t.Fatal(err)
		}
		if err := svc.Reload(tt.parseWith(t, "authoritative", "[http]\nlisten = \":8081\"\n")); err != nil {
			t.Fatal(err)
		}
		warned := logs.FilterMessage("http.listen changed; the new address is used after a restart").All()
		if handed && len(warned) != 0 || !handed && (len(warned) != 1 || warned[0].ContextMap()["new"] != ":8081" || warned[0].LoggerName != "http") {
			t.Errorf("handed %v: warnings %+v", handed, warned)
		}
	}

	tftp := func() Service {
		svc, err := NewService("tftp", tt.inv, zap.NewNop(), func(inv *inventory.Inventory) string { return inv.TFTP.Listen }, func() bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	svc, failed := tftp(), tftp()
	failed.Bound(nil)
	if got := failed.ListenAddrs(); got != nil {
		t.Errorf("ListenAddrs after a failed bind = %v, want nil", got)
	}
	if err := os.MkdirAll(filepath.Join(tt.dir, "templates", "ipxe"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tt.dir, "templates", "ipxe", "san.ipxe"), []byte("#!ipxe\n{{.Nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := svc.Reload(tt.inv); err == nil || !strings.HasPrefix(err.Error(), "tftp: ") {
		t.Errorf("reload with a broken template: %v, want a tftp: error", err)
	}
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6969}
	go svc.Bound(addr)
	if got := svc.ListenAddrs(); len(got) != 1 || got[0] != addr {
		t.Errorf("ListenAddrs = %v, want %v", got, addr)
	}
}

func TestTemplateOverride(t *testing.T) {
	tt := newTestTree(t)
	if err := os.MkdirAll(filepath.Join(tt.dir, "templates", "ipxe"), 0o755); err != nil {
		t.Fatal(err)
	}
	override := "#!ipxe\necho custom {{.Name}}\nsanboot\n"
	if err := os.WriteFile(filepath.Join(tt.dir, "templates", "ipxe", "san.ipxe"), []byte(override), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(tt.inv, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, r, anyClient, "boot/52-54-00-00-00-01.ipxe"); got != "#!ipxe\necho custom node1\nsanboot\n" {
		t.Errorf("override: %q", got)
	}
	// Templates not overridden stay the embedded ones.
	if got, _ := readAll(t, r, anyClient, "boot/52-54-00-00-00-03.ipxe"); !strings.Contains(got, "--drive 0x80") {
		t.Errorf("local script: %q", got)
	}
}

// ScriptName and ParseScriptName are one contract: what dhcpd hands iPXE is
// what Resolve recognises, in hyphens or colons, and nothing else is. So are
// GRUBConfigName and ParseGRUBConfigName (the MAC as GRUB's
// $net_default_mac has it): nothing else is a host's GRUB configuration.
func TestMACFileNames(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	for _, tc := range []struct {
		name   string
		format func(net.HardwareAddr) string
		parse  func(string) (net.HardwareAddr, bool)
		want   string
		alike  []string // other spellings of want
		others []string // names that are not one
	}{
		{"ScriptName", ScriptName, ParseScriptName, "boot/52-54-00-ab-cd-ef.ipxe",
			[]string{"boot/52:54:00:ab:cd:ef.ipxe", "boot/52-54-00-AB-CD-EF.ipxe"},
			[]string{"52-54-00-ab-cd-ef.ipxe", "boot/52-54-00-ab-cd-ef", "boot/52-54-00-ab-cd-ef.efi",
				"boot/x.ipxe", "boot/00-00-00-00-00-00-00-00.ipxe", "sub/boot/52-54-00-ab-cd-ef.ipxe"}},
		{"GRUBConfigName", GRUBConfigName, ParseGRUBConfigName, "grub/52-54-00-ab-cd-ef.cfg",
			[]string{"grub/52:54:00:ab:cd:ef.cfg", "grub/52-54-00-AB-CD-EF.cfg"},
			[]string{"grub/grub.cfg", "grub/.cfg", "52-54-00-ab-cd-ef.cfg", "grub/52-54-00-ab-cd-ef", "x/grub/52-54-00-ab-cd-ef.cfg"}},
	} {
		if got := tc.format(mac); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
		}
		for _, name := range append([]string{tc.format(mac)}, tc.alike...) {
			if got, ok := tc.parse(name); !ok || got.String() != mac.String() {
				t.Errorf("Parse%s(%q) = %v, %v; want %s", tc.name, name, got, ok, mac)
			}
		}
		for _, name := range tc.others {
			if got, ok := tc.parse(name); ok {
				t.Errorf("Parse%s(%q) = %s, want none", tc.name, name, got)
			}
		}
	}
}

// Each error of Resolve maps to one answer over TFTP and HTTP.
func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Refusal
	}{
		{fmt.Errorf("x: %w", ErrNotFound), Refusal{"not_found", "file not found", http.StatusNotFound, zapcore.InfoLevel}},
		{fmt.Errorf("x: %w", ErrBadName), Refusal{"refused", "access violation", http.StatusBadRequest, zapcore.WarnLevel}},
		{fmt.Errorf("x: %w: %w", ErrForbidden, errors.New("y")), Refusal{"forbidden", "access violation", http.StatusForbidden, zapcore.WarnLevel}},
		{errors.New("stat: I/O error"), Refusal{"error", "server error", http.StatusInternalServerError, zapcore.ErrorLevel}},
	} {
		if got := Refuse(tc.err); got != tc.want {
			t.Errorf("Refuse(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
	}
}
