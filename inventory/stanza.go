package inventory

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
)

// HostStanza is a [[host]] table as netsan writes it for a person: what
// `netsan hosts add` appends to the file, and what netsan suggests for a
// machine that asked to boot but is not in the inventory. Empty fields are
// left out.
type HostStanza struct {
	Name   string      `json:"name"`
	MAC    string      `json:"mac"`
	IP     string      `json:"ip,omitempty"`
	Boot   string      `json:"boot,omitempty"`
	Root   *RootStanza `json:"root,omitempty"`
	Serial string      `json:"serial,omitempty"`
}

// RootStanza is a host's root = { … } inline table.
type RootStanza struct {
	Image string `json:"image,omitempty"` // under data_dir: "roots/NAME.img"
	RBD   string `json:"rbd,omitempty"`   // or, instead, an RBD image: "pool/NAME"
	From  string `json:"from,omitempty"`  // golden image
	Size  string `json:"size,omitempty"`  // "8GiB"
}

// String is the stanza as TOML, one key a line, ending in a newline.
func (s HostStanza) String() string {
	var b strings.Builder
	b.WriteString("[[host]]\n")
	kv := func(key, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-4s = %s\n", key, quote(value))
		}
	}
	kv("name", s.Name)
	kv("mac", s.MAC)
	kv("ip", s.IP)
	kv("boot", s.Boot)
	if r := s.Root; r != nil {
		var parts []string
		for _, f := range []struct{ key, value string }{{"image", r.Image}, {"rbd", r.RBD}, {"from", r.From}, {"size", r.Size}} {
			if f.value != "" {
				parts = append(parts, f.key+" = "+quote(f.value))
			}
		}
		fmt.Fprintf(&b, "root = { %s }\n", strings.Join(parts, ", "))
	}
	kv("serial", s.Serial)
	return b.String()
}

// quote writes v as a TOML basic string.
func quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// NewRoot is the root of a new host name cloned from golden image from
// (none when from is ""), at size (the golden image's when ""): an image
// under data_dir/roots, or an RBD image in the golden image's pool when
// that is one. A size without from is an empty root of that size.
func (inv *Inventory) NewRoot(name, from, size string) *RootStanza {
	if from == "" && size == "" {
		return nil
	}
	r := &RootStanza{Image: "roots/" + name + ".img", From: from, Size: size}
	if img := inv.ImageByName(from); img != nil && img.RBD != "" {
		pool, _, _ := strings.Cut(img.RBD, "/")
		r.Image, r.RBD = "", pool+"/"+name
	}
	return r
}

// Suggest is, for each of macs, a [[host]] that check accepts with all of
// them added: a name ("host-" and the MAC's last three bytes) that no host
// or target has and no host's root file uses, a fixed address free outside
// the pool (none without a subnet: the host then gets a pool address),
// and a root cloned from golden image from, or boot = "menu" when from is "".
func (inv *Inventory) Suggest(macs []net.HardwareAddr, from string) []HostStanza {
	names := inv.takenNames()
	addrs := inv.takenAddrs()
	out := make([]HostStanza, 0, len(macs))
	for _, mac := range macs {
		base := "host-" + strings.ReplaceAll(mac.String(), ":", "")
		if len(mac) == 6 {
			base = fmt.Sprintf("host-%02x%02x%02x", mac[3], mac[4], mac[5])
		}
		name := base
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		names[name] = true
		s := HostStanza{Name: name, MAC: mac.String(), Boot: BootMenu}
		if a := inv.freeAddr(addrs); a.IsValid() {
			s.IP = a.String()
			addrs[a] = true
		}
		if from != "" {
			s.Boot, s.Root = BootSAN, inv.NewRoot(name, from, "")
		}
		out = append(out, s)
	}
	return out
}

// takenNames are the names a new host must not have: every host's and
// target's, and the name of every host's root file (roots/NAME.img) or
// RBD image.
func (inv *Inventory) takenNames() map[string]bool {
	taken := map[string]bool{}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		taken[h.Name] = true
		switch r := h.Root; {
		case r == nil:
		case r.Image != "":
			taken[strings.TrimSuffix(filepath.Base(r.Image), ".img")] = true
		case r.RBD != "":
			taken[r.RBD[strings.LastIndexByte(r.RBD, '/')+1:]] = true
		}
	}
	for i := range inv.Targets {
		taken[inv.Targets[i].Name] = true
	}
	return taken
}

// takenAddrs are the addresses of the subnet a new host's fixed ip must
// not be: netsan's own, the router's, the DNS servers' and every host's.
func (inv *Inventory) takenAddrs() map[netip.Addr]bool {
	taken := map[netip.Addr]bool{inv.Server.Address.Addr: true, inv.DHCP.Router.Addr: true}
	for _, a := range inv.DHCP.DNS {
		taken[a.Addr] = true
	}
	for i := range inv.Hosts {
		taken[inv.Hosts[i].IP.Addr] = true
	}
	return taken
}
