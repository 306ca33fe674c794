package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/netsan/netsan/inventory"
)

// errInvalid means the inventory had errors, already printed: exit 1.
var errInvalid = errors.New("invalid inventory")

// load reads the inventory and prints every problem to w, errors and warnings
// alike, as FILE:LINE:COL: message.
func load(path string, w io.Writer) (*inventory.Inventory, error) {
	return report(w)(loadInventory(path))
}

// report returns a func that prints every problem of an inventory to w,
// errors and warnings alike, as FILE:LINE:COL: message, and makes an
// invalid one errInvalid.
func report(w io.Writer) func(*inventory.Inventory, inventory.Problems, error) (*inventory.Inventory, error) {
	return func(inv *inventory.Inventory, ps inventory.Problems, err error) (*inventory.Inventory, error) {
		for _, p := range ps {
			fmt.Fprintln(w, p)
		}
		if errors.As(err, new(*inventory.InvalidError)) {
			return nil, errInvalid
		}
		return inv, err
	}
}

// checkMachine prints what check finds on this machine for inv (unless
// offline) to w, and makes an error among it errInvalid.
func checkMachine(inv *inventory.Inventory, offline bool, w io.Writer) error {
	if offline {
		return nil
	}
	ps := machineProblems(inv)
	for _, p := range ps {
		fmt.Fprintln(w, p)
	}
	if len(ps.Errors()) > 0 {
		return errInvalid
	}
	return nil
}

// loadCommand parses the arguments of command name, which takes the
// common flags only, and loads the inventory they name, its problems to
// stderr.
func loadCommand(name string, args []string, stderr io.Writer) (*inventory.Inventory, error) {
	var c commonFlags
	fs := newFlagSet(name, stderr, &c)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return load(configPath(c.config), stderr)
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("check", stderr, &c)
	offline := fs.Bool("offline", false, "check the file only, not this machine (golden images, devices, iPXE loaders)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := configPath(c.config)
	inv, err := load(path, stdout)
	if err != nil {
		return err
	}
	if err := checkMachine(inv, *offline, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: OK (hosts: %d, targets: %d, images: %d)\n", path, len(inv.Hosts), len(inv.Targets), len(inv.Images))
	return nil
}

func cmdHosts(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "add":
			return hostsAdd(args[1:], stdout, stderr)
		case "rm", "remove":
			return hostsRemove(args[1:], stdout, stderr)
		case "seen":
			return hostsSeen(args[1:], stdout, stderr)
		case "list", "ls":
			args = args[1:]
		}
	}
	inv, err := loadCommand("hosts", args, stderr)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tIP\tBOOT\tTARGET\tROOT\tSIZE\tALLOCATED")
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		ip := h.IP.String()
		if ip == "" {
			ip = "(pool)"
		}
		target, root, size, alloc := "-", "-", "-", "-"
		if h.Root != nil {
			target = inv.TargetIQN(h)
			root = strings.TrimPrefix(h.Root.Backing(), inv.Server.DataDir+"/")
			if h.Root.RBD == "" { // RBD figures are image list's: it asks the cluster
				size, alloc = sizeColumns(h.Root.Path(), h.Root.Size.Bytes)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.MAC, ip, h.Boot, target, root, size, alloc)
	}
	return tw.Flush()
}
