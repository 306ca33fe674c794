// Package bootmenu maps the names that boot clients ask for to content: iPXE
// loaders from ipxe_dir, files under tftp.root, per-host iPXE scripts,
// Raspberry Pi serial prefixes and a Pi's generated cmdline.txt, and a
// secure_boot host's signed shim and GRUB and its GRUB configuration. tftpd and
// httpd both call Resolve, so a name means the same thing over either, and
// confinement to the configured directories is enforced here, once.
package bootmenu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
)

// Client is the machine asking for a file.
type Client struct {
	IP netip.Addr
	// Local is the server's address the request arrived at, when known:
	// it names the interface whose neighbours the client is among.
	Local netip.Addr
	// MAC, when the caller knows it (say from a DHCP lease), attributes
	// loaders and plain files to a host; nil otherwise. boot/<mac>.ipxe
	// names carry their own MAC and do not need it.
	MAC net.HardwareAddr
}

// Kind says where a File's content came from.
type Kind string

// Kinds of content, also the "kind" label of the servers' metrics.
const (
	KindLoader  Kind = "loader"  // a file of ipxe_dir, or Debian's signed shim or GRUB
	KindFile    Kind = "file"    // a file under tftp.root
	KindScript  Kind = "script"  // a known host's iPXE script or GRUB configuration
	KindUnknown Kind = "unknown" // the "who are you" script of an unknown MAC
	KindCmdline Kind = "cmdline" // a Raspberry Pi's generated cmdline.txt
)

// Errors of Resolve, to be told apart with errors.Is. A name that does not
// exist also matches fs.ErrNotExist.
var (
	// ErrNotFound: nothing answers to the name.
	ErrNotFound = fmt.Errorf("file not found: %w", fs.ErrNotExist)
	// ErrBadName: the name is malformed or tries to leave its directory
	// (.., an absolute path, a NUL byte, a backslash, a symlink out).
	ErrBadName = errors.New("name refused")
	// ErrForbidden: the name is fine but this client may not have it.
	ErrForbidden = errors.New("access denied")
)

// File is one resolved name, open for reading.
type File struct {
	r    io.ReadSeeker
	f    *os.File // nil for generated content
	size int64
	mod  time.Time

	Kind Kind
	Host string // the inventory host it serves, when one is known; else ""
	MAC  string // that host's MAC (or an unknown script's), 52:54:00:00:00:01; else ""
	Path string // the file on disk, or "" for generated content

	// secret marks content that only Host may have (a CHAP secret).
	secret bool
}

// Read implements io.Reader.
func (f *File) Read(p []byte) (int, error) { return f.r.Read(p) }

// Seek implements io.Seeker.
func (f *File) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }

// Close releases the file.
func (f *File) Close() error {
	if f.f != nil {
		return f.f.Close()
	}
	return nil
}

// OSFile is the open file on disk behind f, or nil for generated content.
// Reading it reads f (they share the offset); it lets a server hand the
// file to sendfile(2). Close f, not the OSFile.
func (f *File) OSFile() *os.File { return f.f }

// Size is the content's length in bytes (TFTP tsize, HTTP Content-Length).
func (f *File) Size() int64 { return f.size }

// ModTime is the file's modification time, or when generated content was made.
func (f *File) ModTime() time.Time { return f.mod }

func generated(kind Kind, b []byte) *File {
	return &File{r: bytes.NewReader(b), size: int64(len(b)), mod: time.Now(), Kind: kind}
}

// forHost marks f as served to h.
func (f *File) forHost(h *inventory.Host) *File {
	if f != nil && h != nil {
		f.Host, f.MAC = h.Name, h.MAC.String()
	}
	return f
}

// MACFinder tells which machine is using an address, so that a file
// carrying a secret goes to its own host only. cmd/netsan answers it from
// dhcpd's leases when netsan hands out the addresses, else from the
// kernel's neighbour table.
type MACFinder interface {
	// MACOf returns the MAC using ip, as seen from local (the server's
	// address the request arrived at), or an error when it cannot tell.
	MACOf(ip, local netip.Addr) (net.HardwareAddr, error)
}

// Resolver answers names for one inventory at a time; Reload swaps it.
// It is safe for concurrent use.
type Resolver struct {
	log    *zap.Logger
	state  atomic.Pointer[state]
	finder atomic.Pointer[finder]
	// system is debianSigned, or a test's stand-in for it.
	system map[string]string
}

type finder struct{ MACFinder }

// state is everything one inventory implies, swapped whole by Reload.
type state struct {
	inv  *inventory.Inventory
	tmpl *templates
	// system is where the signed shim and GRUB are when tftp.root has
	// none, by name: debianSigned.
	system map[string]string
}

// New returns a Resolver for inv. It fails only when a template override in
// the templates directory does not parse.
func New(inv *inventory.Inventory, log *zap.Logger) (*Resolver, error) {
	r := &Resolver{log: log, system: debianSigned}
	if err := r.Reload(inv); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload makes the resolver answer from inv. On error the previous inventory
// keeps being served.
func (r *Resolver) Reload(inv *inventory.Inventory) error {
	dir := TemplateDir(inv)
	t, err := loadTemplates(dir)
	if err != nil {
		return err
	}
	if len(t.overridden) > 0 {
		r.log.Info("boot templates overridden", zap.String("dir", dir), zap.Strings("templates", t.overridden))
	}
	r.state.Store(&state{inv: inv, tmpl: t, system: r.system})
	return nil
}

// Inventory is the inventory the resolver answers from now.
func (r *Resolver) Inventory() *inventory.Inventory { return r.state.Load().inv }

// SetMACFinder sets how the client of a file with a secret is told apart
// from other machines. Until it is set, such files are refused to everyone.
func (r *Resolver) SetMACFinder(f MACFinder) { r.finder.Store(&finder{f}) }

// Resolve opens what name means for client. The caller closes the File.
func (r *Resolver) Resolve(c Client, name string) (*File, error) {
	f, err := r.resolve(c, name)
	if err == nil && f.secret {
		if err := r.toItsHost(c, f, name); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, err
}

// toItsHost lets a file with a secret go only to the machine whose MAC is
// its host's, and logs every refusal: someone on the LAN asked for another
// machine's secret, or the host's own request could not be told apart.
func (r *Resolver) toItsHost(c Client, f *File, name string) error {
	var (
		mac net.HardwareAddr
		err error
	)
	if fd := r.finder.Load(); fd == nil {
		err = errors.New("no way to tell which MAC uses the address")
	} else if mac, err = fd.MACOf(c.IP, c.Local); err == nil && mac.String() != f.MAC {
		err = fmt.Errorf("%s is used by %s, not %s's %s", c.IP, mac, f.Host, f.MAC)
	}
	if err == nil {
		return nil
	}
	found := ""
	if mac != nil {
		found = mac.String()
	}
	r.log.Warn("secret refused", zap.String("file", name), zap.String("host", f.Host),
		zap.Stringer("ip", c.IP), zap.String("mac", found), zap.Error(err))
	return fmt.Errorf("%s carries %s's secret: %w: %w", name, f.Host, ErrForbidden, err)
}

func (r *Resolver) resolve(c Client, name string) (*File, error) {
	st := r.state.Load()
	clean, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	if mac, ok := ParseScriptName(clean); ok {
		return st.script(c, mac)
	}
	if clean == grubConfig {
		f, err := st.grubStub()
		return st.attribute(f, c), err
	}
	if mac, ok := ParseGRUBConfigName(clean); ok {
		return st.grubHost(mac)
	}
	if prefix, rest, ok := strings.Cut(clean, "/"); ok {
		// A Pi missing from the inventory still gets the shared files.
		h := st.inv.HostBySerial(prefix)
		if h != nil || inventory.IsPiSerial(prefix) {
			return st.pi(c, h, prefix, rest)
		}
	}
	f, err := st.loader(clean)
	if !errors.Is(err, fs.ErrNotExist) {
		return st.attribute(f, c), err
	}
	f, err = st.rootFile(clean)
	if errors.Is(err, fs.ErrNotExist) && st.system[clean] != "" {
		f, err = st.signed(clean)
	}
	return st.attribute(f, c), err
}

// attribute names the host a loader or plain file goes to, by the MAC the
// request carried or else the client's address, so that logs and metrics
// can follow one machine's boot.
func (st *state) attribute(f *File, c Client) *File {
	if f == nil || f.Host != "" {
		return f
	}
	if c.MAC != nil {
		if h := st.inv.HostByMAC(c.MAC); h != nil {
			return f.forHost(h)
		}
	}
	if !c.IP.IsValid() {
		return f
	}
	for i := range st.inv.Hosts {
		if st.inv.Hosts[i].IP.Addr == c.IP {
			return f.forHost(&st.inv.Hosts[i])
		}
	}
	return f
}

// CleanName checks a requested name and returns it in canonical form:
// relative, slash-separated, without "." or empty segments. TFTP and HTTP
// names both go through it before anything touches the file system.
func CleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("empty name: %w", ErrBadName)
	case len(name) > 1024:
		return "", fmt.Errorf("name of %d bytes: %w", len(name), ErrBadName)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%q: NUL byte: %w", name, ErrBadName)
	case strings.IndexByte(name, '\\') >= 0:
		// Windows-style separators would mean one thing to us and another
		// to whoever wrote them; refuse rather than guess.
		return "", fmt.Errorf("%q: backslash: %w", name, ErrBadName)
	case name[0] == '/':
		return "", fmt.Errorf("%q: absolute path: %w", name, ErrBadName)
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%q: '..' segment: %w", name, ErrBadName)
		}
		for _, r := range seg {
			if r < 0x20 || r == 0x7f {
				return "", fmt.Errorf("%q: control character: %w", name, ErrBadName)
			}
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", fmt.Errorf("%q: names a directory: %w", name, ErrBadName)
	}
	return clean, nil
}

// loader serves a base name from ipxe_dir. Unlike tftp.root, ipxe_dir's
// symlinks are followed wherever they point: it is a system directory, and
// Debian's own ipxe.efi there is a link to /boot/ipxe.efi. Only a base name
// (no '/', no "..") is ever looked up in it, so a client cannot walk out.
func (st *state) loader(name string) (*File, error) {
	if strings.Contains(name, "/") || name == "." || name == ".." || st.inv.TFTP.IPXEDir == "" {
		return nil, ErrNotFound
	}
	f, err := os.OpenFile(filepath.Join(st.inv.TFTP.IPXEDir, name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("loader %s: %w: %w", name, ErrForbidden, err)
	}
	return regular(f, name, path.Join(st.inv.TFTP.IPXEDir, name), KindLoader)
}

// rootFile serves a name under tftp.root.
func (st *state) rootFile(name string) (*File, error) {
	if st.inv.TFTP.Root == "" {
		return nil, ErrNotFound
	}
	return openIn(st.inv.TFTP.Root, name)
}

// pi serves <serial>/<rest>: a generated cmdline.txt for a SAN-booting Pi,
// else root/<serial>/<rest>, else root/<rest>.
func (st *state) pi(c Client, h *inventory.Host, serial, rest string) (*File, error) {
	if rest == "cmdline.txt" && h != nil && h.BootsFromSAN() {
		return st.cmdline(h)
	}
	f, err := st.rootFile(serial + "/" + rest)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = st.rootFile(rest)
	}
	return st.attribute(f.forHost(h), c), err
}

// openIn opens name inside dir with os.Root, which refuses any path —
// through "..", an absolute or relative symlink — that leaves dir.
func openIn(dir, name string) (*File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	// O_NONBLOCK so that a FIFO planted in the tree cannot hang the
	// request; it is refused below as not a regular file.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%s: %w: %w", name, ErrForbidden, err)
		}
		// os.Root's "path escapes from parent" and ELOOP land here.
		return nil, fmt.Errorf("%s: %w: %w", name, ErrBadName, err)
	}
	return regular(f, name, path.Join(dir, name), KindFile)
}

// regular wraps an opened f as a File when it is a regular file.
func regular(f *os.File, name, where string, kind Kind) (*File, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		if fi.IsDir() {
			return nil, fmt.Errorf("%s: a directory: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("%s: not a regular file: %w", name, ErrBadName)
	}
	return &File{r: f, f: f, size: fi.Size(), mod: fi.ModTime(), Kind: kind, Path: where}, nil
}
