package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/iana"
	"go.uber.org/zap"

	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
)

// machineProblems is what `check` finds on this machine (unless --offline)
// and in the Ceph cluster that the file alone cannot tell: as errors, what
// serve would refuse to start with (a cluster that does not answer, a
// golden image a missing root must be cloned from, a device, image or RBD
// image the iSCSI target cannot open or create), each at the stanza that
// names it; as warnings, what serve starts without but clients will miss
// (iPXE loaders, golden images no root needs yet).
func machineProblems(inv *inventory.Inventory) inventory.Problems {
	var ps inventory.Problems
	add := func(warning bool, key, format string, args ...any) {
		p := inv.Problemf(key, format, args...)
		p.Warning = warning
		ps = append(ps, p)
	}
	cluster, err := connectCeph(inv)
	if err != nil {
		add(false, "ceph", "%v", err) // and its RBD images go unchecked
	}
	defer closeCeph(cluster)
	cl := rbdCluster(cluster)
	needed := map[string]bool{} // golden images a missing root waits for
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Root == nil {
			continue
		}
		if msg := rootProblem(inv, h.Root, cl); msg != "" {
			add(false, fmt.Sprintf("host.%d.root", i), "host %s: %s", h.Name, msg)
			needed[h.Root.From] = true
		}
	}
	for i, img := range inv.Images {
		if needed[img.Name] {
			continue // already an error
		}
		if msg := goldenProblem(img, cl); msg != "" {
			add(true, fmt.Sprintf("image.%d", i), "golden image %q: %s; clones from it will fail", img.Name, msg)
		}
	}
	if inv.ISCSI.On() {
		for i := range inv.Targets {
			t := &inv.Targets[i]
			for j := range t.LUNs {
				l := &t.LUNs[j]
				creatable := l.Size.Bytes > 0 && !l.ReadOnly
				msg := backingProblem(l.Device, l.Image, creatable)
				if l.RBD != "" {
					msg = rbdProblem(cl, l.RBD, creatable)
				}
				if msg != "" {
					add(false, fmt.Sprintf("target.%d.luns.%d", i, j), "target %s lun %d: %s", t.Name, l.LUN, msg)
				}
			}
		}
	}
	ps = append(ps, gatewayProblems(inv)...)
	if msg := writableDirProblem(inv.Server.DataDir); msg != "" {
		add(false, "server.data_dir", "data_dir %s %s", inv.Server.DataDir, msg)
	}
	if inv.TFTP.On() && inv.TFTP.Root != "" {
		if fi, err := os.Stat(inv.TFTP.Root); err != nil || !fi.IsDir() {
			add(false, "tftp.root", "tftp.root %s is not a directory on this machine", inv.TFTP.Root)
		}
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.SecureBoot {
			if missing := bootmenu.MissingSigned(inv); missing != "" {
				add(false, fmt.Sprintf("host.%d.secure_boot", i), "host %s: secure_boot: nowhere to serve %s from", h.Name, missing)
			}
		}
		if h.Boot != inventory.BootLinux || inv.TFTP.Root == "" {
			continue
		}
		for key, name := range map[string]string{"kernel": h.Kernel, "initrd": h.Initrd} {
			if !inventory.TFTPName(name) {
				continue // the file's own check said why
			}
			if fi, err := os.Stat(filepath.Join(inv.TFTP.Root, name)); err != nil || !fi.Mode().IsRegular() {
				add(false, fmt.Sprintf("host.%d.%s", i, key), "host %s: %s %s is not a file under tftp.root %s", h.Name, key, name, inv.TFTP.Root)
			}
		}
	}
	if inv.TFTP.On() {
		if problem, missing := ipxeLoaders(inv); problem != "" {
			add(true, "tftp.ipxe_dir", "ipxe_dir %s %s: no iPXE loader for %s", inv.TFTP.IPXEDir, problem, strings.Join(missing, ", "))
		}
	}
	slices.SortStableFunc(ps, func(a, b inventory.Problem) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	return ps
}

// warnLoaders logs, at start, what ipxe_dir lacks: otherwise the first sign
// is a PXE client that gets no boot file.
func warnLoaders(inv *inventory.Inventory, log *zap.Logger) {
	if !inv.TFTP.On() {
		return
	}
	if problem, missing := ipxeLoaders(inv); problem != "" {
		log.Warn("ipxe_dir "+problem+": PXE clients of these architectures get no iPXE loader",
			zap.String("ipxe_dir", inv.TFTP.IPXEDir), zap.Strings("missing", missing))
	}
}

// goldenProblem is why golden image img cannot be cloned, or "": its file
// or RBD image is not there. Without a cluster an RBD image goes
// unchecked.
func goldenProblem(img inventory.Image, cl images.Cluster) string {
	if img.RBD != "" {
		if cl == nil {
			return ""
		}
		if ok, err := images.RBDExists(cl, img.RBD); err != nil || !ok {
			return rbdReason(img.RBD, err)
		}
		return ""
	}
	if _, err := os.Stat(img.Path); err != nil {
		return statReason(img.Path, err)
	}
	return ""
}

// rbdProblem is why serve could not open or make the RBD image rbd of a
// root without a golden image or of a LUN, or "". A missing one is created
// when creatable (a size, and writable); without a cluster it goes
// unchecked.
func rbdProblem(cl images.Cluster, rbd string, creatable bool) string {
	if cl == nil {
		return ""
	}
	ok, err := images.RBDExists(cl, rbd)
	switch {
	case err != nil:
		return rbdReason(rbd, err)
	case !ok && !creatable:
		return fmt.Sprintf("rbd %s does not exist, and without a size (or read-only) it cannot be created", rbd)
	}
	return ""
}

// rbdReason words a failed look for an RBD image.
func rbdReason(rbd string, err error) string {
	if err == nil {
		return "rbd " + rbd + " does not exist"
	}
	return err.Error()
}

// rootProblem is why serve would refuse h's root, or "": a missing root is
// cloned from its golden image, which must then exist, or else created
// empty (by the target, or for RBD by serve), which needs a size. An RBD
// root goes unchecked without a cluster.
func rootProblem(inv *inventory.Inventory, r *inventory.Root, cl images.Cluster) string {
	if r.RBD != "" && cl == nil {
		return ""
	}
	if r.Device == "" && r.From != "" {
		missing, msg := rootMissing(r, cl)
		if msg != "" {
			return msg
		}
		if img := inv.ImageByName(r.From); missing && img != nil {
			if msg := goldenProblem(*img, cl); msg != "" {
				return fmt.Sprintf("root %s is missing and must be cloned from golden image %q, but %s", r.Backing(), r.From, msg)
			}
			return ""
		}
	}
	if r.RBD != "" {
		return rbdProblem(cl, r.RBD, r.Size.Bytes > 0)
	}
	if !inv.ISCSI.On() {
		return ""
	}
	return backingProblem(r.Device, r.Image, r.Size.Bytes > 0)
}

// rootMissing reports whether root r's image is missing, or why that
// cannot be told of an RBD image (a file's other troubles are
// backingProblem's).
func rootMissing(r *inventory.Root, cl images.Cluster) (bool, string) {
	if r.RBD != "" {
		ok, err := images.RBDExists(cl, r.RBD)
		if err != nil {
			return false, rbdReason(r.RBD, err)
		}
		return !ok, ""
	}
	_, err := os.Stat(r.Image)
	return errors.Is(err, fs.ErrNotExist), ""
}

// backingProblem is why the iSCSI target could not open a LUN's device or
// image, or "". A missing image is created when creatable (a size, and
// writable). RBD backings (neither device nor image) are not looked at.
func backingProblem(device, image string, creatable bool) string {
	if device != "" {
		fi, err := os.Stat(device)
		switch {
		case err != nil:
			return "device " + statReason(device, err)
		case fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0:
			return fmt.Sprintf("device %s is not a block device", device)
		}
		return ""
	}
	if image == "" {
		return ""
	}
	fi, err := os.Stat(image)
	switch {
	case errors.Is(err, fs.ErrNotExist) && creatable:
		return ""
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("image %s does not exist, and without a size (or read-only) it cannot be created", image)
	case err != nil:
		return "image " + statReason(image, err)
	case !fi.Mode().IsRegular() && (fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0):
		return fmt.Sprintf("image %s is neither a regular file nor a block device", image)
	case fi.Mode().IsRegular() && fi.Size() == 0:
		return fmt.Sprintf("image %s is empty", image)
	}
	return ""
}

// statReason words a failed stat of path for a message.
func statReason(path string, err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return path + " does not exist"
	}
	return err.Error()
}

// pxeArches are the clients whose iPXE loader ipxe_dir must hold; others
// (arm64: Debian's ipxe package has none) are served when one is there.
var pxeArches = []struct {
	arch iana.Arch
	name string
}{
	{iana.INTEL_X86PC, "x86 BIOS"},
	{iana.EFI_X86_64, "x86-64 UEFI"},
}

// ipxeLoaders tells what ipxe_dir lacks that tftp.root does not make up
// for (DHCP looks in both): problem is "" when every client in pxeArches
// has a loader, else "does not exist", "holds no iPXE loader" or "lacks
// loaders"; missing names the loaders per architecture.
func ipxeLoaders(inv *inventory.Inventory) (problem string, missing []string) {
	dir := inv.TFTP.IPXEDir
	for _, a := range pxeArches {
		if dhcpd.FindLoader(inv, a.arch) == "" {
			missing = append(missing, fmt.Sprintf("%s (%s)", strings.Join(dhcpd.LoaderFiles(a.arch), " or "), a.name))
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "does not exist", missing
	} else if err != nil {
		return "cannot be read (" + err.Error() + ")", missing
	}
	if len(missing) == len(pxeArches) {
		return "holds no iPXE loader", missing
	}
	return "lacks loaders", missing
}

// writableDirProblem is why netsan could not write in dir, or "": it is
// not a directory, or a file cannot be made in it. One that does not exist
// yet is none: serve makes it.
func writableDirProblem(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ""
	case err != nil:
		return err.Error()
	case !fi.IsDir():
		return "is not a directory"
	}
	f, err := os.CreateTemp(dir, ".netsan-check-*")
	if err != nil {
		return fmt.Sprintf("is not writable (%v)", errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return ""
}
