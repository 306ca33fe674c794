package dhcpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"
	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/inventory"
)

// loaderFiles are the iPXE builds, by client architecture (RFC 4578 option
// 93; 15-19 are UEFI HTTP Boot's), in order of preference; the first found
// (ipxe_dir first, then tftp.root) is given. snponly.efi is the fallback
// where only it is installed. An architecture missing here, or whose files
// are nowhere, gets no offer: never another platform's loader.
var loaderFiles = map[iana.Arch][]string{
	iana.INTEL_X86PC: {"undionly.kpxe"},
	iana.EFI_IA32:    x64EFI, // SPEC.md: 6/7/9 → ipxe.efi
	iana.EFI_X86_64:  x64EFI,
	iana.EFI_BC:      x64EFI,
	iana.EFI_ARM32:   arm32EFI,
	iana.EFI_ARM64:   arm64EFI,

	iana.EFI_X86_64_HTTP: x64EFI,
	iana.EFI_ARM64_HTTP:  arm64EFI,
	iana.EFI_ARM32_HTTP:  arm32EFI,
	// A 32-bit UEFI's HTTP Boot gets a 32-bit build or nothing.
	iana.EFI_X86_HTTP: {"ipxe-i386.efi", "snp-i386.efi"},
}

// The iPXE builds by platform. Debian's ipxe package has x86-64 only; an
// arm build (iPXE's bin-arm64-efi/snp.efi, say) is dropped into ipxe_dir or
// tftp.root under one of these names (flat: both are served by base name).
var (
	x64EFI   = []string{"ipxe.efi", "snponly.efi"}
	arm64EFI = []string{"ipxe-arm64.efi", "snp-arm64.efi"}
	arm32EFI = []string{"ipxe-arm32.efi", "snp-arm32.efi"}
)

// config is the server's view of one inventory, built once per (re)load and
// swapped atomically, so a request sees one consistent inventory.
type config struct {
	inv       *inventory.Inventory
	server    netip.Addr
	subnet    netip.Prefix
	pool      pool
	leaseTime time.Duration
	proxy     bool
	loaders   map[iana.Arch]string // arch → loader file present in ipxe_dir or tftp.root
	reserved  map[netip.Addr]bool  // inventory host addresses and the server's own
	listen    *net.UDPAddr
	// noShim says which of the Secure Boot chain's files (shim, GRUB) is
	// nowhere to be served; "" when both are there.
	noShim string
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
		if n := FindLoader(inv, arch); n != "" {
			c.loaders[arch] = n
		}
	}
	c.noShim = bootmenu.MissingSigned(inv)
	return c, nil
}

// secureBootArch are the clients a secure_boot host's chain is for: x86-64
// UEFI (7, 9; Debian's shim and GRUB are x86-64 builds), and its HTTP Boot
// (16), which shim would take but Debian's network GRUB could not follow.
// Others (BIOS: no Secure Boot) get their iPXE loader.
var secureBootArch = map[iana.Arch]bool{iana.EFI_BC: true, iana.EFI_X86_64: true, iana.EFI_X86_64_HTTP: true}

// shim is what a secure_boot host's x86-64 UEFI firmware of kind runs
// first: shim over TFTP (iPXE is not signed), which fetches GRUB beside
// it. why says, for the log, why there is none.
func (c *config) shim(kind Kind) (file, why string) {
	switch {
	case kind == KindHTTPBoot:
		return "", "secure_boot host by UEFI HTTP Boot: Debian's signed network GRUB fetches over TFTP only; it boots by UEFI PXE"
	case c.noShim != "":
		return "", "secure_boot host: nowhere to serve " + c.noShim + " from"
	}
	return bootmenu.ShimName, ""
}

// loader names what boot firmware of kind and arch runs next: the iPXE
// build for its architecture, as a TFTP file name for PXE firmware or as a
// URL for UEFI HTTP Boot. why says, for the log, why there is none.
func (c *config) loader(kind Kind, arch iana.Arch) (file, why string) {
	f, ok := c.loaders[arch]
	switch {
	case !ok && len(loaderFiles[arch]) == 0:
		return "", fmt.Sprintf("no iPXE loader for client architecture %d (%s): netsan knows no build for it", arch, arch)
	case !ok:
		where := "ipxe_dir " + c.inv.TFTP.IPXEDir
		if r := c.inv.TFTP.Root; r != "" {
			where += " or tftp.root " + r
		}
		return "", fmt.Sprintf("no iPXE loader for client architecture %d (%s): none of %s in %s",
			arch, arch, strings.Join(loaderFiles[arch], ", "), where)
	case kind == KindHTTPBoot && !c.inv.HTTP.On():
		return "", fmt.Sprintf("UEFI HTTP Boot client (architecture %d, %s) and [http] is off: nothing serves %s over HTTP", arch, arch, f)
	case kind == KindHTTPBoot:
		return c.httpURL(f), ""
	}
	return f, ""
}

// LoaderFiles names the iPXE builds a client of arch is given, in order of
// preference.
func LoaderFiles(arch iana.Arch) []string { return slices.Clone(loaderFiles[arch]) }

// FindLoader returns the first of arch's loaders that is a file in
// ipxe_dir, else in tftp.root (the order bootmenu's resolver serves a base
// name from), or "".
func FindLoader(inv *inventory.Inventory, arch iana.Arch) string {
	for _, dir := range []string{inv.TFTP.IPXEDir, inv.TFTP.Root} {
		if dir == "" {
			continue
		}
		for _, n := range loaderFiles[arch] {
			if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Mode().IsRegular() {
				return n
			}
		}
	}
	return ""
}

func (c *config) isReserved(ip netip.Addr) bool { return c.reserved[ip] }

// clientPort is where replies to clients go: 68 beside 67, and "server port
// + 1" for a server on a test port, as dnsmasq's --dhcp-alternate-port does.
func (c *config) clientPort() int { return c.listen.Port + 1 }

// httpURL is name on netsan's HTTP server.
func (c *config) httpURL(name string) string { return c.inv.HTTPURL(c.server, name) }

// scriptURL is the per-host iPXE script, over HTTP when it runs, else TFTP.
func (c *config) scriptURL(mac net.HardwareAddr) string {
	return c.inv.FileURL(c.server, bootmenu.ScriptName(mac))
}
