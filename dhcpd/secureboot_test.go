package dhcpd

import (
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/inventory"
	"go.uber.org/zap/zapcore"
)

// A secure_boot host's x86-64 UEFI PXE gets shim, never iPXE (unsigned:
// Secure Boot firmware would refuse it); its BIOS boot still gets iPXE.
// Without shim or GRUB to serve it gets no offer and a warning naming the
// missing file, rather than a loader that cannot run.
func TestSecureBootLoader(t *testing.T) {
	loaders := []string{"undionly.kpxe", "ipxe.efi"}
	signed := []string{bootmenu.ShimName, bootmenu.GRUBName}
	for _, tc := range []struct {
		name   string
		root   []string // files in tftp.root
		secure bool
		kind   Kind
		arch   iana.Arch
		file   string // "" = no offer
		why    string
	}{
		{"uefi bc", signed, true, KindPXE, iana.EFI_BC, bootmenu.ShimName, ""},
		{"uefi x64", signed, true, KindPXE, iana.EFI_X86_64, bootmenu.ShimName, ""},
		{"bios", signed, true, KindPXE, iana.INTEL_X86PC, "undionly.kpxe", ""},
		{"not secure_boot", signed, false, KindPXE, iana.EFI_BC, "ipxe.efi", ""},
		{"no grub", []string{bootmenu.ShimName}, true, KindPXE, iana.EFI_BC, "", "grubx64.efi (tftp.root or /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed, package grub-efi-amd64-signed)"},
		{"no shim", []string{bootmenu.GRUBName}, true, KindPXE, iana.EFI_BC, "", "shimx64.efi (tftp.root or /usr/lib/shim/shimx64.efi.signed, package shim-signed)"},
		{"http boot", signed, true, KindHTTPBoot, iana.EFI_X86_64_HTTP, "", "fetches over TFTP only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := bootInventory(t, inventory.ModeAuthoritative, true, loaders, tc.root)
			h := inv.HostByName("node2")
			h.Boot, h.SecureBoot = inventory.BootLinux, tc.secure
			if tc.file == "" && strings.Contains(tc.why, "tftp.root or") && bootmenu.MissingSigned(inv) == "" {
				t.Skip("Debian's shim-signed and grub-efi-amd64-signed are installed here")
			}
			x := newExchange(t, inv)
			x.kind, x.arch, x.host = tc.kind, tc.arch, h
			req := request(t, macNode2, dhcpv4.MessageTypeDiscover)
			resp := reply(t, req)
			stop := x.boot(req, resp)
			if tc.file == "" {
				if !stop || x.send || x.level != zapcore.WarnLevel || !strings.Contains(x.reason, tc.why) {
					t.Errorf("stop %v send %v level %v reason %q, want no offer and a warning with %q", stop, x.send, x.level, x.reason, tc.why)
				}
				return
			}
			if stop || resp.BootFileName != tc.file || !resp.ServerIPAddr.Equal(net.IPv4(198, 18, 0, 1)) {
				t.Errorf("stop %v (%s) file %q siaddr %s, want %q from 198.18.0.1", stop, x.reason, resp.BootFileName, resp.ServerIPAddr, tc.file)
			}
		})
	}
}
