package dhcpd

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/inventory"
	"go.uber.org/zap/zapcore"
)

// httpClient is what EDK2's HttpBootDxe sends: option 60
// HTTPClient:Arch:<arch>:UNDI:003001 and option 93.
func httpClient(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("HTTPClient:Arch:%05d:UNDI:003001", arch))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
	}
}

// TestLoaderChoice runs whole requests through the chain: PXE firmware gets
// a loader by TFTP, UEFI HTTP Boot its URL and option 60 HTTPClient; an
// architecture with no loader, or HTTP Boot with [http] off, gets silence
// and a warning that names the architecture and where netsan looked.
func TestLoaderChoice(t *testing.T) {
	x64 := []string{"undionly.kpxe", "ipxe.efi"}
	type want struct {
		file string // "" = no reply
		http bool   // option 60 HTTPClient, no next-server
		why  []string
	}
	for _, tc := range []struct {
		name      string
		mode      string
		http      bool
		ipxe      []string
		root      []string // loaders in tftp.root
		mt        dhcpv4.MessageType
		mods      []dhcpv4.Modifier
		want      want
		wantProxy bool
	}{
		{"http boot x64", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_X86_64_HTTP),
			want{file: "http://198.18.0.1:8080/ipxe.efi", http: true}, false},
		{"http boot x64 request", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeRequest,
			append(httpClient(iana.EFI_X86_64_HTTP), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 0, 11)))),
			want{file: "http://198.18.0.1:8080/ipxe.efi", http: true}, false},
		{"http boot arch from the vendor class alone", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"))},
			want{file: "http://198.18.0.1:8080/ipxe.efi", http: true}, false},
		{"http boot arm64 with a loader", inventory.ModeAuthoritative, true, append(x64, "snp-arm64.efi"), nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM64_HTTP),
			want{file: "http://198.18.0.1:8080/snp-arm64.efi", http: true}, false},
		{"http boot arm64 with its loader in tftp.root", inventory.ModeAuthoritative, true, x64, []string{"ipxe-arm64.efi"}, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM64_HTTP),
			want{file: "http://198.18.0.1:8080/ipxe-arm64.efi", http: true}, false},
		{"http boot arm64 without a loader", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM64_HTTP),
			want{why: []string{"architecture 19 (EFI ARM64 boot from HTTP)", "ipxe-arm64.efi, snp-arm64.efi", "$where"}}, false},
		{"http boot x86 32-bit never gets the x64 build", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_X86_HTTP),
			want{why: []string{"architecture 15", "ipxe-i386.efi"}}, false},
		{"http boot x86 32-bit with its build", inventory.ModeAuthoritative, true, append(x64, "snp-i386.efi"), nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_X86_HTTP),
			want{file: "http://198.18.0.1:8080/snp-i386.efi", http: true}, false},
		{"http boot arm32 without a loader", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM32_HTTP),
			want{why: []string{"architecture 18", "ipxe-arm32.efi"}}, false},
		{"http boot arm32 with a loader", inventory.ModeAuthoritative, true, x64, []string{"ipxe-arm32.efi"}, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM32_HTTP),
			want{file: "http://198.18.0.1:8080/ipxe-arm32.efi", http: true}, false},
		{"http boot with [http] off", inventory.ModeAuthoritative, false, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_X86_64_HTTP),
			want{why: []string{"architecture 16", "[http] is off"}}, false},
		{"pxe arm64 with its loader only in tftp.root", inventory.ModeAuthoritative, false, x64, []string{"snp-arm64.efi"}, dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")), archARM},
			want{file: "snp-arm64.efi"}, false},
		{"pxe arm64 without a loader", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000")), archARM},
			want{why: []string{"architecture 11 (EFI ARM64)", "$where"}}, false},
		{"pxe x64 with http on still gets tftp", inventory.ModeAuthoritative, true, x64, nil, dhcpv4.MessageTypeDiscover,
			[]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), archEFI},
			want{file: "ipxe.efi"}, false},
		{"proxy: http boot x64", inventory.ModeProxy, true, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_X86_64_HTTP),
			want{file: "http://198.18.0.1:8080/ipxe.efi", http: true}, true},
		{"proxy: http boot arm64 from tftp.root", inventory.ModeProxy, true, x64, []string{"snp-arm64.efi"}, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM64_HTTP),
			want{file: "http://198.18.0.1:8080/snp-arm64.efi", http: true}, true},
		{"proxy: http boot arm64 without a loader", inventory.ModeProxy, true, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_ARM64_HTTP),
			want{why: []string{"architecture 19"}}, true},
		{"proxy: http boot with [http] off", inventory.ModeProxy, false, x64, nil, dhcpv4.MessageTypeDiscover, httpClient(iana.EFI_X86_64_HTTP),
			want{why: []string{"[http] is off"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := bootInventory(t, tc.mode, tc.http, tc.ipxe, tc.root)
			s := newTestServer(t, inv)
			resp, x := decideWith(t, s, request(t, macNode1, tc.mt, tc.mods...), false, time.Unix(1_800_000_000, 0))
			if tc.want.file == "" {
				if x.send || x.level != zapcore.WarnLevel {
					t.Fatalf("send %v level %v (%s %q), want no reply and a warning", x.send, x.level, x.op, x.reason)
				}
				for _, w := range tc.want.why {
					// where netsan looked
					w = strings.ReplaceAll(w, "$where", "ipxe_dir "+inv.TFTP.IPXEDir+" or tftp.root "+inv.TFTP.Root)
					if !strings.Contains(x.reason, w) {
						t.Errorf("log reason %q lacks %q", x.reason, w)
					}
				}
				if len(s.Leases()) != 0 {
					t.Errorf("an address stayed held for a client that got no offer: %v", s.Leases())
				}
				return
			}
			if !x.send {
				t.Fatalf("no reply: %s %q", x.op, x.reason)
			}
			if resp.BootFileName != tc.want.file || x.file != tc.want.file {
				t.Errorf("file %q (logged %q), want %q", resp.BootFileName, x.file, tc.want.file)
			}
			if yi := resp.YourIPAddr; yi.IsUnspecified() != tc.wantProxy {
				t.Errorf("yiaddr %s in mode %s", yi, tc.mode)
			}
			vc := resp.ClassIdentifier()
			if tc.want.http {
				// EDK2 compares option 60's first 10 bytes with "HTTPClient"
				// and takes the URL from the file field.
				if vc != "HTTPClient" {
					t.Errorf("option 60 %q, want HTTPClient", vc)
				}
				if !resp.ServerIPAddr.IsUnspecified() || resp.Options.Has(dhcpv4.OptionTFTPServerName) {
					t.Errorf("HTTP Boot reply names a TFTP server: siaddr %s, 66 %q", resp.ServerIPAddr, resp.TFTPServerName())
				}
				if resp.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
					t.Errorf("HTTP Boot reply carries PXE's option 43: % x", resp.Options.Get(dhcpv4.OptionVendorSpecificInformation))
				}
				return
			}
			if !resp.ServerIPAddr.Equal(net.IPv4(198, 18, 0, 1)) || resp.TFTPServerName() != "198.18.0.1" {
				t.Errorf("PXE reply: siaddr %s, 66 %q", resp.ServerIPAddr, resp.TFTPServerName())
			}
			if strings.HasPrefix(vc, "HTTPClient") {
				t.Errorf("PXE reply with option 60 %q", vc)
			}
		})
	}
}
