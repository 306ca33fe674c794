package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// dhcpScript is udhcpc's hook: on a lease it takes the address (the client
// has a namespace of its own) and prints the answer as key=value lines.
const dhcpScript = `#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
echo "siaddr=$siaddr"
echo "boot_file=$boot_file"
echo "rootpath=$rootpath"
env | grep '^opt[0-9]*='
exit 0
`

// pxeVendorClass is what a BIOS PXE ROM (and a Raspberry Pi) sends as option 60.
const pxeVendorClass = "PXEClient:Arch:00000:UNDI:002001"

// dhcp runs one DISCOVER/REQUEST exchange with busybox udhcpc in client
// namespace ns and returns the answer's fields.
func dhcp(ctx context.Context, t *testing.T, l *lab.Lab, ns string, extra ...string) map[string]string {
	t.Helper()
	script := filepath.Join(l.Dir, "udhcpc.script")
	if err := os.WriteFile(script, []byte(dhcpScript), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _ = lab.RunIn(ctx, ns, "ip", "addr", "flush", "dev", "eth0")
	argv := append([]string{"busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "5", "-T", "2",
		"-s", script, "-V", pxeVendorClass, "-O", "rootpath", "-O", "203", "-O", "175"}, extra...)
	out, err := lab.RunIn(ctx, ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	f := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			f[k] = v
		}
	}
	t.Logf("udhcpc %s: %v", strings.Join(extra, " "), f)
	return f
}

// Test 2: the legacy PXE chain, as a BIOS PXE ROM walks it. Every BIOS NIC
// ROM QEMU ships here is already iPXE, so the ROM's side is played by udhcpc
// with PXE's vendor class and architecture: the first answer hands
// undionly.kpxe (fetched byte-identical over TFTP), the second — the same
// MAC, now as iPXE — hands the per-host script, never the loader again. The
// firmware-driven chainload itself is TestUEFIBoot's (OVMF's PXE → ipxe.efi).
func TestPXEChainload(t *testing.T) {
	needNetsan(t)
	h := sanHost(t, 2)
	s := serve(t, []lab.NetsanHost{h}, nil, nil)
	ctx, cancel := testContext(t, 2*time.Minute)
	defer cancel()
	ns, err := s.Client(ctx, h.MAC)
	if err != nil {
		t.Fatal(err)
	}

	// PXE ROM: option 93 client architecture 0 (BIOS), option 94 UNDI 2.1.
	rom := dhcp(ctx, t, s.Lab, ns, "-x", "0x5d:0000", "-x", "0x5e:010201")
	if rom["boot_file"] != "undionly.kpxe" {
		t.Fatalf("PXE ROM got boot file %q, want undionly.kpxe", rom["boot_file"])
	}
	if rom["siaddr"] != lab.ServerIP {
		t.Errorf("PXE ROM got next-server %q, want %s", rom["siaddr"], lab.ServerIP)
	}

	got := filepath.Join(s.Dir, "undionly.kpxe")
	if _, err := lab.RunIn(ctx, ns, "busybox", "tftp", "-g", "-b", "1468", "-r", "undionly.kpxe", "-l", got, lab.ServerIP); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
		t.Fatalf("undionly.kpxe over TFTP: %d bytes, differs from /usr/lib/ipxe (%d bytes)", len(b), len(want))
	}

	// undionly.kpxe running: the same PXE fields plus user class "iPXE".
	ipxe := dhcp(ctx, t, s.Lab, ns, "-x", "0x5d:0000", "-x", "0x5e:010201", "-x", "0x4d:69505845")
	script := "http://" + lab.ServerIP + ":8080/boot/" + strings.ReplaceAll(h.MAC, ":", "-") + ".ipxe"
	if ipxe["boot_file"] != script {
		t.Fatalf("iPXE got boot file %q, want its script %s", ipxe["boot_file"], script)
	}
	if rp := "iscsi:" + lab.ServerIP + "::3260:0:" + h.Target; ipxe["rootpath"] != rp {
		t.Errorf("iPXE got root-path %q, want %q", ipxe["rootpath"], rp)
	}
	if iqn, _ := hex.DecodeString(ipxe["opt203"]); string(iqn) != h.Initiator {
		t.Errorf("iPXE got option 203 %q, want %q", iqn, h.Initiator)
	}
	// Option 175 (iPXE encapsulated): keep-san (8) = 1, never skip-san-boot (9).
	enc, _ := hex.DecodeString(ipxe["opt175"])
	sub := make(map[byte][]byte)
	for len(enc) >= 2 && len(enc) >= 2+int(enc[1]) {
		sub[enc[0]] = enc[2 : 2+enc[1]]
		enc = enc[2+enc[1]:]
	}
	if !bytes.Equal(sub[8], []byte{1}) {
		t.Errorf("option 175.8 keep-san = %x, want 01", sub[8])
	}
	if v, ok := sub[9]; ok {
		t.Errorf("option 175.9 skip-san-boot sent (%x): it would silence the script's sanboot", v)
	}

	body, err := lab.RunIn(ctx, ns, "busybox", "wget", "-q", "-O", "-", script)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(body, "#!ipxe") || !strings.Contains(body, "sanboot") {
		t.Errorf("script %s is not an iPXE sanboot script:\n%s", script, body)
	}
}
