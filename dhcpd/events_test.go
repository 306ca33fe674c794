package dhcpd

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// TestEvents: what a request is in its machine's boot story: a discover
// (answered or not, and why not), the ack of a new lease with the boot
// file, a nak with its reason; a renewal is no step of a boot.
func TestEvents(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newTestServer(t, testInventory(t, inventory.ModeAuthoritative, "undionly.kpxe"))
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1)))
	reqIP := func(ip string) dhcpv4.Modifier {
		return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
	arm := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003016"))
	for _, tc := range []struct {
		name   string
		req    *dhcpv4.DHCPv4
		key    string
		step   timeline.Step
		detail string
	}{
		{"discover", request(t, macNode1, dhcpv4.MessageTypeDiscover, pxeBIOS, archBIOS),
			"52:54:00:00:00:01", timeline.Discover, "pxe, Intel x86PC"},
		{"ack", request(t, macNode1, dhcpv4.MessageTypeRequest, pxeBIOS, archBIOS, sid, reqIP("198.18.0.11")),
			"52:54:00:00:00:01", timeline.Ack, "198.18.0.11, undionly.kpxe"},
		{"renewal", request(t, macNode1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP("198.18.0.11"))),
			"", "", ""},
		{"nak", request(t, macNode1, dhcpv4.MessageTypeRequest, reqIP("198.18.0.100")),
			"52:54:00:00:00:01", timeline.Nak, "not your address: yours is 198.18.0.11"},
		{"discover, no loader", request(t, macStray, dhcpv4.MessageTypeDiscover, arm, archARM),
			macStray.String(), timeline.Discover, "pxe, EFI ARM64: no offer, no iPXE loader for client architecture 11 (EFI ARM64): none of ipxe-arm64.efi, snp-arm64.efi in ipxe_dir " +
				s.cfg.Load().inv.TFTP.IPXEDir + " or tftp.root " + s.cfg.Load().inv.TFTP.Root},
	} {
		_, x := decideWith(t, s, tc.req, false, now)
		key, step, detail := x.event(tc.req)
		if key != tc.key || step != tc.step || detail != tc.detail {
			t.Errorf("%s (%s): %q %q %q, want %q %q %q", tc.name, x.op, key, step, detail, tc.key, tc.step, tc.detail)
		}
	}
}
