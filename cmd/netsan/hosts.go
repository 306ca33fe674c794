package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/netsan/netsan/atomicfile"
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
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *mac == "" {
		fmt.Fprintln(stderr, "usage: netsan hosts add NAME --mac MAC [flags] (-h for more)")
		return errUsage
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
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: netsan hosts rm NAME [flags] (-h for more)")
		return errUsage
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
	case !*deleteRoot:
		fmt.Fprintf(stdout, "its root %s is kept (netsan image list shows it as orphaned)\n", root.Backing())
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
