package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// floating is the address that moves with leadership, on this gateway's
// interface.
type floating struct {
	ifname string
	prefix netip.Prefix
}

func (f floating) addr() *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   f.prefix.Addr().AsSlice(),
		Mask: net.CIDRMask(f.prefix.Bits(), f.prefix.Addr().BitLen()),
	}}
}

// add puts the address on the interface for lifetime (whole seconds, at
// least one), or extends the lifetime of the one there. The kernel removes
// the address when its lifetime ends: a leader that dies (kill -9) or
// freezes keeps no address it no longer leads for, which would answer
// ARP and TCP for the next leader's.
func (f floating) add(lifetime time.Duration) error {
	link, err := netlink.LinkByName(f.ifname)
	if err != nil {
		return fmt.Errorf("floating address %s: interface %s: %w", f.prefix, f.ifname, err)
	}
	a := f.addr()
	a.ValidLft = max(1, int(lifetime/time.Second))
	a.PreferedLft = a.ValidLft
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("floating address %s: adding it to %s: %w", f.prefix, f.ifname, err)
	}
	return nil
}

// remove takes the address off the interface; one not there is no error.
func (f floating) remove() error {
	link, err := netlink.LinkByName(f.ifname)
	if err != nil {
		return fmt.Errorf("floating address %s: interface %s: %w", f.prefix, f.ifname, err)
	}
	err = netlink.AddrDel(link, f.addr())
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("floating address %s: removing it from %s: %w", f.prefix, f.ifname, err)
	}
	return nil
}

// Gratuitous ARP: how many rounds, how far apart. Three rounds over a
// second reach a switch or neighbour that missed the first (a port still
// learning, a frame dropped), as arping -U -c 3 and keepalived do.
const (
	garpRounds = 3
	garpEvery  = 500 * time.Millisecond
)

// announce tells the segment that the address is at this interface's MAC
// now: gratuitous ARP in both forms (a request and a reply from and for the
// address), which Linux neighbours take to update an entry they have for
// it (pointing at the old leader) and switches to move the MAC's port. It
// returns after the last round or when ctx ends.
func (f floating) announce(ctx context.Context) error {
	ifi, err := net.InterfaceByName(f.ifname)
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %s: %w", f.prefix.Addr(), err)
	}
	// SOCK_DGRAM: the kernel writes the Ethernet header to the broadcast
	// address given in sendto; only the 28-byte ARP message is ours.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %s: %w", f.prefix.Addr(), err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{
		Protocol: htons(unix.ETH_P_ARP),
		Ifindex:  ifi.Index,
		Halen:    6,
		Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	ip := f.prefix.Addr().As4()
	t := time.NewTimer(0)
	defer t.Stop()
	for round := range garpRounds {
		if round > 0 {
			t.Reset(garpEvery)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, op := range []uint16{arpRequest, arpReply} {
			if err := unix.Sendto(fd, garp(op, ifi.HardwareAddr, ip), 0, to); err != nil {
				return fmt.Errorf("gratuitous ARP for %s on %s: %w", f.prefix.Addr(), f.ifname, err)
			}
		}
	}
	return nil
}

const (
	arpRequest = 1
	arpReply   = 2
)

// garp is an ARP message (RFC 826) over Ethernet for IPv4 in which mac
// says it has ip, asking for or answering ip itself (RFC 5227's
// announcement). The request's target hardware address is zero; the
// reply's is the broadcast address, as arping -A sends it.
func garp(op uint16, mac net.HardwareAddr, ip [4]byte) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // protocol: IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:14], mac)
	copy(b[14:18], ip[:])
	if op == arpReply {
		copy(b[18:24], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	copy(b[24:28], ip[:])
	return b
}

// htons is a protocol number in network order, as AF_PACKET wants it in
// a field the kernel reads in the host's order.
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}
