package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/netsan/netsan/atomicfile"
	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/httpd"
	"github.com/netsan/netsan/inventory"
)

// hostsAdd runs `netsan hosts add NAME --mac MAC …`.
func hostsAdd(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("hosts add", stderr, &c)
	mac := fs.String("mac", "", "its Ethernet address, 52:54:00:00:00:01 (required)")
	ip := fs.String("ip", "", "its fixed address (default: the first free one of dhcp.subnet outside the pool)")
	boot := fs.String("boot", "", "san, local, menu or shell (default: san with a root, else menu)")
	from := fs.String("from", "", "golden image its root is cloned from (the root: roots/NAME.img, or an RBD image beside an RBD golden image)")
	size := fs.String("size", "", "size of its root, e.g. 32GiB (default: the golden image's); without --from, an empty root")
	serial := fs.String("serial", "", "Raspberry Pi serial, 8 hex digits: its TFTP prefix")
	offline := fs.Bool("offline", false, "check the result as check --offline does: the file only, not this machine")
	pos, err := positional(fs, args, 1, stderr, "netsan hosts add NAME --mac MAC [flags] (-h for more)", mac)
	if err != nil {
		return err
	}
	name := pos[0]
	var added inventory.HostStanza
	inv, err := editInventory(configPath(c.config), *offline, stderr, func(inv *inventory.Inventory, src []byte) ([]byte, error) {
		added = inventory.HostStanza{Name: name, MAC: *mac, IP: *ip, Boot: *boot, Serial: *serial,
			Root: inv.NewRoot(name, *from, *size)}
		if hw, err := net.ParseMAC(*mac); err == nil {
			added.MAC = hw.String() // as the file writes MACs; a bad one is check's to name
		}
		if added.IP == "" {
			if a := inv.FreeAddr(); a.IsValid() {
				added.IP = a.String()
			}
		}
		if added.Boot == "" {
			added.Boot = inventory.BootMenu
			if added.Root != nil {
				added.Boot = inventory.BootSAN
			}
		}
		return inventory.AddHost(src, added), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added to %s:\n\n%s", inv.File, added)
	if h := inv.HostByName(name); h != nil && h.Root != nil && h.Root.Image != "" {
		if _, err := os.Stat(h.Root.Image); err == nil {
			fmt.Fprintf(stdout, "\n%s is there already and becomes %s's root as it is (netsan image reset %s replaces it)\n", h.Root.Image, name, name)
		}
	}
	return nil
}

// hostsRemove runs `netsan hosts rm NAME`.
func hostsRemove(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("hosts rm", stderr, &c)
	deleteRoot := fs.Bool("delete-root", false, "delete its root image file too (default: kept, and listed by image list as orphaned)")
	offline := fs.Bool("offline", false, "check the result as check --offline does: the file only, not this machine")
	pos, err := positional(fs, args, 1, stderr, "netsan hosts rm NAME [flags] (-h for more)")
	if err != nil {
		return err
	}
	name := pos[0]
	var root *inventory.Root
	inv, err := editInventory(configPath(c.config), *offline, stderr, func(inv *inventory.Inventory, src []byte) ([]byte, error) {
		h := inv.HostByName(name)
		if h == nil {
			return nil, fmt.Errorf("no host %q in %s", name, inv.File)
		}
		root = h.Root
		if *deleteRoot && root != nil && root.Image == "" {
			return nil, fmt.Errorf("host %s: --delete-root deletes root image files; its root is %s (remove it with the tools of its kind)", name, root.Backing())
		}
		return inventory.RemoveHost(src, name)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed host %s from %s\n", name, inv.File)
	switch {
	case root == nil:
	case !*deleteRoot && root.Image != "":
		fmt.Fprintf(stdout, "its root %s is kept (netsan image list shows it as orphaned)\n", root.Image)
	case !*deleteRoot:
		fmt.Fprintf(stdout, "its root %s is kept\n", root.Backing())
	default:
		if err := os.Remove(root.Image); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("host %s removed, but its root: %w", name, err)
		}
		fmt.Fprintf(stdout, "deleted its root %s\n", root.Image)
	}
	return nil
}

// editInventory changes the inventory file at path: edit makes the new
// content from the current inventory and file. The result is checked as
// `check` would check it (unless offline, this machine too) with its
// problems printed to stderr, at their places in the content as it would
// be; only one that passes is written, atomically and keeping the file's
// mode and owner, so that a running serve reloads it whole. The current
// file must pass too: an edit does not build on a broken file.
func editInventory(path string, offline bool, stderr io.Writer, edit func(*inventory.Inventory, []byte) ([]byte, error)) (*inventory.Inventory, error) {
	file, err := filepath.EvalSymlinks(path) // edit the file, not the link
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	inv, ps, err := parseInventory(path, src)
	if err != nil {
		_, err = report(stderr)(inv, ps.Errors(), err)
		if errors.Is(err, errInvalid) {
			err = fmt.Errorf("%s does not pass check as it is: fix it first; nothing written", path)
		}
		return nil, err
	}
	out, err := edit(inv, src)
	if err != nil {
		return nil, fmt.Errorf("%w; nothing written", err)
	}
	next, err := report(stderr)(parseInventory(path, out))
	if err == nil {
		err = checkMachine(next, offline, stderr)
	}
	if errors.Is(err, errInvalid) {
		return nil, fmt.Errorf("the result would not pass check (the lines above are those of %s as it would be); nothing written", path)
	}
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Replace(file, out); err != nil {
		return nil, err
	}
	return next, nil
}

// hostsSeen runs `netsan hosts seen`: the machines the running server saw
// ask to boot that are not in the inventory, and the [[host]] of each.
func hostsSeen(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("hosts seen", stderr, &c)
	server := fs.String("server", "", "base URL of the running netsan serve (default: from http.listen)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	inv, err := load(configPath(c.config), stderr)
	if err != nil {
		return err
	}
	cl, err := controlClient(inv, *server, 10*time.Second)
	if err != nil {
		return err
	}
	if cl == nil {
		return fmt.Errorf("http is off in %s: netsan hosts seen asks the running serve over HTTP (or name it with --server URL)", inv.File)
	}
	st, err := cl.Status(context.Background())
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("no netsan serve answers at %s: %w", cl.Base, err)
	}
	if err != nil {
		return err
	}
	if len(st.Seen) == 0 {
		fmt.Fprintf(stdout, "no machine that is not in the inventory has asked %s to boot\n", cl.Base)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tKIND\tARCH\tVENDOR CLASS\tFIRST SEEN\tLAST SEEN\tIP")
	for _, m := range st.Seen {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.MAC, m.Kind, m.Arch, or(m.VendorClass, "-"),
			m.FirstSeen.Local().Format(time.DateTime), m.LastSeen.Local().Format(time.DateTime), or(m.IP, "-"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nTo let one boot, add it (each passes check, all of them together too):\n")
	for _, m := range st.Seen {
		fmt.Fprintf(stdout, "\n%s\n%s", addCommand(m.Host), m.Stanza)
	}
	return nil
}

// addCommand is the `netsan hosts add` that appends h.
func addCommand(h inventory.HostStanza) string {
	cmd := []string{"netsan hosts add", h.Name, "--mac", h.MAC}
	for _, f := range []struct{ flag, value string }{{"--ip", h.IP}, {"--boot", h.Boot}, {"--serial", h.Serial}} {
		if f.value != "" {
			cmd = append(cmd, f.flag, f.value)
		}
	}
	if r := h.Root; r != nil {
		for _, f := range []struct{ flag, value string }{{"--from", r.From}, {"--size", r.Size}} {
			if f.value != "" {
				cmd = append(cmd, f.flag, f.value)
			}
		}
	}
	return strings.Join(cmd, " ")
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// seenMachines is dhcpd's table of the machines that asked to boot and are
// not in the inventory, as /status shows them.
func seenMachines(d *dhcpd.Server) func() []httpd.Seen {
	return func() []httpd.Seen {
		us := d.Unknown()
		out := make([]httpd.Seen, len(us))
		for i, u := range us {
			out[i] = httpd.Seen{MAC: u.MAC.String(), Kind: string(u.Kind), Arch: u.Arch.String(), VendorClass: u.VendorClass,
				FirstSeen: u.FirstSeen, LastSeen: u.LastSeen}
			if u.IP.IsValid() {
				out[i].IP = u.IP.String()
			}
		}
		return out
	}
}
