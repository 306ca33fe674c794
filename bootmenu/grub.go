package bootmenu

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/netsan/netsan/inventory"
)

// The UEFI Secure Boot chain of a secure_boot host, by the names its
// programs ask for over TFTP. iPXE is not signed, so such a host's firmware
// is given shim (signed by Microsoft's UEFI CA), shim fetches GRUB (signed
// by Debian, whose key shim carries) from the directory it came from, and
// GRUB reads its configuration and the kernel (signed by Debian; GRUB has
// shim check it) and the initramfs (checked by nobody).
const (
	// ShimName is the DHCP file name of a secure_boot host's UEFI PXE.
	ShimName = "shimx64.efi"
	// GRUBName is what shim fetches next (its DEFAULT_LOADER), beside itself.
	GRUBName = "grubx64.efi"
	// grubConfig is what Debian's signed network GRUB reads first: the
	// prefix built into grubnetx64 is /grub, and its embedded config
	// sources $prefix/grub.cfg (no per-MAC search, unlike GRUB's own
	// net config lookup). netsan's grubConfig goes on to grub/<MAC>.cfg.
	grubConfig = "grub/grub.cfg"
)

// debianSigned is where Debian's packages install the signed shim
// (shim-signed) and network GRUB (grub-efi-amd64-signed), by the name
// netsan serves each under.
var debianSigned = map[string]string{
	ShimName: "/usr/lib/shim/shimx64.efi.signed",
	GRUBName: "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
}

// SignedLoader is the file served as name (ShimName, GRUBName): tftp.root's
// file of that name, else the one Debian's package installs; "" when
// neither is a regular file.
func SignedLoader(inv *inventory.Inventory, name string) string {
	return findSigned(inv.TFTP.Root, name, debianSigned)
}

// MissingSigned names the files of the Secure Boot chain that are in
// neither tftp.root nor where Debian's packages put them, with where they
// would be, for check and for the log line of a secure_boot host that
// gets no offer; "" when both are there.
func MissingSigned(inv *inventory.Inventory) string {
	var missing []string
	for _, n := range []string{ShimName, GRUBName} {
		if SignedLoader(inv, n) == "" {
			pkg := "grub-efi-amd64-signed"
			if n == ShimName {
				pkg = "shim-signed"
			}
			missing = append(missing, fmt.Sprintf("%s (tftp.root or %s, package %s)", n, debianSigned[n], pkg))
		}
	}
	return strings.Join(missing, ", ")
}

func findSigned(root, name string, system map[string]string) string {
	var where []string
	if root != "" {
		where = append(where, filepath.Join(root, name))
	}
	if p := system[name]; p != "" {
		where = append(where, p)
	}
	for _, p := range where {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// signed opens Debian's signed shim or GRUB for a name tftp.root does not
// have. Like ipxe_dir's loaders, these are system files: only the two
// names are ever looked up, so a client cannot walk anywhere else.
func (st *state) signed(name string) (*File, error) {
	p := st.system[name]
	if p == "" {
		return nil, ErrNotFound
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("signed loader %s: %w: %w", name, ErrForbidden, err)
	}
	return regular(f, name, p, KindLoader)
}

// GRUBConfigName is the name of mac's GRUB configuration, grub/52-54-00-00-00-01.cfg.
func GRUBConfigName(mac net.HardwareAddr) string {
	return "grub/" + inventory.MAC{HardwareAddr: mac}.Hyphens() + ".cfg"
}

// ParseGRUBConfigName recognises a GRUBConfigName and returns its MAC; the
// MAC may be written with colons, as GRUB's $net_default_mac has it.
func ParseGRUBConfigName(name string) (net.HardwareAddr, bool) {
	return parseMACName(name, "grub/", ".cfg")
}

// GRUBData is what the GRUB templates see. Kernel, Initrd and Args are
// already GRUB words (grubWord): a value cannot change the script.
type GRUBData struct {
	Name   string // host name
	MAC    string // 52:54:00:00:00:01
	Kernel string // /debian12/vmlinuz: under tftp.root, on the TFTP server GRUB came from
	Initrd string // /debian12/initrd.img
	Args   string // the kernel command line, word by word
}

// grubStub renders grub/grub.cfg: the same for every machine, it sources
// the asking machine's own file.
func (st *state) grubStub() (*File, error) {
	b, err := st.tmpl.render(tmplGRUBStub, nil)
	if err != nil {
		return nil, err
	}
	return generated(KindScript, b), nil
}

// grubHost renders grub/<mac>.cfg for a boot = "linux" host: its kernel,
// initramfs and command line. With CHAP the command line carries the
// secret: Resolve then lets it go to the host only.
func (st *state) grubHost(mac net.HardwareAddr) (*File, error) {
	h := st.inv.HostByMAC(mac)
	if h == nil || h.Boot != inventory.BootLinux {
		return nil, fmt.Errorf("%s: no boot = \"linux\" host has MAC %s: %w", GRUBConfigName(mac), mac, ErrNotFound)
	}
	words, err := st.kernelArgs(h)
	if err != nil {
		return nil, err
	}
	for i, w := range words {
		words[i] = grubWord(w)
	}
	d := GRUBData{
		Name:   grubWord(h.Name),
		MAC:    grubWord(h.MAC.String()),
		Kernel: grubWord("/" + h.Kernel),
		Initrd: grubWord("/" + h.Initrd),
		Args:   strings.Join(words, " "),
	}
	b, err := st.tmpl.render(tmplGRUBHost, d)
	if err != nil {
		return nil, err
	}
	f := generated(KindScript, b).forHost(h)
	f.secret = h.CHAP != nil
	return f, nil
}

// grubWord writes s as one word of a GRUB script: as it is when every
// character is one GRUB takes literally, else in single quotes (where
// nothing is special but the quote itself: a quote in s closes the quoted
// part, is written escaped, and opens the next).
func grubWord(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(`.,:/=+@_-`, r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
