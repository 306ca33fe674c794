package bootmenu

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/netsan/netsan/assets"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
)

// Template names, as paths inside assets.Templates and the templates directory.
const (
	tmplSAN      = "ipxe/san.ipxe"
	tmplLocal    = "ipxe/local.ipxe"
	tmplMenu     = "ipxe/menu.ipxe"
	tmplShell    = "ipxe/shell.ipxe"
	tmplUnknown  = "ipxe/unknown.ipxe"
	tmplLinux    = "ipxe/linux.ipxe"
	tmplCmdline  = "pi/cmdline.txt"
	tmplGRUBStub = "grub/grub.cfg"
	tmplGRUBHost = "grub/linux.cfg"
)

var templateNames = []string{tmplSAN, tmplLocal, tmplMenu, tmplShell, tmplUnknown, tmplLinux, tmplCmdline, tmplGRUBStub, tmplGRUBHost}

// Menu defaults for boot = "menu" hosts.
const menuTimeoutMS = 10000

// TemplateDir is where overrides of the embedded templates are looked for:
// "templates" beside the inventory file (e.g. /etc/netsan/templates/ipxe/san.ipxe).
// A file present there replaces the embedded one of the same path.
func TemplateDir(inv *inventory.Inventory) string {
	if inv.File == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(inv.File), "templates")
}

type templates struct {
	byName     map[string]*template.Template
	overridden []string
}

// loadTemplates parses the embedded templates, each replaced by dir's file
// of the same path where one exists.
func loadTemplates(dir string) (*templates, error) {
	t := &templates{byName: make(map[string]*template.Template)}
	for _, name := range templateNames {
		src, err := fs.ReadFile(assets.Templates, name)
		if err != nil {
			return nil, fmt.Errorf("embedded template %s: %w", name, err)
		}
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			switch {
			case err == nil:
				src = b
				t.overridden = append(t.overridden, name)
			case !errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("template override: %w", err)
			}
		}
		tt, err := template.New(name).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		t.byName[name] = tt
	}
	return t, nil
}

func (t *templates) render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.byName[name].Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// ScriptData is what the iPXE templates see. Every value is already reduced
// to characters that iPXE's command line takes literally (see word).
type ScriptData struct {
	Name          string // inventory host name ("" for an unknown MAC)
	MAC           string // 52-54-00-00-00-01
	MACColons     string // 52:54:00:00:00:01
	IP            string // the host's address, or the client's
	TargetIQN     string
	InitiatorIQN  string
	RootPath      string // iscsi:… URI for the menu's SAN entry; "" when the host has no root
	EFIFilename   string // sanboot --filename on UEFI; "" for the default \EFI\BOOT\BOOTX64.EFI
	MenuDefault   string // label of the menu's default item
	MenuTimeoutMS int
	// For an unknown MAC, the [[host]] stanza the menu suggests
	// (Resolver.Suggest), one line each, which check accepts as it is.
	Stanza []string
	// The same stanza's name, fixed address ("" without a DHCP subnet:
	// the host then gets a pool address) and golden image ("" where none
	// is on disk: the stanza asks for the menu, no root), for templates
	// that write the stanza their own way.
	SuggestedName string
	SuggestedIP   string
	SuggestedFrom string
	// A boot = "linux" host's kernel and initramfs, as iPXE fetches them
	// (over HTTP when it runs, else TFTP), the initramfs's name for the
	// kernel's initrd= (the last part of its path), and the command line:
	// CmdlineData.Args, then the host's cmdline.
	KernelURL  string
	InitrdURL  string
	InitrdName string
	KernelArgs string
}

// script renders boot/<mac>.ipxe.
func (st *state) script(c Client, mac net.HardwareAddr) (*File, error) {
	h := st.inv.HostByMAC(mac)
	if h == nil {
		ip := "unknown"
		if c.IP.IsValid() {
			ip = c.IP.String()
		}
		s := st.suggest([]net.HardwareAddr{mac})[0]
		d := ScriptData{
			MAC:           strings.ReplaceAll(mac.String(), ":", "-"),
			MACColons:     mac.String(),
			IP:            ip,
			SuggestedName: word(s.Name),
			SuggestedIP:   word(s.IP),
		}
		if s.Root != nil {
			d.SuggestedFrom = word(s.Root.From)
		}
		for _, l := range strings.Split(strings.TrimSuffix(s.String(), "\n"), "\n") {
			d.Stanza = append(d.Stanza, menuText(l))
		}
		b, err := st.tmpl.render(tmplUnknown, d)
		if err != nil {
			return nil, err
		}
		f := generated(KindUnknown, b)
		f.MAC = mac.String()
		return f, nil
	}
	d := ScriptData{
		Name:          word(h.Name),
		MAC:           h.MAC.Hyphens(),
		MACColons:     h.MAC.String(),
		IP:            word(h.IP.String()),
		TargetIQN:     word(st.inv.TargetIQN(h)),
		InitiatorIQN:  word(st.inv.InitiatorIQN(h)),
		EFIFilename:   strings.TrimRight(word(h.EFIFilename), `\`),
		MenuDefault:   "local",
		MenuTimeoutMS: menuTimeoutMS,
	}
	if h.Root != nil {
		d.RootPath = word(st.inv.RootPath(h))
		d.MenuDefault = "san"
	}
	var name string
	switch h.Boot {
	case inventory.BootSAN:
		name = tmplSAN
		if h.Root == nil {
			// Nothing to sanboot: offer the menu rather than a script that fails.
			name = tmplMenu
		}
	case inventory.BootLocal:
		name = tmplLocal
	case inventory.BootShell:
		name = tmplShell
	case inventory.BootLinux:
		name = tmplLinux
		if err := st.linux(c, h, &d); err != nil {
			return nil, err
		}
	default:
		name = tmplMenu
	}
	b, err := st.tmpl.render(name, d)
	if err != nil {
		return nil, err
	}
	f := generated(KindScript, b).forHost(h)
	// A linux host's script carries its CHAP secret on the kernel's line.
	f.secret = h.Boot == inventory.BootLinux && h.CHAP != nil
	return f, nil
}

// linux fills in a boot = "linux" host's kernel, initramfs and command
// line, fetched from the server address c asked (a cluster's floating
// address, say), else server.address.
func (st *state) linux(c Client, h *inventory.Host, d *ScriptData) error {
	server := c.Local
	if !server.IsValid() {
		server = st.inv.Server.Address.Addr
	}
	args, err := st.kernelArgs(h)
	if err != nil {
		return err
	}
	for _, a := range args {
		if word(a) != a {
			return fmt.Errorf("script of %s: %q would not reach the kernel as written through iPXE's command line", h.Name, a)
		}
	}
	d.KernelURL = word(st.inv.FileURL(server, h.Kernel))
	d.InitrdURL = word(st.inv.FileURL(server, h.Initrd))
	d.InitrdName = word(path.Base(h.Initrd))
	d.KernelArgs = strings.Join(args, " ")
	return nil
}

// kernelArgs is a boot = "linux" host's kernel command line, word by word:
// CmdlineData.Args, then the host's cmdline. iPXE's script and GRUB's
// configuration carry the same one.
func (st *state) kernelArgs(h *inventory.Host) ([]string, error) {
	cd, err := st.cmdlineData(h)
	if err != nil {
		return nil, err
	}
	return strings.Fields(cd.Args() + " " + h.Cmdline), nil
}

// Suggest is the [[host]] stanza for each machine of macs that check
// accepts with all of them added (inventory.Suggest), its root cloned
// from the first golden image on disk: what the unknown-host menu and
// /status show for a machine that asked to boot but is not in the
// inventory.
func (r *Resolver) Suggest(macs []net.HardwareAddr) []inventory.HostStanza {
	return r.state.Load().suggest(macs)
}

func (st *state) suggest(macs []net.HardwareAddr) []inventory.HostStanza {
	return st.inv.Suggest(macs, st.goldenOnDisk())
}

// goldenOnDisk names the first golden image whose file is there to clone a
// new host's root from; "" when there is none, or no iSCSI target to serve
// a root.
func (st *state) goldenOnDisk() string {
	if !st.inv.ISCSI.On() {
		return ""
	}
	for _, img := range st.inv.Images {
		if fi, err := os.Stat(img.Path); img.Path != "" && err == nil && fi.Mode().IsRegular() {
			return img.Name
		}
	}
	return ""
}

// word keeps a value from changing the meaning of an iPXE script line:
// whitespace would split arguments, $ would expand settings, and # ; & |
// would start comments or chain commands. Such characters become '_'.
// Inventory validation already keeps them out of names and IQNs; this is
// the second fence, for whatever a template override prints.
func word(s string) string { return strings.Map(wordRune, s) }

func wordRune(r rune) rune {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return r
	case strings.ContainsRune(`.-_:/\@+=,[]`, r):
		return r
	}
	return '_'
}

// menuText keeps a line of text shown in an iPXE menu from changing the
// script, as word does for values, but keeps the spaces, quotes and braces
// of a TOML line.
func menuText(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(` "{}`, r) {
			return r
		}
		return wordRune(r)
	}, s)
}

// CmdlineData is what pi/cmdline.txt sees: what a kernel command line
// needs for open-iscsi's initramfs to log in to a host's root target and
// mount root (Args), for a Pi and a boot = "linux" host alike.
type CmdlineData struct {
	Name          string
	InitiatorIQN  string
	TargetIQN     string
	ServerAddress string
	ISCSIPort     int
	CHAP          *inventory.CHAP // nil without CHAP; MutualUser filled in for mutual CHAP
	RootDevice    string          // root= value: PARTUUID of the image's 2nd partition, else /dev/sda2
}

// Args is the command line's network, iSCSI and root part: ip=dhcp, the
// iscsi_* parameters initramfs-tools' open-iscsi script (local-top/iscsi)
// reads and logs in with (iscsistart), and root=.
func (d CmdlineData) Args() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ip=dhcp iscsi_initiator=%s iscsi_target_name=%s iscsi_target_ip=%s iscsi_target_port=%d",
		d.InitiatorIQN, d.TargetIQN, d.ServerAddress, d.ISCSIPort)
	if c := d.CHAP; c != nil {
		fmt.Fprintf(&b, " iscsi_username=%s iscsi_password=%s", c.User, c.Secret)
		if c.MutualSecret != "" {
			fmt.Fprintf(&b, " iscsi_in_username=%s iscsi_in_password=%s", c.MutualUser, c.MutualSecret)
		}
	}
	fmt.Fprintf(&b, " root=%s rootfstype=ext4 rootwait", d.RootDevice)
	return b.String()
}

// cmdlineData is h's CmdlineData, refused when a value would split or
// end the command line.
func (st *state) cmdlineData(h *inventory.Host) (CmdlineData, error) {
	d := CmdlineData{
		Name:          h.Name,
		InitiatorIQN:  st.inv.InitiatorIQN(h),
		TargetIQN:     st.inv.TargetIQN(h),
		ServerAddress: st.inv.Server.Address.String(),
		ISCSIPort:     st.inv.ISCSI.Port(),
		RootDevice:    rootDevice(h.Root.Path()),
	}
	if h.CHAP != nil {
		chap := *h.CHAP
		if chap.Mutual() && chap.MutualUser == "" {
			chap.MutualUser = d.TargetIQN
		}
		d.CHAP = &chap
	}
	for _, v := range []string{d.InitiatorIQN, d.TargetIQN, d.ServerAddress, chapField(d.CHAP)} {
		if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' }) {
			return CmdlineData{}, fmt.Errorf("command line of %s: a value with a space, quote or control character cannot go on a kernel command line", h.Name)
		}
	}
	return d, nil
}

// cmdline renders <serial>/cmdline.txt for a Pi that boots from SAN. With
// CHAP it carries the secret: Resolve then lets it go to the Pi only.
func (st *state) cmdline(h *inventory.Host) (*File, error) {
	d, err := st.cmdlineData(h)
	if err != nil {
		return nil, err
	}
	b, err := st.tmpl.render(tmplCmdline, d)
	if err != nil {
		return nil, err
	}
	// The Pi firmware uses the first line only.
	b = append(bytes.TrimSpace(bytes.ReplaceAll(b, []byte("\n"), []byte(" "))), '\n')
	f := generated(KindCmdline, b).forHost(h)
	f.secret = h.CHAP != nil
	return f, nil
}

func chapField(c *inventory.CHAP) string {
	if c == nil {
		return ""
	}
	return c.User + c.Secret + c.MutualUser + c.MutualSecret
}

// rootDevice names the root file system of a Raspberry Pi OS image: its
// second partition, by the MBR disk signature the image carries
// (PARTUUID=1234abcd-02, as Raspberry Pi OS writes it itself), so the name
// holds whatever else the Pi has attached. Without a readable MBR image it
// falls back to /dev/sda2, the first SCSI disk the initramfs logs in to.
func rootDevice(image string) string {
	const fallback = "/dev/sda2"
	f, err := os.Open(image)
	if err != nil {
		return fallback
	}
	defer f.Close()
	mbr, err := images.ReadMBR(f)
	if err != nil || mbr.DiskSignature == 0 || mbr.Types[1] == 0 || mbr.Types[0] == 0xee {
		return fallback
	}
	return fmt.Sprintf("PARTUUID=%08x-02", mbr.DiskSignature)
}
