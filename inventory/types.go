// Package inventory is netsan's one TOML model: the file a person edits, its
// defaults, its validation (with FILE:LINE:COL positions) and the Diff that
// says what a reload changed. Nothing else in netsan parses TOML.
package inventory

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Inventory is one validated inventory file. Services receive it read-only and
// must not modify it: a reload swaps in a new value.
type Inventory struct {
	Server  Server   `toml:"server"`
	DHCP    DHCP     `toml:"dhcp"`
	TFTP    TFTP     `toml:"tftp"`
	HTTP    HTTP     `toml:"http"`
	ISCSI   ISCSI    `toml:"iscsi"`
	Ceph    *Ceph    `toml:"ceph"`
	Cluster *Cluster `toml:"cluster"`
	Images  []Image  `toml:"image"`
	Hosts   []Host   `toml:"host"`
	Targets []Target `toml:"target"`

	// File is the path the inventory was loaded from; relative data_dir,
	// tftp.root and ipxe_dir are resolved against its directory.
	File string `toml:"-"`

	// cephUse is where the file first asks for Ceph, for a netsan built
	// without it to point at (CephUse).
	cephUse *Problem
	// pos is where each key was written, for problems found after Load.
	pos positions
}

// Problemf is a problem found after Load (a golden image missing on this
// machine, say) at the place key was written ("host.2.root"), or its
// nearest parent's.
func (inv *Inventory) Problemf(key, format string, args ...any) Problem {
	return Problem{File: inv.File, Pos: inv.pos.at(key), Message: fmt.Sprintf(format, args...)}
}

// Server is what every service tells clients about netsan itself.
type Server struct {
	Address Addr   `toml:"address"`
	DataDir string `toml:"data_dir"`
}

// DHCP is the [dhcp] section.
type DHCP struct {
	Enabled   *bool    `toml:"enabled"`
	Mode      string   `toml:"mode"` // "authoritative" or "proxy"
	Interface string   `toml:"interface"`
	Listen    string   `toml:"listen"`
	Subnet    Prefix   `toml:"subnet"`
	Range     []Addr   `toml:"range"` // [first, last] of the dynamic pool; empty = static only
	Router    Addr     `toml:"router"`
	DNS       []Addr   `toml:"dns"`
	Domain    string   `toml:"domain"`
	LeaseTime Duration `toml:"lease_time"`
	// IPv6RA: answer IPv6 router solicitations on the DHCP interface with
	// "no IPv6 configuration here". Load fills it in when unset (true when
	// authoritative, false in proxy mode), so an explicit false holds.
	IPv6RA *bool `toml:"ipv6_ra"`

	present bool
}

// DHCP modes.
const (
	ModeAuthoritative = "authoritative"
	ModeProxy         = "proxy"
)

// TFTP is the [tftp] section.
type TFTP struct {
	Enabled *bool  `toml:"enabled"`
	Listen  string `toml:"listen"`
	Root    string `toml:"root"`     // absolute after Load
	IPXEDir string `toml:"ipxe_dir"` // absolute after Load

	present bool
}

// HTTP is the [http] section.
type HTTP struct {
	Enabled *bool  `toml:"enabled"`
	Listen  string `toml:"listen"`

	present bool
}

// ISCSI is the [iscsi] section.
type ISCSI struct {
	Enabled       *bool    `toml:"enabled"`
	Listen        []string `toml:"listen"`
	BaseIQN       string   `toml:"base_iqn"`
	DiscoveryCHAP *CHAP    `toml:"discovery_chap"`
	// MaxSessions bounds concurrent sessions across all targets (0 = 256,
	// or two a host when that is more).
	MaxSessions int `toml:"max_sessions"`

	present bool
}

// Image is a golden image that host roots are cloned from. It is never
// opened writable by a LUN.
type Image struct {
	Name string `toml:"name"`
	Path string `toml:"path"` // absolute after Load
	RBD  string `toml:"rbd"`  // instead of path: pool/image in Ceph; pool added after Load
}

// Boot modes of a host.
const (
	BootSAN   = "san"
	BootLocal = "local"
	BootMenu  = "menu"
	BootShell = "shell"
	// BootLinux: netsan hands the host a kernel and initramfs (iPXE's
	// kernel/initrd/boot) and a command line with the iscsi_* parameters
	// open-iscsi's initramfs script reads, as a Raspberry Pi gets them.
	BootLinux = "linux"
)

// Host is one [[host]]: a machine netsan knows by MAC.
type Host struct {
	Name      string `toml:"name"`
	MAC       MAC    `toml:"mac"`
	IP        Addr   `toml:"ip"`
	Boot      string `toml:"boot"`      // san | local | menu | shell | linux; default san
	Initiator string `toml:"initiator"` // default base_iqn + ":" + name
	Root      *Root  `toml:"root"`
	CHAP      *CHAP  `toml:"chap"`
	Serial    string `toml:"serial"` // Raspberry Pi serial: its TFTP prefix
	// EFIFilename is the file a UEFI sanboot starts when it is not the default
	// \EFI\BOOT\BOOTX64.EFI (iPXE's sanboot --filename).
	EFIFilename string `toml:"efi_filename"`
	// Kernel and Initrd are a boot = "linux" host's, relative to tftp.root;
	// Cmdline is added to the command line netsan writes.
	Kernel  string `toml:"kernel"`
	Initrd  string `toml:"initrd"`
	Cmdline string `toml:"cmdline"`
	// SecureBoot: the UEFI PXE of a boot = "linux" host gets the signed
	// chain shim → GRUB → its kernel instead of iPXE, which is not signed.
	SecureBoot bool `toml:"secure_boot"`
}

// Root is a host's root LUN (LUN 0 of target base_iqn:name).
type Root struct {
	Image  string `toml:"image"`  // absolute after Load
	From   string `toml:"from"`   // golden image name to clone from when Image is missing
	Size   Size   `toml:"size"`   // grow/create to this size; 0 = the golden image's size
	Device string `toml:"device"` // a block device instead of an image
	RBD    string `toml:"rbd"`    // an RBD image instead: pool/image; pool added after Load
}

// Path is the root's backing file or device; "" for an RBD image.
func (r *Root) Path() string {
	if r.Device != "" {
		return r.Device
	}
	return r.Image
}

// CHAP is a CHAP credential pair, optionally mutual.
type CHAP struct {
	User         string `toml:"user"`
	Secret       string `toml:"secret"`
	MutualUser   string `toml:"mutual_user"`
	MutualSecret string `toml:"mutual_secret"`
}

// Mutual reports whether the initiator also authenticates the target.
func (c *CHAP) Mutual() bool { return c != nil && c.MutualSecret != "" }

// Target is a [[target]] of data LUNs for installed hosts.
type Target struct {
	Name string `toml:"name"`
	LUNs []LUN  `toml:"luns"`
	ACL  []ACL  `toml:"acl"`
}

// LUN is one logical unit of a data target.
type LUN struct {
	LUN      int    `toml:"lun"`
	Image    string `toml:"image"` // absolute after Load
	Device   string `toml:"device"`
	RBD      string `toml:"rbd"` // pool/image in Ceph; pool added after Load
	Size     Size   `toml:"size"`
	ReadOnly bool   `toml:"read_only"`
}

// Backing names the root's storage for people and for telling two apart:
// its path, or rbd:pool/image.
func (r *Root) Backing() string { return backing(r.Path(), r.RBD) }

// Path is the LUN's backing file or device; "" for an RBD image.
func (l *LUN) Path() string {
	if l.Device != "" {
		return l.Device
	}
	return l.Image
}

// ACL admits one initiator to a target.
type ACL struct {
	Initiator string `toml:"initiator"`
	// Map is initiator LUN → target LUN (TOML keys are strings); nil = all LUNs as numbered.
	Map          map[string]int `toml:"map"`
	WriteProtect bool           `toml:"write_protect"`
	CHAP         *CHAP          `toml:"chap"`
}

// text is what a value was written as and why it did not parse, kept for
// validation, so that one run reports every bad value, not only the first.
type text struct {
	raw string
	err error
}

// parseText keeps b in t, with the error parse finds in it, and returns
// the value parse makes of it.
func parseText[T any](t *text, b []byte, parse func(string) (T, error)) T {
	t.raw = string(b)
	v, err := parse(t.raw)
	t.err = err
	return v
}

// Addr is an IP address.
type Addr struct {
	netip.Addr
	text
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Addr) UnmarshalText(b []byte) error {
	a.Addr = parseText(&a.text, b, netip.ParseAddr)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// String returns "" for an unset address instead of "invalid IP".
func (a Addr) String() string {
	if !a.IsValid() {
		return ""
	}
	return a.Addr.String()
}

// Prefix is an IP subnet such as 198.18.0.0/24.
type Prefix struct {
	netip.Prefix
	text
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Prefix) UnmarshalText(b []byte) error {
	p.Prefix = parseText(&p.text, b, netip.ParsePrefix)
	if p.err == nil {
		p.Prefix = p.Masked()
	}
	return nil
}

// MAC is a hardware address written as 52:54:00:00:00:01 (or with hyphens).
type MAC struct {
	net.HardwareAddr
	text
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	m.HardwareAddr = parseText(&m.text, b, net.ParseMAC)
	if m.err == nil && len(m.HardwareAddr) != 6 {
		m.err = errNotEthernet
	}
	return nil
}

// Hyphens is the MAC as iPXE and netsan's file names write it: 52-54-00-00-00-01.
func (m MAC) Hyphens() string { return hyphenate(m.HardwareAddr) }

// Size is a byte count written as "8GiB", "100G", "512MiB" or a plain integer.
type Size struct {
	Bytes int64
	text
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	s.Bytes = parseText(&s.text, b, ParseSize)
	return nil
}

// Duration is a Go duration such as "1h" or "90s".
type Duration struct {
	time.Duration
	text
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	d.Duration = parseText(&d.text, b, time.ParseDuration)
	return nil
}

// Backing names the LUN's storage: its path, or rbd:pool/image.
func (l *LUN) Backing() string { return backing(l.Path(), l.RBD) }

func backing(path, rbd string) string {
	if rbd != "" {
		return "rbd:" + rbd
	}
	return path
}
