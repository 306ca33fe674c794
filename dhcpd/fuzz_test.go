package dhcpd

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/netsan/netsan/inventory"
	"go.uber.org/zap"
)

// FuzzDecide feeds arbitrary datagrams through parsing and the whole
// handler chain, in both modes and on both ports: nothing may panic, and a
// reply must always encode.
func FuzzDecide(f *testing.F) {
	for _, m := range []*dhcpv4.DHCPv4{
		request(f, macNode1, dhcpv4.MessageTypeDiscover, pxeBIOS, archBIOS),
		request(f, macNode1, dhcpv4.MessageTypeRequest, ipxeUC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("198.18.0.11")))),
		request(f, macPi, dhcpv4.MessageTypeDiscover, pxeBIOS),
		request(f, macStray, dhcpv4.MessageTypeDiscover, archARM, ipxe175),
		request(f, macStray, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 0, 1)))),
		request(f, macStray, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP("198.18.0.5"))),
	} {
		f.Add(m.ToBytes(), false, false)
	}
	servers := map[bool]*Server{}
	for _, proxy := range []bool{false, true} {
		mode := inventory.ModeAuthoritative
		if proxy {
			mode = inventory.ModeProxy
		}
		s, err := New(testInventory(f, mode, "undionly.kpxe", "ipxe.efi"), zap.NewNop())
		if err != nil {
			f.Fatal(err)
		}
		servers[proxy] = s
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte, proxy, pxePort bool) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		s := servers[proxy]
		resp, x := s.decide(s.cfg.Load(), req, pxePort, now)
		if x.send {
			if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
				t.Fatalf("reply does not parse back: %v", err)
			}
			if proxy && resp.YourIPAddr != nil && !resp.YourIPAddr.IsUnspecified() {
				t.Fatalf("proxy reply gives address %s", resp.YourIPAddr)
			}
		}
	})
}

// FuzzLeaseFile: whatever is in a leases.json to migrate (a torn disk, a hand edit), the
// store either refuses it with an error or loads it; a loaded store writes
// back a file that loads to the same leases.
func FuzzLeaseFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"leases":[{"ip":"198.18.0.100","mac":"52:54:00:99:99:99","state":"bound","expires":"2026-11-26T03:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"leases":[{"ip":"198.18.0.101","state":"declined","expires":"2026-11-26T03:00:00Z"},{"ip":"::1","state":"bound"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, legacyLeaseFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := openLeaseTable(dir, nil)
		if err != nil {
			return
		}
		before := s.list()
		s.changes++ // force a write
		if err := s.sync(); err != nil {
			t.Fatal(err)
		}
		r, err := openLeaseTable(dir, nil)
		if err != nil {
			t.Fatalf("reloading what the store wrote: %v", err)
		}
		after := r.list()
		if len(before) != len(after) {
			t.Fatalf("%d leases written, %d read back", len(before), len(after))
		}
		for i := range before {
			if before[i].IP != after[i].IP || before[i].MAC != after[i].MAC || !before[i].Expires.Equal(after[i].Expires) {
				t.Fatalf("lease %d: wrote %+v, read %+v", i, before[i], after[i])
			}
		}
	})
}
