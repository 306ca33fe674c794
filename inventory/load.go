package inventory

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Problem is one finding of validation, placed in the file where a person can
// act on it.
type Problem struct {
	File    string
	Pos     Pos // zero when no position applies
	Message string
	Warning bool
}

// Where is FILE:LINE:COL, or FILE where no position applies.
func (p Problem) Where() string {
	if p.Pos.Line > 0 {
		return fmt.Sprintf("%s:%d:%d", p.File, p.Pos.Line, p.Pos.Col)
	}
	return p.File
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Where())
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every finding of one validation run, in file order.
type Problems []Problem

// Errors returns the problems that are not warnings.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns the problems that are only warnings.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Err is nil when no problem is an error, else an error listing them all.
func (ps Problems) Err() error {
	errs := ps.Errors()
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, len(errs))
	for i, p := range errs {
		lines[i] = p.String()
	}
	return errors.New(strings.Join(lines, "\n"))
}

// InvalidError is Load's error for a file it read that does not validate,
// as opposed to one it could not read.
type InvalidError struct {
	Problems Problems // every finding, warnings included
}

func (e *InvalidError) Error() string { return e.Problems.Err().Error() }

// Load reads and validates the inventory at path. The inventory is nil when
// any problem is an error, and the error is then an *InvalidError; warnings
// come back with a usable inventory. Any other error is the file's reading.
func Load(path string) (*Inventory, Problems, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory: %w", err)
	}
	inv, ps := Parse(path, data)
	if inv == nil {
		return nil, ps, &InvalidError{Problems: ps}
	}
	return inv, ps, nil
}

// Parse decodes and validates an inventory held in memory; file names it in
// messages and anchors relative paths (its directory).
func Parse(file string, data []byte) (*Inventory, Problems) {
	inv := &Inventory{File: file}
	md, err := toml.Decode(string(data), inv)
	if err != nil {
		p := Problem{File: file, Message: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.Pos = Pos{pe.Position.Line, pe.Position.Col}
			p.Message = pe.Message
		}
		return nil, Problems{p}
	}
	v := &validator{inv: inv, file: file, pos: locate(string(data))}
	for _, k := range md.Undecoded() {
		v.unknownKey(k)
	}
	inv.DHCP.present = md.IsDefined("dhcp")
	inv.TFTP.present = md.IsDefined("tftp")
	inv.HTTP.present = md.IsDefined("http")
	inv.ISCSI.present = md.IsDefined("iscsi")
	v.defaults()
	if md.IsDefined("ceph") {
		v.useCeph("ceph", "[ceph]")
	}
	if md.IsDefined("cluster") {
		v.useCeph("cluster", "[cluster]")
	}
	v.validate()
	sort.SliceStable(v.problems, func(i, j int) bool {
		a, b := v.problems[i].Pos, v.problems[j].Pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	if len(v.problems.Errors()) > 0 {
		return nil, v.problems
	}
	inv.pos = v.pos
	return inv, v.problems
}

type validator struct {
	inv      *Inventory
	file     string
	pos      positions
	problems Problems
	// roots maps each backing path in use to its user, across hosts and targets.
	roots map[string]string
	// golden maps each golden image's backing to its name.
	golden map[string]string
}

// at finds the position of a key path, falling back to its nearest parent.
func (v *validator) at(path string) Pos { return v.pos.at(path) }

// at finds the position of a key path, falling back to its nearest parent.
func (ps positions) at(path string) Pos {
	for p := path; p != ""; {
		if pos, ok := ps[p]; ok {
			return pos
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return Pos{}
}

func (v *validator) errorf(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Pos: v.at(path), Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Pos: v.at(path), Message: fmt.Sprintf(format, args...), Warning: true})
}

// unknownKey reports a key the model has no field for, at every place the
// logical key (without array indices) occurs.
func (v *validator) unknownKey(k toml.Key) {
	want := k.String()
	var found []Pos
	for path, pos := range v.pos {
		if stripIndices(path) == want {
			found = append(found, pos)
		}
	}
	if len(found) == 0 {
		found = append(found, Pos{})
	}
	msg := fmt.Sprintf("unknown key %q", want)
	if near := suggestKey(want); near != "" {
		msg += "; did you mean " + near + "?"
	}
	for _, p := range found {
		v.problems = append(v.problems, Problem{File: v.file, Pos: p, Message: msg})
	}
}

func stripIndices(path string) string {
	parts := strings.Split(path, ".")
	out := parts[:0]
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err == nil {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ".")
}

func (v *validator) defaults() {
	inv := v.inv
	dir := filepath.Dir(inv.File)
	if d, err := filepath.Abs(dir); err == nil {
		dir = d
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if inv.Server.DataDir == "" {
		inv.Server.DataDir = "/var/lib/netsan"
	}
	inv.Server.DataDir = abs(inv.Server.DataDir)
	if inv.DHCP.Mode == "" {
		inv.DHCP.Mode = ModeAuthoritative
	}
	if inv.DHCP.IPv6RA == nil {
		// In proxy mode the LAN's router owns IPv6; netsan keeps out of it.
		ra := inv.DHCP.Mode == ModeAuthoritative
		inv.DHCP.IPv6RA = &ra
	}
	if inv.DHCP.Listen == "" {
		inv.DHCP.Listen = "0.0.0.0:67"
	}
	if inv.DHCP.LeaseTime.raw == "" {
		inv.DHCP.LeaseTime.Duration = time.Hour
	}
	if inv.TFTP.Listen == "" {
		inv.TFTP.Listen = "0.0.0.0:69"
	}
	if inv.TFTP.IPXEDir == "" {
		inv.TFTP.IPXEDir = "/usr/lib/ipxe"
	}
	inv.TFTP.IPXEDir = abs(inv.TFTP.IPXEDir)
	inv.TFTP.Root = abs(inv.TFTP.Root)
	if inv.HTTP.Listen == "" {
		inv.HTTP.Listen = "0.0.0.0:8080"
	}
	if len(inv.ISCSI.Listen) == 0 {
		inv.ISCSI.Listen = []string{"0.0.0.0:3260"}
	}
	if inv.ISCSI.MaxSessions == 0 {
		// Two a host when that is more: at boot iPXE's session and the
		// OS's overlap, and a power cut boots every host at once.
		inv.ISCSI.MaxSessions = max(256, 2*len(inv.Hosts))
	}
	v.cephDefaults()
	if inv.Ceph != nil {
		inv.Ceph.Conf = abs(inv.Ceph.Conf)
	}
	v.clusterDefaults()
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Boot == "" {
			h.Boot = BootSAN
			if h.Root == nil {
				h.Boot = BootMenu
			}
		}
	}
}

// The data_dir-relative paths are checked for escapes before they become
// absolute, so a problem names what the person wrote.
func (v *validator) dataPath(path, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	clean := filepath.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		v.errorf(path, "path %q escapes data_dir", p)
	}
	return filepath.Join(v.inv.Server.DataDir, clean)
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	iqnRE    = regexp.MustCompile(`^(iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+(:[^\s]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$`)
	serialRE = regexp.MustCompile(`^[0-9a-fA-F]{8}$`)
)

// IsPiSerial reports whether s is written as a Raspberry Pi's serial: the
// 8 hex digits its boot ROM puts in front of its TFTP requests.
func IsPiSerial(s string) bool { return serialRE.MatchString(s) }

func (v *validator) validate() {
	inv := v.inv
	v.server()
	v.dhcp()
	v.listen("tftp.listen", inv.TFTP.Listen)
	v.listen("http.listen", inv.HTTP.Listen)
	for i, l := range inv.ISCSI.Listen {
		v.listen(fmt.Sprintf("iscsi.listen.%d", i), l)
	}
	if inv.ISCSI.BaseIQN == "" && (len(inv.Hosts) > 0 || len(inv.Targets) > 0) {
		v.errorf("iscsi", "iscsi.base_iqn is required (target names are base_iqn:name)")
	} else if inv.ISCSI.BaseIQN != "" && !iqnRE.MatchString(inv.ISCSI.BaseIQN) {
		v.errorf("iscsi.base_iqn", "base_iqn %q is not an iqn. name (e.g. iqn.2026-11.example.lab)", inv.ISCSI.BaseIQN)
	}
	if inv.ISCSI.MaxSessions < 0 {
		v.errorf("iscsi.max_sessions", "max_sessions must be positive")
	}
	v.chap("iscsi.discovery_chap", inv.ISCSI.DiscoveryCHAP)
	v.cluster()
	v.images()
	v.hosts()
	v.targets()
}

func (v *validator) server() {
	a := v.inv.Server.Address
	switch {
	case a.err != nil:
		v.errorf("server.address", "server.address %q is not an IP address", a.raw)
	case !a.IsValid():
		v.errorf("server", "server.address is required (what clients are told: next-server, portal, HTTP base)")
	case !a.Is4():
		v.errorf("server.address", "server.address %s must be IPv4", a)
	}
}

func (v *validator) listen(path, hostport string) {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		v.errorf(path, "listen %q: want host:port", hostport)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errorf(path, "listen %q: bad port", hostport)
	}
}

func (v *validator) addr(path string, a Addr, what string) {
	if a.err != nil {
		v.errorf(path, "%s %q is not an IP address", what, a.raw)
	} else if a.IsValid() && !a.Is4() {
		v.errorf(path, "%s %s must be IPv4", what, a)
	}
}

func (v *validator) dhcp() {
	d := &v.inv.DHCP
	if d.Mode != ModeAuthoritative && d.Mode != ModeProxy {
		v.errorf("dhcp.mode", "dhcp.mode %q: want %q or %q", d.Mode, ModeAuthoritative, ModeProxy)
	}
	v.listen("dhcp.listen", d.Listen)
	if d.Subnet.err != nil {
		v.errorf("dhcp.subnet", "dhcp.subnet %q is not a subnet (want e.g. 198.18.0.0/24)", d.Subnet.raw)
	} else if d.On() && d.Mode == ModeAuthoritative && !d.Subnet.IsValid() {
		v.errorf("dhcp", "dhcp.subnet is required in authoritative mode")
	}
	v.addr("dhcp.router", d.Router, "dhcp.router")
	for i, a := range d.DNS {
		v.addr(fmt.Sprintf("dhcp.dns.%d", i), a, "dhcp.dns")
	}
	if d.LeaseTime.err != nil {
		v.errorf("dhcp.lease_time", "dhcp.lease_time %q is not a duration (want e.g. 1h, 30m)", d.LeaseTime.raw)
	} else if d.LeaseTime.Duration < time.Minute {
		v.errorf("dhcp.lease_time", "dhcp.lease_time %s is shorter than a minute", d.LeaseTime.Duration)
	}
	switch len(d.Range) {
	case 0:
	case 2:
		ok := true
		for i, a := range d.Range {
			v.addr(fmt.Sprintf("dhcp.range.%d", i), a, "dhcp.range")
			if a.err != nil {
				ok = false
			} else if d.Subnet.IsValid() && !d.Subnet.Contains(a.Addr) {
				v.errorf(fmt.Sprintf("dhcp.range.%d", i), "dhcp.range address %s is outside subnet %s", a, d.Subnet)
				ok = false
			}
		}
		if ok && d.Range[1].Less(d.Range[0].Addr) {
			v.errorf("dhcp.range", "dhcp.range runs backwards: %s > %s", d.Range[0], d.Range[1])
		}
	default:
		v.errorf("dhcp.range", "dhcp.range wants two addresses [first, last], got %d", len(d.Range))
	}
}

// inRange reports whether a falls inside the dynamic pool.
func (d *DHCP) inRange(a Addr) bool {
	if len(d.Range) != 2 || !d.Range[0].IsValid() || !d.Range[1].IsValid() || !a.IsValid() {
		return false
	}
	return !a.Less(d.Range[0].Addr) && !d.Range[1].Less(a.Addr)
}

func (v *validator) chap(path string, c *CHAP) {
	if c == nil {
		return
	}
	if c.User == "" || c.Secret == "" {
		v.errorf(path, "chap needs both user and secret")
	}
	if c.Secret != "" && len(c.Secret) < 12 {
		v.warnf(path+".secret", "CHAP secret is %d bytes; RFC 7143 wants at least 12 (96 bits)", len(c.Secret))
	}
	if (c.MutualUser != "" || c.MutualSecret != "") && c.MutualSecret == "" {
		v.errorf(path, "mutual_user without mutual_secret")
	}
	if c.MutualSecret != "" {
		if len(c.MutualSecret) < 12 {
			v.warnf(path+".mutual_secret", "mutual CHAP secret is %d bytes; RFC 7143 wants at least 12 (96 bits)", len(c.MutualSecret))
		}
		if c.MutualSecret == c.Secret {
			v.errorf(path+".mutual_secret", "mutual_secret must differ from secret (RFC 7143 §12.1.3)")
		}
	}
}

func (v *validator) size(path string, s Size) {
	if s.err != nil {
		v.errorf(path, "%v", s.err)
	} else if s.raw != "" && s.Bytes%512 != 0 {
		v.errorf(path, "size %q is not a multiple of 512 bytes", s.raw)
	} else if s.raw != "" && s.Bytes == 0 {
		v.errorf(path, "size is zero")
	}
}

func (v *validator) images() {
	seen := map[string]int{}
	for i := range v.inv.Images {
		img := &v.inv.Images[i]
		p := fmt.Sprintf("image.%d", i)
		switch {
		case img.Name == "":
			v.errorf(p, "image needs a name")
		case seen[img.Name] > 0:
			v.errorf(p+".name", "image %q is defined twice", img.Name)
		}
		seen[img.Name]++
		switch {
		case img.Path == "" && img.RBD == "":
			v.errorf(p, "image %q needs a path or an rbd", img.Name)
		case img.Path != "" && img.RBD != "":
			v.errorf(p, "image %q has both path and rbd; choose one", img.Name)
		}
		img.Path = v.dataPath(p+".path", img.Path)
		img.RBD = v.rbd(p+".rbd", img.RBD)
		v.shared(p+".path", fmt.Sprintf("image %q", img.Name), img.RBD)
		if b := backing(img.Path, img.RBD); b != "" {
			if v.golden == nil {
				v.golden = map[string]string{}
			}
			v.golden[b] = img.Name
		}
	}
}

func (v *validator) hosts() {
	inv := v.inv
	names := map[string]string{}
	macs := map[string]string{}
	ips := map[string]string{}
	roots := map[string]string{}
	serials := map[string]string{}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		p := fmt.Sprintf("host.%d", i)
		switch {
		case h.Name == "":
			v.errorf(p, "host needs a name")
		case !nameRE.MatchString(h.Name):
			v.errorf(p+".name", "host name %q: use lower-case letters, digits, '-' and '.' (it becomes part of an IQN)", h.Name)
		case names[h.Name] != "":
			v.errorf(p+".name", "host name %q is already used by %s", h.Name, names[h.Name])
		}
		if h.Name != "" && names[h.Name] == "" {
			names[h.Name] = "host " + h.Name
		}
		switch {
		case h.MAC.err != nil:
			v.errorf(p+".mac", "mac %q is not an Ethernet address (want 52:54:00:00:00:01)", h.MAC.raw)
		case h.MAC.HardwareAddr == nil:
			v.errorf(p, "host %q needs a mac", h.Name)
		case macs[h.MAC.String()] != "":
			v.errorf(p+".mac", "mac %s is already used by host %s", h.MAC, macs[h.MAC.String()])
		default:
			macs[h.MAC.String()] = h.Name
		}
		v.addr(p+".ip", h.IP, "ip")
		if h.IP.IsValid() && h.IP.err == nil {
			d := &inv.DHCP
			switch {
			case ips[h.IP.String()] != "":
				v.errorf(p+".ip", "ip %s is already used by host %s", h.IP, ips[h.IP.String()])
			case d.Subnet.IsValid() && !d.Subnet.Contains(h.IP.Addr):
				v.errorf(p+".ip", "ip %s is outside subnet %s", h.IP, d.Subnet)
			case d.inRange(h.IP):
				v.errorf(p+".ip", "ip %s is inside the dynamic range %s-%s, where it could be leased to another host", h.IP, d.Range[0], d.Range[1])
			case h.IP.Addr == inv.Server.Address.Addr:
				v.errorf(p+".ip", "ip %s is netsan's own server.address", h.IP)
			}
			ips[h.IP.String()] = h.Name
		}
		switch h.Boot {
		case BootSAN:
			if h.Root == nil {
				v.errorf(p+".boot", `boot = "san" needs a root`)
			}
		case BootLinux:
			v.linux(p, h)
		case BootLocal, BootMenu, BootShell:
		default:
			v.errorf(p+".boot", "boot %q: want san, local, menu, shell or linux", h.Boot)
		}
		if h.Boot != BootLinux {
			for key, val := range map[string]string{"kernel": h.Kernel, "initrd": h.Initrd, "cmdline": h.Cmdline} {
				if val != "" {
					v.warnf(p+"."+key, `%s is read only for boot = "linux"; host %s boots %q`, key, h.Name, h.Boot)
				}
			}
		}
		if h.Initiator != "" && !iqnRE.MatchString(h.Initiator) {
			v.errorf(p+".initiator", "initiator %q is not an iqn./eui./naa. name", h.Initiator)
		}
		if h.Serial != "" {
			if !IsPiSerial(h.Serial) {
				v.errorf(p+".serial", "serial %q: a Raspberry Pi serial is 8 hex digits", h.Serial)
			} else if other := serials[strings.ToLower(h.Serial)]; other != "" {
				v.errorf(p+".serial", "serial %s is already used by host %s", h.Serial, other)
			}
			serials[strings.ToLower(h.Serial)] = h.Name
		}
		if h.SecureBoot && h.Boot != BootLinux {
			v.errorf(p+".secure_boot", `secure_boot: only a boot = "linux" host boots through shim and GRUB (this one is %q)`, h.Boot)
		}
		v.chap(p+".chap", h.CHAP)
		if r := h.Root; r != nil {
			rp := p + ".root"
			v.backing(rp, "root", r.Image, r.Device, r.RBD)
			r.Image = v.dataPath(rp+".image", r.Image)
			r.RBD = v.rbd(rp+".rbd", r.RBD)
			v.size(rp+".size", r.Size)
			if r.From != "" {
				img := inv.ImageByName(r.From)
				switch {
				case img == nil:
					v.errorf(rp+".from", "root.from %q: no [[image]] has that name", r.From)
				case r.RBD != "" && img.RBD == "":
					v.errorf(rp+".from", "root.from %q: an rbd root is a Ceph clone of an rbd golden image; import the image into Ceph (netsan image import FILE NAME)", r.From)
				case r.Image != "" && img.RBD != "":
					v.errorf(rp+".from", "root.from %q is an rbd golden image: give the root an rbd too", r.From)
				}
				if r.Device != "" {
					v.errorf(rp+".from", "root.from applies to images, not devices")
				}
			}
			if path := r.Backing(); path != "" {
				if v.golden[path] != "" {
					v.errorf(rp+".image", "root image %s is a golden image; hosts get clones (root.from)", path)
				} else if other := roots[path]; other != "" {
					v.errorf(rp+".image", "root %s is already the root of host %s; two hosts must not share a disk", path, other)
				}
				roots[path] = h.Name
			}
		}
	}
	for i, t := range inv.Targets {
		if names[t.Name] != "" {
			v.errorf(fmt.Sprintf("target.%d.name", i), "target name %q is already used by %s (both become %s:%s)", t.Name, names[t.Name], inv.ISCSI.BaseIQN, t.Name)
		}
		if t.Name != "" && names[t.Name] == "" {
			names[t.Name] = "target " + t.Name
		}
	}
	v.roots = roots
}

// linux checks a boot = "linux" host at p: a root to log in to, and a
// kernel and initramfs under tftp.root (that they are there is check's
// look at the machine), and a cmdline that stays one command line.
func (v *validator) linux(p string, h *Host) {
	if h.Root == nil {
		v.errorf(p+".boot", `boot = "linux" needs a root`)
	}
	for _, f := range []struct{ key, val string }{{"kernel", h.Kernel}, {"initrd", h.Initrd}} {
		switch {
		case f.val == "":
			v.errorf(p, `boot = "linux" needs a %s (a file under tftp.root)`, f.key)
		case !TFTPName(f.val):
			v.errorf(p+"."+f.key, "%s %q: a relative path under tftp.root, without '..', spaces, \\ \" # ? %% $ ; & |", f.key, f.val)
		case v.inv.TFTP.Root == "":
			v.errorf(p+"."+f.key, "%s %q is looked up under tftp.root, and [tftp] has no root", f.key, f.val)
		}
	}
	if strings.ContainsFunc(h.Cmdline, func(r rune) bool { return r < ' ' || r == 0x7f || strings.ContainsRune("\"$#;&|", r) }) {
		v.errorf(p+".cmdline", "cmdline %q: a control character, quote, $, #, ;, & or | would not reach the kernel as written", h.Cmdline)
	}
}

// TFTPName reports whether name can name a file under tftp.root: relative,
// slash-separated, no ".." or empty segment, no whitespace, control
// character, or one that a URL or an iPXE script line would read otherwise.
func TFTPName(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune(`\"#?%$;&|`, r) }) {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func (v *validator) targets() {
	inv := v.inv
	for i := range inv.Targets {
		t := &inv.Targets[i]
		p := fmt.Sprintf("target.%d", i)
		if t.Name == "" {
			v.errorf(p, "target needs a name")
		} else if !nameRE.MatchString(t.Name) {
			v.errorf(p+".name", "target name %q: use lower-case letters, digits, '-' and '.'", t.Name)
		}
		if len(t.LUNs) == 0 {
			v.errorf(p, "target %q has no luns", t.Name)
		}
		luns := map[int]bool{}
		for j := range t.LUNs {
			v.lun(fmt.Sprintf("%s.luns.%d", p, j), t, &t.LUNs[j], luns)
		}
		if len(t.ACL) == 0 {
			v.warnf(p, "target %q has no acl: every initiator may log in", t.Name)
		}
		inits := map[string]bool{}
		for j := range t.ACL {
			v.acl(fmt.Sprintf("%s.acl.%d", p, j), t, &t.ACL[j], luns, inits)
		}
	}
}

// lun checks lun l of target t, at lp; luns holds the numbers of the
// target's luns before it.
func (v *validator) lun(lp string, t *Target, l *LUN, luns map[int]bool) {
	switch {
	case l.LUN < 0 || l.LUN > 16383:
		v.errorf(lp+".lun", "lun %d out of range 0-16383", l.LUN)
	case luns[l.LUN]:
		v.errorf(lp+".lun", "lun %d is defined twice in target %q", l.LUN, t.Name)
	}
	luns[l.LUN] = true
	v.backing(lp, "lun", l.Image, l.Device, l.RBD)
	l.Image = v.dataPath(lp+".image", l.Image)
	l.RBD = v.rbd(lp+".rbd", l.RBD)
	v.size(lp+".size", l.Size)
	if path := l.Backing(); path != "" {
		if other := v.roots[path]; other != "" {
			v.errorf(lp, "%s is already used by %s", path, other)
		}
		// The target opens a read-only LUN read-only: only so may
		// it serve a golden image, which clones depend on.
		if img := v.golden[path]; img != "" && !l.ReadOnly {
			v.errorf(lp, "%s is golden image %q, which is never written: make the lun read_only = true, or give it a clone", path, img)
		}
		v.roots[path] = "target " + t.Name
	}
}

// acl checks acl a of target t, at ap, against the target's luns; inits
// holds the initiators of its acls before it.
func (v *validator) acl(ap string, t *Target, a *ACL, luns map[int]bool, inits map[string]bool) {
	switch {
	case a.Initiator == "":
		v.errorf(ap, "acl needs an initiator")
	case !iqnRE.MatchString(a.Initiator):
		v.errorf(ap+".initiator", "initiator %q is not an iqn./eui./naa. name", a.Initiator)
	case inits[a.Initiator]:
		v.errorf(ap+".initiator", "initiator %q appears twice in target %q", a.Initiator, t.Name)
	}
	inits[a.Initiator] = true
	seen := map[int]bool{}
	for k, tl := range a.Map {
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 || n > 16383 {
			v.errorf(ap+".map."+k, "map key %q: an initiator LUN number 0-16383", k)
		}
		if !luns[tl] {
			v.errorf(ap+".map."+k, "map %s = %d: target %q has no lun %d", k, tl, t.Name, tl)
		}
		if seen[tl] {
			v.errorf(ap+".map."+k, "map: target lun %d is mapped twice", tl)
		}
		seen[tl] = true
	}
	v.chap(ap+".chap", a.CHAP)
}
