package dhcpd

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// maxUnknown bounds the machines kept in memory that asked to boot and are
// not in the inventory: a LAN of spoofed MACs costs 256 entries, and the
// ones seen longest ago make room.
const maxUnknown = 256

// Unknown is a machine that asked to boot (PXE, iPXE or a Raspberry Pi)
// but is not in the inventory, as the DHCP server saw it.
type Unknown struct {
	MAC         net.HardwareAddr
	Kind        Kind
	Arch        iana.Arch
	VendorClass string // option 60, e.g. PXEClient:Arch:00000:UNDI:002001
	FirstSeen   time.Time
	LastSeen    time.Time
	// IP is the address last acknowledged to it; zero when netsan gave
	// none (proxy mode, static-only, not yet acknowledged).
	IP netip.Addr
}

// unknowns is the bounded table of Unknown machines, by MAC.
type unknowns struct {
	mu    sync.Mutex
	byMAC map[string]*Unknown
}

// note records the request of x, if it came from a boot client that is not
// in the inventory.
func (u *unknowns) note(x *exchange, req *dhcpv4.DHCPv4) {
	if x.host != nil || x.kind == KindOther {
		return
	}
	key := req.ClientHWAddr.String()
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.byMAC[key]
	if m == nil {
		if u.byMAC == nil {
			u.byMAC = make(map[string]*Unknown)
		}
		if len(u.byMAC) >= maxUnknown {
			u.evictOldest()
		}
		m = &Unknown{MAC: slices.Clone(req.ClientHWAddr), FirstSeen: x.now}
		u.byMAC[key] = m
	}
	m.Kind, m.Arch, m.LastSeen = x.kind, x.arch, x.now
	if vc := req.ClassIdentifier(); vc != "" {
		m.VendorClass = vc
	}
	if x.op == actAck && x.ip.IsValid() {
		m.IP = x.ip
	}
}

func (u *unknowns) evictOldest() {
	var oldest *Unknown
	for _, m := range u.byMAC {
		if oldest == nil || m.LastSeen.Before(oldest.LastSeen) {
			oldest = m
		}
	}
	delete(u.byMAC, oldest.MAC.String())
}

// list is every machine recorded for which known is false, the one seen
// last first.
func (u *unknowns) list(known func(net.HardwareAddr) bool) []Unknown {
	u.mu.Lock()
	out := make([]Unknown, 0, len(u.byMAC))
	for _, m := range u.byMAC {
		if !known(m.MAC) {
			out = append(out, *m)
		}
	}
	u.mu.Unlock()
	slices.SortFunc(out, func(a, b Unknown) int { return b.LastSeen.Compare(a.LastSeen) })
	return out
}

// Unknown returns the machines that asked to boot and are not in the
// inventory as it is now (one added since drops out), the one seen last
// first: for /status and `netsan hosts seen`.
func (s *Server) Unknown() []Unknown {
	inv := s.cfg.Load().inv
	return s.unknown.list(func(mac net.HardwareAddr) bool { return inv.HostByMAC(mac) != nil })
}
