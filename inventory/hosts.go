package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

var errNotEthernet = errors.New("not a 6-byte Ethernet address")

func hyphenate(hw net.HardwareAddr) string {
	return strings.ReplaceAll(hw.String(), ":", "-")
}

// On reports whether the [dhcp] section is present and not disabled.
func (d *DHCP) On() bool { return d.present && (d.Enabled == nil || *d.Enabled) }

// AnswersRS reports whether netsan answers IPv6 router solicitations: when
// DHCP runs and ipv6_ra is on (Load's default: when authoritative).
func (d *DHCP) AnswersRS() bool {
	if d.IPv6RA == nil {
		return d.On() && d.Mode != ModeProxy
	}
	return d.On() && *d.IPv6RA
}

// On reports whether the [tftp] section is present and not disabled.
func (t *TFTP) On() bool { return t.present && (t.Enabled == nil || *t.Enabled) }

// On reports whether the [http] section is present and not disabled.
func (h *HTTP) On() bool { return h.present && (h.Enabled == nil || *h.Enabled) }

// On reports whether the iSCSI target runs: when [iscsi] is present and not
// disabled.
func (i *ISCSI) On() bool { return i.present && (i.Enabled == nil || *i.Enabled) }

// Port is the TCP port of the first iSCSI portal (3260 when unset).
func (i *ISCSI) Port() int {
	if len(i.Listen) == 0 {
		return 3260
	}
	return portOf(i.Listen[0], 3260)
}

// Port is the HTTP listen port.
func (h *HTTP) Port() int { return portOf(h.Listen, 8080) }

// Port is the TFTP listen port.
func (t *TFTP) Port() int { return portOf(t.Listen, 69) }

// HTTPURL is name on netsan's HTTP server at server.
func (inv *Inventory) HTTPURL(server netip.Addr, name string) string {
	return "http://" + net.JoinHostPort(server.String(), strconv.Itoa(inv.HTTP.Port())) + "/" + name
}

// FileURL is how iPXE is told to fetch name (a script, a kernel) from
// netsan at server: over HTTP when it runs, else TFTP.
func (inv *Inventory) FileURL(server netip.Addr, name string) string {
	if inv.HTTP.On() {
		return inv.HTTPURL(server, name)
	}
	host := server.String()
	if p := inv.TFTP.Port(); p != 69 {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return "tftp://" + host + "/" + name
}

func portOf(hostport string, def int) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return def
	}
	return n
}

// HostByMAC returns the host with this MAC, or nil.
func (inv *Inventory) HostByMAC(mac net.HardwareAddr) *Host {
	return find(inv.Hosts, func(h *Host) bool { return bytes.Equal(h.MAC.HardwareAddr, mac) })
}

// HostBySerial returns the Raspberry Pi host with this serial, or nil.
// Serials compare case-insensitively, as the Pi's boot ROM writes them in lower case.
func (inv *Inventory) HostBySerial(serial string) *Host {
	return find(inv.Hosts, func(h *Host) bool { return h.Serial != "" && strings.EqualFold(h.Serial, serial) })
}

// HostByName returns the host with this name, or nil.
func (inv *Inventory) HostByName(name string) *Host {
	return find(inv.Hosts, func(h *Host) bool { return h.Name == name })
}

// ImageByName returns the golden image with this name, or nil.
func (inv *Inventory) ImageByName(name string) *Image {
	return find(inv.Images, func(im *Image) bool { return im.Name == name })
}

// find returns the first element of xs that matches, or nil.
func find[T any](xs []T, match func(*T) bool) *T {
	for i := range xs {
		if match(&xs[i]) {
			return &xs[i]
		}
	}
	return nil
}

// TargetIQN is the IQN of a host's root target: base_iqn:name.
func (inv *Inventory) TargetIQN(h *Host) string { return inv.ISCSI.BaseIQN + ":" + h.Name }

// DataTargetIQN is the IQN of a [[target]]: base_iqn:name.
func (inv *Inventory) DataTargetIQN(t *Target) string { return inv.ISCSI.BaseIQN + ":" + t.Name }

// InitiatorIQN is the IQN the host's initiator uses (DHCP option 203).
func (inv *Inventory) InitiatorIQN(h *Host) string {
	if h.Initiator != "" {
		return h.Initiator
	}
	return inv.ISCSI.BaseIQN + ":" + h.Name
}

// BootsFromSAN reports whether the host's boot mode is san and it has a root.
func (h *Host) BootsFromSAN() bool { return h.Boot == BootSAN && h.Root != nil }

// RootPath is the host's iSCSI root-path (DHCP option 17) in iPXE's form
// iscsi:SERVER::PORT:LUN:IQN. The port is always written, the LUN is hex.
func (inv *Inventory) RootPath(h *Host) string {
	return fmt.Sprintf("iscsi:%s::%d:0:%s", inv.Server.Address, inv.ISCSI.Port(), inv.TargetIQN(h))
}

// ParseSize reads "8GiB", "100G", "512 MiB", "4096" as bytes. KiB and K are both 1024.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 8GiB, 512MiB, 100G)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// FormatSize writes n bytes the way people read sizes, in units ParseSize
// takes back: 512B, 64.0KiB, 1.5GiB.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// FreeAddr is the first address of the DHCP subnet that a new host can be
// given as its fixed ip, one that validation accepts: not the network or
// broadcast address, netsan's own, the router's or a DNS server's, outside
// the dynamic range and no host's. It is invalid when no IPv4 subnet is set
// or none is free.
func (inv *Inventory) FreeAddr() netip.Addr { return inv.freeAddr(inv.takenAddrs()) }

// freeAddr is the first address of the DHCP subnet not in taken, not the
// network or broadcast address and outside the dynamic range.
func (inv *Inventory) freeAddr(taken map[netip.Addr]bool) netip.Addr {
	subnet := inv.DHCP.Subnet.Masked()
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return netip.Addr{}
	}
	// Bounded: a /8 is not walked to its end when everything before is taken.
	for a, n := subnet.Addr().Next(), 0; n < 1<<16 && subnet.Contains(a.Next()); a, n = a.Next(), n+1 {
		if !taken[a] && !inv.DHCP.inRange(Addr{Addr: a}) {
			return a
		}
	}
	return netip.Addr{}
}
