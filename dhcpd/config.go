package dhcpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/inventory"
)

// loaderFiles are the iPXE builds, by client architecture (RFC 4578 option
// 93), in order of preference; the first that exists in tftp.ipxe_dir is
// given. snponly.efi is the fallback where only it is installed.
var loaderFiles = map[iana.Arch][]string{
	iana.INTEL_X86PC: {"undionly.kpxe"},
	iana.EFI_IA32:    {"ipxe.efi", "snponly.efi"},
	iana.EFI_X86_64:  {"ipxe.efi", "snponly.efi"},
	iana.EFI_BC:      {"ipxe.efi", "snponly.efi"},
	// Debian's ipxe package has no arm64 build; one dropped into ipxe_dir
	// under either name (flat: tftpd serves ipxe_dir by base name) is used.
	iana.EFI_ARM64: {"ipxe-arm64.efi", "snp-arm64.efi"},
}

// config is the server's view of one inventory, built once per (re)load and
// swapped atomically, so a request sees one consistent inventory.
type config struct {
	inv       *inventory.Inventory
	server    netip.Addr
	subnet    netip.Prefix
	pool      pool
	leaseTime time.Duration
	proxy     bool
	loaders   map[iana.Arch]string // arch → loader file present in ipxe_dir
	reserved  map[netip.Addr]bool  // inventory host addresses and the server's own
	listen    *net.UDPAddr
}

// newConfig takes inv as inventory.Load made it: defaults filled in
// (mode, listen, lease_time) and checked (server.address and the range are
// IPv4, the range lies in the subnet and runs forwards).
func newConfig(inv *inventory.Inventory) (*config, error) {
	if inv == nil {
		return nil, errors.New("dhcp: no inventory")
	}
	d := &inv.DHCP
	c := &config{
		inv:       inv,
		server:    inv.Server.Address.Addr,
		subnet:    d.Subnet.Prefix,
		leaseTime: d.LeaseTime.Duration,
		proxy:     d.Mode == inventory.ModeProxy,
		loaders:   map[iana.Arch]string{},
		reserved:  map[netip.Addr]bool{},
	}
	if len(d.Range) == 2 && !c.proxy {
		c.pool = pool{first: d.Range[0].Addr, last: d.Range[1].Addr}
	}
	ua, err := net.ResolveUDPAddr("udp4", d.Listen)
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen %q: %w", d.Listen, err)
	}
	c.listen = ua
	c.reserved[c.server] = true
	for i := range inv.Hosts {
		if ip := inv.Hosts[i].IP.Addr; ip.IsValid() {
			c.reserved[ip] = true
		}
	}
	for arch := range loaderFiles {
		if n := FindLoader(inv.TFTP.IPXEDir, arch); n != "" {
			c.loaders[arch] = n
		}
	}
	return c, nil
}

// LoaderFiles names the iPXE builds a client of arch is given, in order of
// preference.
func LoaderFiles(arch iana.Arch) []string { return slices.Clone(loaderFiles[arch]) }

// FindLoader returns the first of arch's loaders that is a file in dir, or "".
func FindLoader(dir string, arch iana.Arch) string {
	if dir == "" {
		return ""
	}
	for _, n := range loaderFiles[arch] {
		if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Mode().IsRegular() {
			return n
		}
	}
	return ""
}

func (c *config) isReserved(ip netip.Addr) bool { return c.reserved[ip] }

// clientPort is where replies to clients go: 68 beside 67, and "server port
// + 1" for a server on a test port, as dnsmasq's --dhcp-alternate-port does.
func (c *config) clientPort() int { return c.listen.Port + 1 }

// scriptURL is the per-host iPXE script, over HTTP when it runs, else TFTP.
func (c *config) scriptURL(mac net.HardwareAddr) string {
	inv := c.inv
	name := bootmenu.ScriptName(mac)
	if inv.HTTP.On() {
		return "http://" + net.JoinHostPort(c.server.String(), strconv.Itoa(inv.HTTP.Port())) + "/" + name
	}
	host := c.server.String()
	if p := inv.TFTP.Port(); p != 69 {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return "tftp://" + host + "/" + name
}
