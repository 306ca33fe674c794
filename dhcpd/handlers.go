package dhcpd

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/inventory"
	"go.uber.org/zap/zapcore"
)

// Kind is what a client is, as far as booting goes; it labels the metrics.
type Kind string

// Client kinds.
const (
	KindPXE      Kind = "pxe"      // PXE firmware (option 60 PXEClient…): gets an iPXE loader
	KindHTTPBoot Kind = "httpboot" // UEFI HTTP Boot (option 60 HTTPClient…): gets the loader's URL
	KindIPXE     Kind = "ipxe"     // iPXE (option 77 "iPXE" or option 175): gets its script URL
	KindPi       Kind = "pi"       // Raspberry Pi boot ROM/EEPROM: gets option 43 "Raspberry Pi Boot"
	KindOther    Kind = "other"    // an OS's DHCP client: an address and nothing to boot
)

var kinds = []Kind{KindPXE, KindHTTPBoot, KindIPXE, KindPi, KindOther}

// iPXE's encapsulated option space (option 175) and the sub-options netsan
// sends. 175.9 skip-san-boot is deliberately absent: it also silences the
// script's own sanboot (SPEC.md).
const (
	optIPXE          = 175
	optIPXEKeepSAN   = 8
	optIPXENoPXEDHCP = 176
	optIPXEUsername  = 190
	optIPXEPassword  = 191
	optIPXERUsername = 192 // mutual CHAP: the name the target must give
	optIPXERPassword = 193
	optISCSIInitIQN  = 203 // RFC 4173's initiator IQN as iPXE reads it
)

// PXE vendor sub-options (option 43 when option 60 is PXEClient; PXE 2.1 spec).
const (
	pxeDiscoveryControl = 6
	pxeBootMenu         = 9
	pxeMenuPrompt       = 10
	pxeEnd              = 255
	// Discovery control bit 3: boot the file named in this packet, no
	// boot-server discovery and no menu.
	pxeUseBootfile = 0x08
)

// piBootString is what the Raspberry Pi boot ROM looks for in option 43.
const piBootString = "Raspberry Pi Boot"

// piOUIs are the Raspberry Pi Foundation / Raspberry Pi Ltd MAC prefixes.
// A Pi's vendor class is a BIOS PC's, so this (or a serial in the inventory)
// is how a Pi is known.
var piOUIs = [][3]byte{
	{0xb8, 0x27, 0xeb}, {0xdc, 0xa6, 0x32}, {0xe4, 0x5f, 0x01},
	{0x28, 0xcd, 0xc1}, {0xd8, 0x3a, 0xdd}, {0x2c, 0xcf, 0x67},
}

// handler is one step of the boot decision. It reads the request, writes the
// reply and what it learnt into x, and returns true to end the chain (the
// reply is then sent only if x.send is set).
type handler func(x *exchange, req, resp *dhcpv4.DHCPv4) (stop bool)

// chain is the decision, in order.
var chain = []handler{
	(*exchange).classify,
	(*exchange).address,
	(*exchange).boot,
	(*exchange).san,
	(*exchange).pi,
}

// exchange is one request's context through the chain.
type exchange struct {
	cfg    *config
	leases *leaseTable
	now    time.Time
	// pxePort: the request came to the proxyDHCP boot-server port (4011).
	pxePort bool

	host     *inventory.Host
	kind     Kind
	arch     iana.Arch
	ip       netip.Addr // the address told to the client (yiaddr), if any
	file     string
	send     bool          // a reply is to be sent
	persist  bool          // the lease store changed: sync before the reply leaves
	claim    bool          // an ACK of x.ip: bind it in finish, if the chain still ACKs
	reserved bool          // a pool address was held for an OFFER
	op       action        // what was decided
	reason   string        // why, for the log line when it is not obvious
	level    zapcore.Level // of the decision's log line
}

// action is what the server decided for a request: the log line's message
// and the "op" label of the reply counter.
type action string

// Actions.
const (
	actOffer   action = "offer"   // DHCPOFFER
	actAck     action = "ack"     // DHCPACK, to a REQUEST or an INFORM (in proxy mode)
	actInform  action = "inform"  // DHCPACK to an INFORM, options only
	actNak     action = "nak"     // DHCPNAK
	actRelease action = "release" // a lease ended, no reply
	actDecline action = "decline" // an address quarantined, no reply
	actIgnore  action = "ignore"  // no reply
)

// ignore ends the chain without a reply; the log line is debug-level
// unless the caller raises it.
func (x *exchange) ignore(reason string) bool {
	x.op, x.reason, x.send = actIgnore, reason, false
	x.level = zapcore.DebugLevel
	return true
}

// nak ends the chain with a DHCPNAK.
func (x *exchange) nak(resp *dhcpv4.DHCPv4, reason string) bool {
	x.op, x.reason, x.send = actNak, reason, true
	x.ip = netip.Addr{}
	resp.YourIPAddr = net.IPv4zero
	resp.ServerIPAddr = net.IPv4zero
	resp.BootFileName = ""
	resp.Options = dhcpv4.Options{}
	resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeNak))
	resp.UpdateOption(dhcpv4.OptServerIdentifier(x.cfg.server.AsSlice()))
	resp.UpdateOption(dhcpv4.OptMessage(reason))
	return true
}

// finish applies to the lease store what the whole chain decided: an ACK
// binds its address (atomically with the check that nobody else took it
// meanwhile, else it becomes a NAK); a DISCOVER that ends in silence (no
// loader for the client's architecture, say) releases the address held for it.
func (x *exchange) finish(req, resp *dhcpv4.DHCPv4) {
	switch {
	case x.claim && x.send && x.op == actAck:
		if !x.leases.claim(x.ip, req.ClientHWAddr, x.hostName(), x.now.Add(x.cfg.leaseTime), x.now) {
			x.nak(resp, "address in use")
			return
		}
		x.persist = true
	case x.reserved && !x.send:
		x.leases.dropOffer(req.ClientHWAddr)
	}
}

// classify finds the inventory host and the client kind and architecture.
func (x *exchange) classify(req, resp *dhcpv4.DHCPv4) bool {
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return x.ignore("not an Ethernet client")
	}
	x.host = x.cfg.inv.HostByMAC(req.ClientHWAddr)
	x.arch = clientArch(req)
	x.kind = classifyKind(req, x.host, x.arch)
	return false
}

func classifyKind(req *dhcpv4.DHCPv4, host *inventory.Host, arch iana.Arch) Kind {
	if isIPXE(req) {
		return KindIPXE
	}
	// The Pi's boot ROM calls itself a BIOS PC (architecture 0); a Pi
	// running UEFI firmware says arm64 and boots as any UEFI machine does.
	if arch == iana.INTEL_X86PC && (isPi(req.ClientHWAddr) || (host != nil && host.Serial != "")) {
		return KindPi
	}
	switch vc := req.ClassIdentifier(); {
	case strings.HasPrefix(vc, "PXEClient"):
		return KindPXE
	case strings.HasPrefix(vc, "HTTPClient"):
		return KindHTTPBoot
	}
	return KindOther
}

// isIPXE: iPXE sends option 175 with its features, and user class "iPXE"
// (as raw bytes, not in RFC 3004 form; both are accepted).
func isIPXE(req *dhcpv4.DHCPv4) bool {
	if req.Options.Has(dhcpv4.GenericOptionCode(optIPXE)) {
		return true
	}
	if bytes.Equal(req.Options.Get(dhcpv4.OptionUserClassInformation), []byte("iPXE")) {
		return true
	}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			return true
		}
	}
	return false
}

func isPi(mac net.HardwareAddr) bool {
	if len(mac) < 3 {
		return false
	}
	for _, p := range piOUIs {
		if mac[0] == p[0] && mac[1] == p[1] && mac[2] == p[2] {
			return true
		}
	}
	return false
}

// clientArch is option 93's first entry (RFC 4578), else the Arch field of
// a "PXEClient:Arch:xxxxx:UNDI:yyyzzz" (or HTTPClient:…) vendor class, else
// 0 (BIOS).
func clientArch(req *dhcpv4.DHCPv4) iana.Arch {
	if a := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 {
		return iana.Arch(uint16(a[0])<<8 | uint16(a[1]))
	}
	f := strings.Split(req.ClassIdentifier(), ":")
	if len(f) >= 3 && (f[0] == "PXEClient" || f[0] == "HTTPClient") && f[1] == "Arch" {
		if n, err := strconv.ParseUint(f[2], 10, 16); err == nil {
			return iana.Arch(n)
		}
	}
	return iana.INTEL_X86PC
}

// address decides yiaddr and the lease (authoritative), or that there is
// none (proxy), and the message type of the reply.
func (x *exchange) address(req, resp *dhcpv4.DHCPv4) bool {
	if x.cfg.proxy {
		return x.proxyAddress(req, resp)
	}
	if gi := ip4(req.GatewayIPAddr); gi.IsValid() && x.cfg.subnet.IsValid() && !x.cfg.subnet.Contains(gi) {
		// The relay's own address names the client's subnet (RFC 2131 4.3.1);
		// netsan has addresses for one subnet only.
		x.ignore("relayed from " + gi.String() + ", outside dhcp.subnet " + x.cfg.subnet.String())
		x.level = zapcore.InfoLevel
		return true
	}
	mac := req.ClientHWAddr
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip, why := x.choose(req)
		if !ip.IsValid() {
			x.ignore(why)
			// An operator asks "why does this box get no address?": say it.
			x.level = zapcore.InfoLevel
			if x.host != nil {
				x.level = zapcore.WarnLevel
			}
			return true
		}
		x.give(resp, ip, actOffer)
		return false

	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(x.cfg.server.AsSlice()) {
			// SELECTING another server's offer: release what we reserved.
			x.leases.dropOffer(mac)
			return x.ignore("client chose server " + sid.String())
		}
		ip := ip4(req.RequestedIPAddress())
		if !ip.IsValid() {
			ip = ip4(req.ClientIPAddr)
		}
		if !ip.IsValid() {
			return x.ignore("request names no address")
		}
		if why := x.refuse(ip, mac); why != "" {
			return x.nak(resp, why)
		}
		// The binding is made when the whole chain agrees to ACK (finish).
		x.claim = true
		x.give(resp, ip, actAck)
		return false

	case dhcpv4.MessageTypeDecline:
		ip := ip4(req.RequestedIPAddress())
		if sid := req.ServerIdentifier(); !ip.IsValid() || sid == nil || !sid.Equal(x.cfg.server.AsSlice()) {
			return x.ignore("decline not for us")
		}
		x.ip, x.op, x.level = ip, actDecline, zapcore.WarnLevel
		x.reason = "client found the address in use; quarantined"
		x.leases.decline(ip, mac, x.now.Add(declineHold))
		x.persist = true
		return true

	case dhcpv4.MessageTypeRelease:
		ip := ip4(req.ClientIPAddr)
		x.ip, x.op = ip, actRelease
		if x.leases.release(ip, mac, x.now) {
			x.persist = true
		} else {
			x.reason = "no such lease"
		}
		return true

	case dhcpv4.MessageTypeInform:
		// RFC 2131 4.3.5: options only, no lease, no yiaddr.
		x.ip = ip4(req.ClientIPAddr)
		x.op, x.send = actInform, true
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
		x.networkOptions(resp)
		return false
	}
	return x.ignore("message type " + req.MessageType().String())
}

// fixedIP: an inventory host with an ip gets that; one without (allowed,
// e.g. in an inventory also used in proxy mode) is served from the pool.
func (x *exchange) fixedIP() bool { return x.host != nil && x.host.IP.IsValid() }

// choose is the address to offer: the host's fixed one, else from the pool.
func (x *exchange) choose(req *dhcpv4.DHCPv4) (netip.Addr, string) {
	mac := req.ClientHWAddr
	if x.fixedIP() {
		ip := x.host.IP.Addr
		switch l, held := x.leases.holder(ip, x.now); {
		case held && l.State == StateDeclined:
			return netip.Addr{}, fmt.Sprintf("fixed address %s was declined (another machine answers ARP for it); quarantined", ip)
		case held && l.heldFrom(mac):
			return netip.Addr{}, fmt.Sprintf("fixed address %s is leased to %s", ip, l.MAC)
		}
		return ip, ""
	}
	if !x.cfg.pool.first.IsValid() {
		return netip.Addr{}, "unknown client, static-only"
	}
	ip, ok := x.leases.allocate(x.cfg.pool, mac, ip4(req.RequestedIPAddress()), x.cfg.isReserved, x.now)
	if !ok {
		return netip.Addr{}, "pool exhausted"
	}
	x.reserved = true
	return ip, ""
}

// refuse says why a client may not have ip (RFC 2131 4.3.2), or "".
func (x *exchange) refuse(ip netip.Addr, mac net.HardwareAddr) string {
	if x.fixedIP() {
		if ip != x.host.IP.Addr {
			return "not your address: yours is " + x.host.IP.String()
		}
		switch l, held := x.leases.holder(ip, x.now); {
		case held && l.State == StateDeclined:
			return "address declined (another machine answers ARP for it)"
		case held && l.heldFrom(mac):
			return "address leased to " + l.MAC
		}
		return ""
	}
	switch {
	case !x.cfg.subnet.Contains(ip):
		return "wrong network"
	case !x.cfg.pool.contains(ip):
		return "address not in the pool"
	case x.cfg.isReserved(ip):
		return "address reserved for an inventory host"
	case !x.leases.Usable(ip, mac, x.now):
		return "address in use"
	}
	return ""
}

// give fills an OFFER or ACK (a is actOffer or actAck) for ip with the
// lease and network options.
func (x *exchange) give(resp *dhcpv4.DHCPv4, ip netip.Addr, a action) {
	x.ip, x.send, x.op = ip, true, a
	mt := dhcpv4.MessageTypeOffer
	if a == actAck {
		mt = dhcpv4.MessageTypeAck
	}
	resp.UpdateOption(dhcpv4.OptMessageType(mt))
	resp.YourIPAddr = ip.AsSlice()
	lt := x.cfg.leaseTime
	resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	x.networkOptions(resp)
}

func (x *exchange) networkOptions(resp *dhcpv4.DHCPv4) {
	c := x.cfg
	resp.UpdateOption(dhcpv4.OptServerIdentifier(c.server.AsSlice()))
	if c.subnet.IsValid() {
		resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(c.subnet.Bits(), 32)))
	}
	if r := c.inv.DHCP.Router; r.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(r.AsSlice()))
	}
	if len(c.inv.DHCP.DNS) > 0 {
		var dns []net.IP
		for _, a := range c.inv.DHCP.DNS {
			dns = append(dns, a.AsSlice())
		}
		resp.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	if d := c.inv.DHCP.Domain; d != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(d))
	}
	if x.host != nil {
		resp.UpdateOption(dhcpv4.OptHostName(x.host.Name))
	}
}

// proxyAddress: beside another DHCP server netsan gives no address, and
// answers only boot firmware (PXE spec 2.1, proxyDHCP): a DHCPOFFER to a
// DISCOVER on port 67 (its boot file is used as is: 43.6 bit 3), a DHCPACK
// to a REQUEST or INFORM on 4011. A REQUEST on 67 is always the DHCP
// server's, even when it names netsan's address: on a host that runs both,
// the two share it, and an ACK from netsan would be a second, address-less one.
func (x *exchange) proxyAddress(req, resp *dhcpv4.DHCPv4) bool {
	if x.kind == KindOther {
		return x.ignore("proxy mode: not a boot client")
	}
	mt := req.MessageType()
	switch {
	case !x.pxePort && mt == dhcpv4.MessageTypeDiscover:
		x.op = actOffer
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	case x.pxePort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		x.op = actAck
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
	default:
		return x.ignore("proxy mode: " + mt.String() + " is the DHCP server's")
	}
	x.send = true
	resp.YourIPAddr = net.IPv4zero
	resp.UpdateOption(dhcpv4.OptServerIdentifier(x.cfg.server.AsSlice()))
	// Option 97 (the client's UUID) is echoed as the PXE spec requires.
	if uuid := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
	if x.kind == KindHTTPBoot {
		// EDK2's HttpBootDxe takes an offer with no yiaddr, option 60
		// HTTPClient (boot sets it) and a URL with an IP address as a
		// proxy offer, beside the DHCP server's; option 43 is PXE's.
		return false
	}
	// A PXE proxy offer is recognised by option 60 PXEClient.
	resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation,
		[]byte{pxeDiscoveryControl, 1, pxeUseBootfile, pxeEnd}))
	return false
}

// boot names what the client runs next: the iPXE loader for its
// architecture (a TFTP file name, or a URL for UEFI HTTP Boot), or (to iPXE
// itself) its per-host script, never the loader again so there is no
// chainload loop.
func (x *exchange) boot(req, resp *dhcpv4.DHCPv4) bool {
	c := x.cfg
	switch x.kind {
	case KindIPXE:
		x.file = c.scriptURL(req.ClientHWAddr)
	case KindPXE, KindHTTPBoot:
		f, why := c.loader(x.kind, x.arch)
		if x.host != nil && x.host.SecureBoot && secureBootArch[x.arch] {
			f, why = c.shim(x.kind)
		}
		if why != "" {
			x.ignore(why)
			x.level = zapcore.WarnLevel
			return true
		}
		x.file = f
		if x.kind == KindHTTPBoot {
			// UEFI 2.x HTTP Boot: option 60 HTTPClient and the URI in
			// the file field; no next-server, no TFTP.
			resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
			resp.BootFileName = f
			return false
		}
	case KindPi:
		// The Pi asks for its own files (bootcode.bin, <serial>/start4.elf):
		// it needs the server, not a file name.
	default:
		return false
	}
	resp.ServerIPAddr = c.server.AsSlice()
	resp.BootFileName = x.file
	resp.UpdateOption(dhcpv4.OptTFTPServerName(c.server.String()))
	return false
}

// san gives an inventory host its iSCSI identity: 203 always, root-path and
// keep-san only when it boots from SAN (a boot = "linux" host's iPXE must
// not hook the drive), CHAP only here (the reply goes to the host's own MAC,
// as HostByMAC found it) and not to a boot = "linux" host.
func (x *exchange) san(req, resp *dhcpv4.DHCPv4) bool {
	inv := x.cfg.inv
	h := x.host
	if h != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optISCSIInitIQN), []byte(inv.InitiatorIQN(h))))
		if h.BootsFromSAN() {
			resp.UpdateOption(dhcpv4.OptRootPath(inv.RootPath(h)))
		}
	}
	if x.kind != KindIPXE {
		return false
	}
	var enc []byte
	if h != nil && h.BootsFromSAN() {
		enc = appendSubopt(enc, optIPXEKeepSAN, []byte{1})
	}
	if !x.cfg.proxy {
		// netsan is the only DHCP server: iPXE need not wait for proxy offers.
		enc = appendSubopt(enc, optIPXENoPXEDHCP, []byte{1})
	}
	// A boot = "linux" host's iPXE never logs in: its initramfs does, with
	// the secret its own script carries.
	if h != nil && h.CHAP != nil && h.CHAP.User != "" && h.Boot != inventory.BootLinux {
		enc = appendSubopt(enc, optIPXEUsername, []byte(h.CHAP.User))
		enc = appendSubopt(enc, optIPXEPassword, []byte(h.CHAP.Secret))
		if h.CHAP.Mutual() {
			ru := h.CHAP.MutualUser
			if ru == "" {
				ru = inv.TargetIQN(h)
			}
			enc = appendSubopt(enc, optIPXERUsername, []byte(ru))
			enc = appendSubopt(enc, optIPXERPassword, []byte(h.CHAP.MutualSecret))
		}
	}
	if len(enc) > 0 {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optIPXE), enc))
	}
	return false
}

// pi adds what the Raspberry Pi boot ROM checks before it trusts a reply:
// option 60 PXEClient and option 43 with a PXE boot menu entry
// "Raspberry Pi Boot" (sub-option 9) and a menu prompt (sub-option 10).
// A PC never gets this option 43.
func (x *exchange) pi(req, resp *dhcpv4.DHCPv4) bool {
	if x.kind != KindPi {
		return false
	}
	var v []byte
	item := append([]byte{0, 0, byte(len(piBootString))}, piBootString...) // type 0, description
	v = appendSubopt(v, pxeBootMenu, item)
	v = appendSubopt(v, pxeMenuPrompt, append([]byte{0}, "PXE"...)) // timeout 0, prompt
	v = append(v, pxeEnd)
	resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, v))
	return false
}

func appendSubopt(b []byte, code byte, v []byte) []byte {
	if len(v) > 255 {
		v = v[:255]
	}
	b = append(b, code, byte(len(v)))
	return append(b, v...)
}

func (x *exchange) hostName() string {
	if x.host == nil {
		return ""
	}
	return x.host.Name
}

// ip4 converts a packet address; 0.0.0.0 and garbage give the zero Addr.
func ip4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
