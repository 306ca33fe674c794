// Package neigh reads the kernel's neighbour table (ARP for IPv4, NDP for
// IPv6): which MAC a machine on a directly attached network uses for its
// address. netsan asks it when it hands out no addresses itself (proxy
// DHCP) and must still tell a Raspberry Pi from another machine on the LAN.
//
// The table is dumped over rtnetlink with the standard library's
// syscall.NetlinkRIB; unlike /proc/net/arp it gives each entry's state and
// interface index, and IPv6 neighbours too.
package neigh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoEntry: the kernel has no usable entry for the address (it never
// spoke to us, its entry failed, or it is not on a directly attached link).
var ErrNoEntry = errors.New("no neighbour entry")

// usable are the states in which an entry's MAC was confirmed by the
// neighbour itself (or set by the administrator): REACHABLE, STALE (it was
// reachable and nothing has contradicted it since), DELAY and PROBE (being
// re-checked), PERMANENT. INCOMPLETE and FAILED have no MAC, NOARP a made-up one.
const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT

// entry is one row of the table.
type entry struct {
	IP      netip.Addr
	MAC     net.HardwareAddr
	IfIndex int
	State   uint16 // unix.NUD_*
}

// Lookup returns the MAC behind ip. local is the address of ours the
// request arrived at: when it is one of this machine's addresses, only the
// entry on the interface that holds it counts, so that a machine on another
// segment using the same address is not mistaken for it. Without local, the
// entries for ip on every interface must agree.
func Lookup(ip, local netip.Addr) (net.HardwareAddr, error) {
	ip = ip.Unmap()
	ifIndex := 0
	if local.IsValid() && !local.IsUnspecified() {
		i, err := interfaceOf(local.Unmap())
		if err != nil {
			return nil, err
		}
		ifIndex = i
	}
	entries, err := table(ip)
	if err != nil {
		return nil, err
	}
	var mac net.HardwareAddr
	for _, e := range entries {
		if e.State&usable == 0 || ifIndex != 0 && e.IfIndex != ifIndex {
			continue
		}
		if mac != nil && !bytes.Equal(mac, e.MAC) {
			return nil, fmt.Errorf("neighbour %s: both %s and %s on different interfaces", ip, mac, e.MAC)
		}
		mac = e.MAC
	}
	if mac == nil {
		if ifIndex != 0 {
			return nil, fmt.Errorf("neighbour %s on interface %d: %w", ip, ifIndex, ErrNoEntry)
		}
		return nil, fmt.Errorf("neighbour %s: %w", ip, ErrNoEntry)
	}
	return mac, nil
}

// interfaceOf is the index of the interface that holds addr.
func interfaceOf(addr netip.Addr) (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, fmt.Errorf("interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(p.IP); ok && ip.Unmap() == addr {
					return ifc.Index, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no interface holds %s", addr)
}

// table returns the kernel's entries for ip, one per interface it is known on.
func table(ip netip.Addr) ([]entry, error) {
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	b, err := syscall.NetlinkRIB(unix.RTM_GETNEIGH, family)
	if err != nil {
		return nil, fmt.Errorf("neighbour table: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("neighbour table: %w", err)
	}
	var out []entry
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH {
			continue
		}
		if e, ok := parse(m.Data); ok && e.IP == ip {
			out = append(out, e)
		}
	}
	return out, nil
}

// parse reads one RTM_NEWNEIGH body: struct ndmsg, then NDA_* attributes.
func parse(b []byte) (entry, bool) {
	if len(b) < unix.SizeofNdMsg {
		return entry{}, false
	}
	e := entry{
		IfIndex: int(int32(binary.NativeEndian.Uint32(b[4:8]))),
		State:   binary.NativeEndian.Uint16(b[8:10]),
	}
	for b = b[unix.SizeofNdMsg:]; len(b) >= unix.SizeofRtAttr; {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < unix.SizeofRtAttr || n > len(b) {
			break
		}
		v := b[unix.SizeofRtAttr:n]
		switch binary.NativeEndian.Uint16(b[2:4]) {
		case unix.NDA_DST:
			if a, ok := netip.AddrFromSlice(v); ok {
				e.IP = a
			}
		case unix.NDA_LLADDR:
			e.MAC = net.HardwareAddr(bytes.Clone(v))
		}
		b = b[min(len(b), (n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return e, e.IP.IsValid() && len(e.MAC) > 0
}
