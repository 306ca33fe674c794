package dhcpd

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/inventory/inventorytest"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

var (
	macNode1 = mustMAC("52:54:00:00:00:01") // san, CHAP (mutual)
	macNode2 = mustMAC("52:54:00:00:00:07") // local with a root, no CHAP
	macPi    = mustMAC("dc:a6:32:00:00:01") // Pi by prefix, in the inventory
	macPiSer = mustMAC("02:00:00:00:00:24") // Pi by serial only
	macStray = mustMAC("52:54:00:99:99:99") // unknown
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// testInventory is a lab's inventory, parsed as inventory.Load would;
// ipxeDir holds the loaders given; there is no [http].
func testInventory(t testing.TB, mode string, loaders ...string) *inventory.Inventory {
	t.Helper()
	return bootInventory(t, mode, false, loaders, nil)
}

// bootInventory is testInventory with [http] on (port 8080) when http is
// set, and a tftp.root holding rootFiles.
func bootInventory(t testing.TB, mode string, http bool, loaders, rootFiles []string) *inventory.Inventory {
	t.Helper()
	ipxeDir, root := t.TempDir(), t.TempDir()
	for _, f := range append(dirFiles(ipxeDir, loaders), dirFiles(root, rootFiles)...) {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("loader"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	httpSection := ""
	if http {
		httpSection = "\n[http]\nlisten = \"0.0.0.0:8080\"\n"
	}
	dir := t.TempDir()
	inv := inventorytest.Parse(t, dir, inventorytest.Server(dir)+fmt.Sprintf(`
[dhcp]
mode   = %q
subnet = "198.18.0.0/24"
range  = ["198.18.0.100", "198.18.0.102"]
router = "198.18.0.1"
dns    = ["198.18.0.1"]
domain = "lab.example"

[tftp]
ipxe_dir = %q
root     = %q
%s
[iscsi]
base_iqn = "iqn.2026-11.example.lab"
`, mode, ipxeDir, root, httpSection)+inventorytest.Hosts(t, "node1", "node2", "pi1", "pi4"))
	inv.HostByName("node1").CHAP = &inventory.CHAP{User: "node1", Secret: "node1-secret-123", MutualSecret: "target-secret-456"}
	return inv
}

func dirFiles(dir string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out
}

// request builds a client message; mods add options.
func request(t testing.TB, mac net.HardwareAddr, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	pxeBIOS  = dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))
	archBIOS = dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))
	archEFI  = dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))
	archARM  = dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))
	ipxeUC   = dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")))
	ipxe175  = dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optIPXE), []byte{19, 1, 1}))
)

func mustConfig(t testing.TB, inv *inventory.Inventory) *config {
	t.Helper()
	c, err := newConfig(inv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newExchange(t testing.TB, inv *inventory.Inventory) *exchange {
	t.Helper()
	c := mustConfig(t, inv)
	ls, err := openLeaseTable(inv.Server.DataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &exchange{cfg: c, leases: ls, now: time.Unix(1_800_000_000, 0), kind: KindOther}
}

func reply(t testing.TB, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	r, err := dhcpv4.NewReplyFromRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestClassify(t *testing.T) {
	inv := testInventory(t, inventory.ModeAuthoritative)
	for _, tc := range []struct {
		name string
		mac  net.HardwareAddr
		mods []dhcpv4.Modifier
		kind Kind
		arch iana.Arch
		host string
	}{
		{"os client", macStray, nil, KindOther, 0, ""},
		{"pxe bios", macNode1, []dhcpv4.Modifier{pxeBIOS, archBIOS}, KindPXE, 0, "node1"},
		{"pxe uefi", macNode1, []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), archEFI}, KindPXE, 7, "node1"},
		{"arch from vendor class only", macStray, []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016"))}, KindPXE, 9, ""},
		{"ipxe by user class", macNode1, []dhcpv4.Modifier{pxeBIOS, archBIOS, ipxeUC}, KindIPXE, 0, "node1"},
		{"ipxe by rfc3004 user class", macNode1, []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRFC3004UserClass([]string{"iPXE"}))}, KindIPXE, 0, "node1"},
		{"ipxe by option 175", macStray, []dhcpv4.Modifier{pxeBIOS, archEFI, ipxe175}, KindIPXE, 7, ""},
		{"pi by prefix, bios vendor class", macPi, []dhcpv4.Modifier{pxeBIOS, archBIOS}, KindPi, 0, "pi1"},
		{"unknown pi by prefix", mustMAC("b8:27:eb:12:34:56"), []dhcpv4.Modifier{pxeBIOS}, KindPi, 0, ""},
		{"pi by serial", macPiSer, []dhcpv4.Modifier{pxeBIOS}, KindPi, 0, "pi4"},
		{"pi running ipxe is ipxe", macPi, []dhcpv4.Modifier{ipxeUC}, KindIPXE, 0, "pi1"},
		{"pi with uefi firmware, pxe", macPi, []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")), archARM}, KindPXE, 11, "pi1"},
		{"pi with uefi firmware, http boot", macPiSer, httpClient(iana.EFI_ARM64_HTTP), KindHTTPBoot, 19, "pi4"},
		{"http boot by vendor class alone", macStray, []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"))}, KindHTTPBoot, 16, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t, inv)
			req := request(t, tc.mac, dhcpv4.MessageTypeDiscover, tc.mods...)
			if stop := x.classify(req, reply(t, req)); stop {
				t.Fatalf("classify stopped: %s", x.reason)
			}
			if x.kind != tc.kind || x.arch != tc.arch || x.hostName() != tc.host {
				t.Errorf("got kind %s arch %d host %q, want %s %d %q", x.kind, x.arch, x.hostName(), tc.kind, tc.arch, tc.host)
			}
		})
	}
	t.Run("not ethernet", func(t *testing.T) {
		x := newExchange(t, inv)
		req := request(t, macNode1, dhcpv4.MessageTypeDiscover)
		req.HWType = iana.HWTypeInfiniband
		if !x.classify(req, reply(t, req)) || x.send {
			t.Errorf("an InfiniBand client was not ignored")
		}
	})
}

func TestBoot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		loaders []string
		kind    Kind
		arch    iana.Arch
		file    string // "" with stop = no offer
		stop    bool
	}{
		{"bios", []string{"undionly.kpxe", "ipxe.efi"}, KindPXE, iana.INTEL_X86PC, "undionly.kpxe", false},
		{"uefi x64", []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}, KindPXE, iana.EFI_X86_64, "ipxe.efi", false},
		{"uefi bc", []string{"ipxe.efi"}, KindPXE, iana.EFI_BC, "ipxe.efi", false},
		{"uefi ia32", []string{"ipxe.efi"}, KindPXE, iana.EFI_IA32, "ipxe.efi", false},
		{"uefi with only snponly", []string{"snponly.efi"}, KindPXE, iana.EFI_X86_64, "snponly.efi", false},
		{"arm64 with a loader", []string{"ipxe.efi", "snp-arm64.efi"}, KindPXE, iana.EFI_ARM64, "snp-arm64.efi", false},
		{"arm64 without a loader", []string{"undionly.kpxe", "ipxe.efi"}, KindPXE, iana.EFI_ARM64, "", true},
		{"bios loader missing", []string{"ipxe.efi"}, KindPXE, iana.INTEL_X86PC, "", true},
		{"itanium", []string{"undionly.kpxe", "ipxe.efi"}, KindPXE, iana.EFI_ITANIUM, "", true},
		{"ipxe gets its script, not the loader", []string{"undionly.kpxe"}, KindIPXE, iana.INTEL_X86PC, "tftp://198.18.0.1/boot/52-54-00-00-00-01.ipxe", false},
		{"os client gets nothing to boot", []string{"undionly.kpxe"}, KindOther, 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t, testInventory(t, inventory.ModeAuthoritative, tc.loaders...))
			x.kind, x.arch = tc.kind, tc.arch
			req := request(t, macNode1, dhcpv4.MessageTypeDiscover)
			resp := reply(t, req)
			stop := x.boot(req, resp)
			if stop != tc.stop {
				t.Fatalf("stop = %v (%s), want %v", stop, x.reason, tc.stop)
			}
			if stop {
				if x.send || x.level != zapcore.WarnLevel {
					t.Errorf("no-loader case: send %v level %v, want no reply and a warning", x.send, x.level)
				}
				return
			}
			if resp.BootFileName != tc.file {
				t.Errorf("file %q, want %q", resp.BootFileName, tc.file)
			}
			wantSI := net.IPv4(198, 18, 0, 1)
			if tc.kind == KindOther {
				wantSI = net.IPv4zero
			}
			if !resp.ServerIPAddr.Equal(wantSI) {
				t.Errorf("siaddr %s, want %s", resp.ServerIPAddr, wantSI)
			}
			if tc.kind != KindOther && resp.TFTPServerName() != "198.18.0.1" {
				t.Errorf("option 66 %q, want 198.18.0.1", resp.TFTPServerName())
			}
		})
	}
}

func TestScriptURL(t *testing.T) {
	inv := testInventory(t, inventory.ModeAuthoritative)
	inv.TFTP.Listen = "0.0.0.0:6969"
	c := mustConfig(t, inv)
	// No [http]: the script comes over TFTP, with its port.
	if got, want := c.scriptURL(macNode2), "tftp://198.18.0.1:6969/boot/52-54-00-00-00-07.ipxe"; got != want {
		t.Errorf("script URL %q, want %q", got, want)
	}
}

// subopts decodes an encapsulated option (175 or 43) into code → value.
func subopts(t testing.TB, b []byte) map[byte][]byte {
	t.Helper()
	m := map[byte][]byte{}
	for len(b) > 0 {
		if b[0] == pxeEnd {
			break
		}
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			t.Fatalf("truncated sub-option in % x", b)
		}
		m[b[0]] = b[2 : 2+int(b[1])]
		b = b[2+int(b[1]):]
	}
	return m
}

func TestSAN(t *testing.T) {
	const (
		rootPath1 = "iscsi:198.18.0.1::3260:0:iqn.2026-11.example.lab:node1"
		iqn1      = "iqn.2026-11.example.lab:node1"
		iqn2      = "iqn.2026-11.example.lab:node2"
	)
	type want struct {
		iqn      string // option 203, "" = absent
		rootPath string // option 17
		sub      map[byte]string
	}
	for _, tc := range []struct {
		name  string
		mode  string
		mac   net.HardwareAddr
		kind  Kind
		want  want
		linux bool // node1 boots "linux"
	}{
		{"ipxe linux host: 203, no root-path, no keep-san, no chap (its script has it)", inventory.ModeAuthoritative, macNode1, KindIPXE, want{iqn1, "", map[byte]string{
			optIPXENoPXEDHCP: "\x01"}}, true},
		{"ipxe san host with mutual chap", inventory.ModeAuthoritative, macNode1, KindIPXE, want{iqn1, rootPath1, map[byte]string{
			optIPXEKeepSAN: "\x01", optIPXENoPXEDHCP: "\x01", optIPXEUsername: "node1", optIPXEPassword: "node1-secret-123",
			optIPXERUsername: "iqn.2026-11.example.lab:node1", optIPXERPassword: "target-secret-456"}}, false},
		{"ipxe san host in proxy mode: no no-pxedhcp", inventory.ModeProxy, macNode1, KindIPXE, want{iqn1, rootPath1, map[byte]string{
			optIPXEKeepSAN: "\x01", optIPXEUsername: "node1", optIPXEPassword: "node1-secret-123",
			optIPXERUsername: "iqn.2026-11.example.lab:node1", optIPXERPassword: "target-secret-456"}}, false},
		{"ipxe local host: 203 only, no root-path, no keep-san, no chap", inventory.ModeAuthoritative, macNode2, KindIPXE, want{iqn2, "", map[byte]string{
			optIPXENoPXEDHCP: "\x01"}}, false},
		{"pxe firmware: 203 and root-path, no 175", inventory.ModeAuthoritative, macNode1, KindPXE, want{iqn1, rootPath1, nil}, false},
		{"unknown ipxe client: no iSCSI identity", inventory.ModeAuthoritative, macStray, KindIPXE, want{"", "", map[byte]string{
			optIPXENoPXEDHCP: "\x01"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := testInventory(t, tc.mode)
			if tc.linux {
				inv.HostByName("node1").Boot = inventory.BootLinux
			}
			x := newExchange(t, inv)
			req := request(t, tc.mac, dhcpv4.MessageTypeDiscover)
			resp := reply(t, req)
			x.classify(req, resp)
			x.kind = tc.kind
			if x.san(req, resp) {
				t.Fatal("san stopped the chain")
			}
			if got := string(resp.Options.Get(dhcpv4.GenericOptionCode(optISCSIInitIQN))); got != tc.want.iqn {
				t.Errorf("203 = %q, want %q", got, tc.want.iqn)
			}
			if got := resp.RootPath(); got != tc.want.rootPath {
				t.Errorf("17 = %q, want %q", got, tc.want.rootPath)
			}
			raw := resp.Options.Get(dhcpv4.GenericOptionCode(optIPXE))
			got := subopts(t, raw)
			if len(got) != len(tc.want.sub) {
				t.Errorf("175 has %d sub-options (% x), want %d", len(got), raw, len(tc.want.sub))
			}
			for code, v := range tc.want.sub {
				if string(got[code]) != v {
					t.Errorf("175.%d = %q, want %q", code, got[code], v)
				}
			}
			if _, ok := got[9]; ok {
				t.Error("175.9 skip-san-boot sent")
			}
		})
	}
}

func TestPi(t *testing.T) {
	for _, tc := range []struct {
		name string
		mac  net.HardwareAddr
		pi   bool
	}{
		{"pi by prefix", macPi, true},
		{"pi by serial", macPiSer, true},
		{"pc with the same vendor class", macNode1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t, testInventory(t, inventory.ModeAuthoritative, "undionly.kpxe"))
			req := request(t, tc.mac, dhcpv4.MessageTypeDiscover, pxeBIOS, archBIOS)
			resp := reply(t, req)
			for _, h := range []handler{(*exchange).classify, (*exchange).boot, (*exchange).pi} {
				if h(x, req, resp) {
					t.Fatalf("chain stopped: %s", x.reason)
				}
			}
			o43 := resp.Options.Get(dhcpv4.OptionVendorSpecificInformation)
			if !tc.pi {
				if o43 != nil || resp.BootFileName != "undionly.kpxe" {
					t.Errorf("PC got option 43 % x, file %q", o43, resp.BootFileName)
				}
				return
			}
			sub := subopts(t, o43)
			if want := append([]byte{0, 0, 17}, "Raspberry Pi Boot"...); !bytes.Equal(sub[pxeBootMenu], want) {
				t.Errorf("43.9 = %q, want %q", sub[pxeBootMenu], want)
			}
			if want := "\x00PXE"; string(sub[pxeMenuPrompt]) != want {
				t.Errorf("43.10 = %q, want %q", sub[pxeMenuPrompt], want)
			}
			if o43[len(o43)-1] != pxeEnd {
				t.Errorf("43 not terminated: % x", o43)
			}
			if resp.ClassIdentifier() != "PXEClient" || resp.TFTPServerName() != "198.18.0.1" ||
				!resp.ServerIPAddr.Equal(net.IPv4(198, 18, 0, 1)) || resp.BootFileName != "" {
				t.Errorf("pi reply: 60 %q, 66 %q, siaddr %s, file %q", resp.ClassIdentifier(), resp.TFTPServerName(), resp.ServerIPAddr, resp.BootFileName)
			}
		})
	}
}

// dora runs the whole chain as the server does.
func decideWith(t testing.TB, s *Server, req *dhcpv4.DHCPv4, pxePort bool, now time.Time) (*dhcpv4.DHCPv4, *exchange) {
	t.Helper()
	resp, x := s.decide(s.cfg.Load(), req, pxePort, now)
	if x.persist {
		if err := s.leases.sync(); err != nil {
			t.Fatal(err)
		}
	}
	return resp, x
}

func newTestServer(t testing.TB, inv *inventory.Inventory) *Server {
	t.Helper()
	s, err := New(inv, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAddress(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1)))
	reqIP := func(ip string) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
	type step struct {
		mac  net.HardwareAddr
		mt   dhcpv4.MessageType
		mods []dhcpv4.Modifier
		op   action
		ip   string // yiaddr expected ("" = 0.0.0.0)
	}
	for _, tc := range []struct {
		name   string
		static bool
		steps  []step
	}{
		{"known host: fixed address through DORA", false, []step{
			{macNode1, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.11"},
			{macNode1, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{sid, reqIP("198.18.0.11")}, "ack", "198.18.0.11"},
		}},
		{"known host asking another address is refused", false, []step{
			{macNode1, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "nak", ""},
		}},
		{"unknown client: pool, and the same address again", false, []step{
			{macStray, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.100"},
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{sid, reqIP("198.18.0.100")}, "ack", "198.18.0.100"},
			{macStray, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.100"},
			// a second client does not get it
			{mustMAC("02:00:00:00:01:01"), dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "offer", "198.18.0.101"},
			// nor may it take it by asking
			{mustMAC("02:00:00:00:01:02"), dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "nak", ""},
		}},
		{"renewal (ciaddr, no server id) extends the lease", false, []step{
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.101")}, "ack", "198.18.0.101"},
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{dhcpv4.WithClientIP(net.ParseIP("198.18.0.101"))}, "ack", "198.18.0.101"},
		}},
		{"request outside the subnet or pool is refused", false, []step{
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("192.0.2.7")}, "nak", ""},
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.50")}, "nak", ""},
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.17")}, "nak", ""},
		}},
		{"client that chose another server frees its offer", false, []step{
			{macStray, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.100"},
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 254))), reqIP("198.18.0.100")}, "ignore", ""},
			{mustMAC("02:00:00:00:01:01"), dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.100"},
		}},
		{"pool exhausted: no offer", false, []step{
			{mustMAC("02:00:00:00:02:01"), dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "ack", "198.18.0.100"},
			{mustMAC("02:00:00:00:02:02"), dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.101")}, "ack", "198.18.0.101"},
			{mustMAC("02:00:00:00:02:03"), dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.102")}, "ack", "198.18.0.102"},
			{mustMAC("02:00:00:00:02:04"), dhcpv4.MessageTypeDiscover, nil, "ignore", ""},
		}},
		{"declined address is quarantined", false, []step{
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "ack", "198.18.0.100"},
			{macStray, dhcpv4.MessageTypeDecline, []dhcpv4.Modifier{sid, reqIP("198.18.0.100")}, "decline", ""},
			{macStray, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.101"},
			{mustMAC("02:00:00:00:01:01"), dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "nak", ""},
		}},
		{"released address goes to the next client", false, []step{
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "ack", "198.18.0.100"},
			{macStray, dhcpv4.MessageTypeRelease, []dhcpv4.Modifier{sid, dhcpv4.WithClientIP(net.ParseIP("198.18.0.100"))}, "release", ""},
			{mustMAC("02:00:00:00:01:01"), dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "ack", "198.18.0.100"},
		}},
		{"relayed from the served subnet: answered; from another: not", false, []step{
			{macStray, dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.ParseIP("198.18.0.5"))}, "offer", "198.18.0.100"},
			{mustMAC("02:00:00:00:01:01"), dhcpv4.MessageTypeDiscover, []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.ParseIP("198.19.7.1"))}, "ignore", ""},
		}},
		{"host without an ip gets a pool address", false, []step{
			{macPiSer, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.100"},
			{macPiSer, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{sid, reqIP("198.18.0.100")}, "ack", "198.18.0.100"},
		}},
		{"inform: options, no address", false, []step{
			{macStray, dhcpv4.MessageTypeInform, []dhcpv4.Modifier{dhcpv4.WithClientIP(net.ParseIP("198.18.0.200"))}, "inform", ""},
		}},
		{"static-only: unknown clients get nothing, hosts their address", true, []step{
			{macStray, dhcpv4.MessageTypeDiscover, nil, "ignore", ""},
			{macStray, dhcpv4.MessageTypeRequest, []dhcpv4.Modifier{reqIP("198.18.0.100")}, "nak", ""},
			{macNode2, dhcpv4.MessageTypeDiscover, nil, "offer", "198.18.0.17"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := testInventory(t, inventory.ModeAuthoritative)
			if tc.static {
				inv.DHCP.Range = nil
			}
			inv.HostByName("pi4").IP = inventory.Addr{} // no fixed address
			s := newTestServer(t, inv)
			for i, st := range tc.steps {
				req := request(t, st.mac, st.mt, st.mods...)
				resp, x := decideWith(t, s, req, false, now)
				if x.op != st.op {
					t.Fatalf("step %d (%s %s): op %q (%s), want %q", i, st.mt, st.mac, x.op, x.reason, st.op)
				}
				if !x.send {
					continue
				}
				want := st.ip
				if want == "" {
					want = "0.0.0.0"
				}
				if got := resp.YourIPAddr.String(); got != want {
					t.Errorf("step %d: yiaddr %s, want %s", i, got, want)
				}
				if !resp.ServerIdentifier().Equal(net.IPv4(198, 18, 0, 1)) {
					t.Errorf("step %d: server id %v", i, resp.ServerIdentifier())
				}
				switch st.op {
				case "offer", "ack":
					if lt := resp.IPAddressLeaseTime(0); lt != time.Hour {
						t.Errorf("step %d: lease time %s", i, lt)
					}
					if m := resp.SubnetMask(); m.String() != "ffffff00" {
						t.Errorf("step %d: mask %s", i, m)
					}
				case "inform":
					if resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
						t.Errorf("step %d: INFORM reply carries a lease time", i)
					}
				}
			}
		})
	}
}

// TestDeclinedFixedAddress: a host's fixed address that a client declined
// is quarantined, and every answer says so: the NAK, the silence to a
// DISCOVER, MACOf.
func TestDeclinedFixedAddress(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestServer(t, testInventory(t, inventory.ModeAuthoritative))
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1)))
	fixed := dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.0.11")))
	if _, x := decideWith(t, s, request(t, macNode1, dhcpv4.MessageTypeDecline, sid, fixed), false, now); x.op != actDecline {
		t.Fatalf("decline: %s (%s)", x.op, x.reason)
	}
	resp, x := decideWith(t, s, request(t, macNode1, dhcpv4.MessageTypeRequest, fixed), false, now)
	if x.op != actNak || !strings.Contains(resp.Message(), "declined") || strings.Contains(resp.Message(), "leased to") {
		t.Errorf("request: %s %q, want a NAK saying the address was declined", x.op, resp.Message())
	}
	if _, x := decideWith(t, s, request(t, macNode1, dhcpv4.MessageTypeDiscover), false, now); x.op != actIgnore || !strings.Contains(x.reason, "declined") {
		t.Errorf("discover: %s (%s), want ignored as declined", x.op, x.reason)
	}
	if mac, err := s.MACOf(netip.MustParseAddr("198.18.0.11")); err == nil || !strings.Contains(err.Error(), "declined") {
		t.Errorf("MACOf: %v, %v; want an error saying the address was declined", mac, err)
	}
}

func TestProxyMode(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	uuid := append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...)
	pxeUUID := dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	for _, tc := range []struct {
		name    string
		mac     net.HardwareAddr
		mt      dhcpv4.MessageType
		pxePort bool
		mods    []dhcpv4.Modifier
		op      action
		file    string
	}{
		{"pxe discover on 67: offer without address", macNode1, dhcpv4.MessageTypeDiscover, false, []dhcpv4.Modifier{pxeBIOS, archBIOS, pxeUUID}, "offer", "undionly.kpxe"},
		{"pxe request on 4011: ack", macStray, dhcpv4.MessageTypeRequest, true, []dhcpv4.Modifier{pxeBIOS, archEFI, pxeUUID}, "ack", "ipxe.efi"},
		{"ipxe discover: script", macNode1, dhcpv4.MessageTypeDiscover, false, []dhcpv4.Modifier{ipxeUC}, "offer", "tftp://198.18.0.1/boot/52-54-00-00-00-01.ipxe"},
		{"pxe request on 67 for the DHCP server: not ours", macNode1, dhcpv4.MessageTypeRequest, false, []dhcpv4.Modifier{pxeBIOS, archBIOS}, "ignore", ""},
		{"request on 67 naming our address (a DHCP server on this host): not ours", macNode1, dhcpv4.MessageTypeRequest, false,
			[]dhcpv4.Modifier{pxeBIOS, archBIOS, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1)))}, "ignore", ""},
		{"os client: not ours", macStray, dhcpv4.MessageTypeDiscover, false, nil, "ignore", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, testInventory(t, inventory.ModeProxy, "undionly.kpxe", "ipxe.efi"))
			req := request(t, tc.mac, tc.mt, tc.mods...)
			resp, x := decideWith(t, s, req, tc.pxePort, now)
			if x.op != tc.op {
				t.Fatalf("op %q (%s), want %q", x.op, x.reason, tc.op)
			}
			if x.persist || len(s.Leases()) != 0 {
				t.Errorf("proxy mode touched the lease store: %v", s.Leases())
			}
			if !x.send {
				return
			}
			if !resp.YourIPAddr.Equal(net.IPv4zero) || resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
				t.Errorf("proxy reply gives an address: yiaddr %s", resp.YourIPAddr)
			}
			if resp.BootFileName != tc.file || resp.ClassIdentifier() != "PXEClient" {
				t.Errorf("file %q, option 60 %q", resp.BootFileName, resp.ClassIdentifier())
			}
			if sub := subopts(t, resp.Options.Get(dhcpv4.OptionVendorSpecificInformation)); !bytes.Equal(sub[pxeDiscoveryControl], []byte{pxeUseBootfile}) {
				t.Errorf("43.6 = % x", sub[pxeDiscoveryControl])
			}
			if got := resp.Options.Get(dhcpv4.OptionClientMachineIdentifier); req.Options.Has(dhcpv4.OptionClientMachineIdentifier) && !bytes.Equal(got, uuid) {
				t.Errorf("option 97 not echoed: % x", got)
			}
		})
	}
}

func TestReplyDest(t *testing.T) {
	inv := testInventory(t, inventory.ModeAuthoritative)
	inv.DHCP.Listen = "0.0.0.0:10067"
	c := mustConfig(t, inv)
	peer := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 50), Port: 10068}
	ack := func() *dhcpv4.DHCPv4 {
		return request(t, macStray, dhcpv4.MessageTypeAck)
	}
	for _, tc := range []struct {
		name    string
		req     *dhcpv4.DHCPv4
		resp    *dhcpv4.DHCPv4
		pxePort bool
		dst     string
		bcast   bool
	}{
		{"new client: broadcast to the client port", request(t, macStray, dhcpv4.MessageTypeRequest), ack(), false, "255.255.255.255:10068", true},
		{"renewing client: unicast", request(t, macStray, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("198.18.0.100"))), ack(), false, "198.18.0.100:10068", false},
		{"relayed: to the relay's server port", request(t, macStray, dhcpv4.MessageTypeRequest, dhcpv4.WithGatewayIP(net.ParseIP("198.19.0.1"))), ack(), false, "198.19.0.1:10067", false},
		{"nak: broadcast even when renewing", request(t, macStray, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("198.18.0.100"))), request(t, macStray, dhcpv4.MessageTypeNak), false, "255.255.255.255:10068", true},
		{"pxe port: back to the sender", request(t, macStray, dhcpv4.MessageTypeRequest), ack(), true, "198.18.0.50:10068", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, bcast := replyDest(c, tc.req, tc.resp, peer, tc.pxePort)
			if dst.String() != tc.dst || bcast != tc.bcast {
				t.Errorf("dst %s bcast %v, want %s %v", dst, bcast, tc.dst, tc.bcast)
			}
		})
	}
}

func TestReloadKeepsLeases(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	inv := testInventory(t, inventory.ModeAuthoritative)
	s := newTestServer(t, inv)
	_, x := decideWith(t, s, request(t, macStray, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.0.101")))), false, now)
	if x.op != "ack" {
		t.Fatalf("op %s (%s)", x.op, x.reason)
	}
	// The new inventory knows the stray as node9 with a fixed address.
	inv2 := testInventory(t, inventory.ModeAuthoritative)
	inv2.Server.DataDir = inv.Server.DataDir
	inv2.Hosts = append(inv2.Hosts, inventory.Host{Name: "node9", MAC: inventory.MAC{HardwareAddr: macStray}, IP: inventory.Addr{Addr: netip.MustParseAddr("198.18.0.19")}, Boot: inventory.BootMenu})
	if err := s.Reload(inv2); err != nil {
		t.Fatal(err)
	}
	if ls := s.Leases(); len(ls) != 1 || ls[0].IP.String() != "198.18.0.101" {
		t.Fatalf("leases after reload: %v", ls)
	}
	// Its renewal of the pool address is refused; its next DISCOVER gets the fixed one.
	_, x = decideWith(t, s, request(t, macStray, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("198.18.0.101"))), false, now)
	if x.op != "nak" {
		t.Errorf("renewal after reload: %s, want nak", x.op)
	}
	resp, x := decideWith(t, s, request(t, macStray, dhcpv4.MessageTypeDiscover), false, now)
	if x.op != "offer" || resp.YourIPAddr.String() != "198.18.0.19" || resp.HostName() != "node9" {
		t.Errorf("discover after reload: %s %s %q", x.op, resp.YourIPAddr, resp.HostName())
	}
}

// TestNoLoaderLeavesNoTrace: a client that gets no answer (no loader for its
// architecture) holds no address: neither a binding nor an offer.
func TestNoLoaderLeavesNoTrace(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestServer(t, testInventory(t, inventory.ModeAuthoritative, "undionly.kpxe"))
	arm := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003016"))
	if _, x := decideWith(t, s, request(t, macStray, dhcpv4.MessageTypeDiscover, arm, archARM), false, now); x.op != "ignore" || x.send {
		t.Fatalf("arm64 discover: %s", x.op)
	}
	if _, x := decideWith(t, s, request(t, macStray, dhcpv4.MessageTypeRequest, arm, archARM,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.0.100")))), false, now); x.op != "ignore" || x.persist {
		t.Fatalf("arm64 request: op %s persist %v", x.op, x.persist)
	}
	if ls := s.Leases(); len(ls) != 0 {
		t.Errorf("leases after unanswered requests: %v", ls)
	}
	resp, x := decideWith(t, s, request(t, mustMAC("02:00:00:00:01:01"), dhcpv4.MessageTypeDiscover), false, now)
	if x.op != "offer" || resp.YourIPAddr.String() != "198.18.0.100" {
		t.Errorf("next client: %s %s, want the first pool address", x.op, resp.YourIPAddr)
	}
}
