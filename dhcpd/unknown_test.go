package dhcpd

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/inventory"
)

// TestUnknownMachines: a boot client that is not in the inventory is
// remembered with its architecture, vendor class, first and last request
// and the address acknowledged to it, whether or not it got an answer; an
// OS's DHCP client and inventory hosts are not; one added to the
// inventory drops out; the table keeps the 256 seen last.
func TestUnknownMachines(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	sid := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1)))
	efi := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))
	pc, laptop := mustMAC("02:00:00:0a:0b:0c"), mustMAC("02:00:00:0d:0e:0f")

	inv := testInventory(t, inventory.ModeAuthoritative, "undionly.kpxe", "ipxe.efi")
	s := newTestServer(t, inv)
	decideWith(t, s, request(t, pc, dhcpv4.MessageTypeDiscover, efi, archEFI), false, t0)
	decideWith(t, s, request(t, pc, dhcpv4.MessageTypeRequest, efi, archEFI, sid, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.0.100")))), false, t0.Add(time.Second))
	decideWith(t, s, request(t, pc, dhcpv4.MessageTypeDiscover, ipxeUC, archEFI), false, t0.Add(time.Minute))
	decideWith(t, s, request(t, laptop, dhcpv4.MessageTypeDiscover), false, t0)
	decideWith(t, s, request(t, macNode1, dhcpv4.MessageTypeDiscover, pxeBIOS, archBIOS), false, t0)
	got := s.Unknown()
	if len(got) != 1 {
		t.Fatalf("unknown machines: %+v, want the PC alone", got)
	}
	u := got[0]
	if u.MAC.String() != pc.String() || u.Kind != KindIPXE || u.Arch != iana.EFI_X86_64 || u.VendorClass != "PXEClient:Arch:00007:UNDI:003016" ||
		!u.FirstSeen.Equal(t0) || !u.LastSeen.Equal(t0.Add(time.Minute)) || u.IP.String() != "198.18.0.100" {
		t.Errorf("the PC as seen: %+v", u)
	}

	// Static-only: the PXE BIOS client gets no answer, and is seen.
	inv = testInventory(t, inventory.ModeAuthoritative, "undionly.kpxe")
	inv.DHCP.Range = nil
	s = newTestServer(t, inv)
	if _, x := decideWith(t, s, request(t, pc, dhcpv4.MessageTypeDiscover, pxeBIOS, archBIOS), false, t0); x.send {
		t.Fatal("static-only answered an unknown client")
	}
	if got := s.Unknown(); len(got) != 1 || got[0].Kind != KindPXE || got[0].Arch != iana.INTEL_X86PC || got[0].IP.IsValid() {
		t.Errorf("static-only: %+v", got)
	}

	// Added to the inventory: no longer unknown.
	next := testInventory(t, inventory.ModeAuthoritative, "undionly.kpxe")
	next.Hosts = append(next.Hosts, inventory.Host{Name: "pc", MAC: inventory.MAC{HardwareAddr: pc}, Boot: inventory.BootMenu})
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := s.Unknown(); len(got) != 0 {
		t.Errorf("after the reload that adds it: %+v", got)
	}

	// Bounded: of 300 machines, the 256 seen last.
	s = newTestServer(t, testInventory(t, inventory.ModeProxy, "undionly.kpxe"))
	for i := range 300 {
		mac := mustMAC(fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff))
		decideWith(t, s, request(t, mac, dhcpv4.MessageTypeDiscover, pxeBIOS, archBIOS), false, t0.Add(time.Duration(i)*time.Second))
	}
	got = s.Unknown()
	if len(got) != maxUnknown || got[0].MAC.String() != "02:00:00:00:01:2b" || got[len(got)-1].MAC.String() != "02:00:00:00:00:2c" {
		t.Errorf("after 300 machines: %d kept, from %v to %v", len(got), got[0].MAC, got[len(got)-1].MAC)
	}
}
