package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ScratchSector is where the guest's /init stamps "netsan-lab host=NAME": in
// the gap before the boot partition, so the filesystem is never touched.
const ScratchSector = 1024

// RepoRoot finds the module root (the directory holding go.mod) from the
// working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// GoldenImage builds (or finds cached) the lab's golden image with
// lab/mkimage.sh and returns its path (build/lab/golden.img).
func GoldenImage(ctx context.Context) (string, error) {
	return buildScript(ctx, "mkimage.sh")
}

// MarkerRoot is what the golden image's root file system (its second
// partition) prints when a kernel-and-initramfs boot runs its /sbin/init
// (lab/guest/rootinit): host= (from the target the root disk's iSCSI session
// is logged in to), root= (the device mounted on /), disk=, target=,
// session=, initiator= and hostname= (DHCP's).
const MarkerRoot = "NETSAN-LAB-ROOT"

// Linux is the lab's kernel and Debian's own open-iscsi initramfs for it,
// made by initramfs-tools (lab/mkinitramfs.sh): booted with the iscsi_*
// parameters and root= on its command line, the initramfs logs in to the
// root target with iscsistart (CHAP too) and mounts root, whose /sbin/init
// prints MarkerRoot.
type Linux struct {
	Kernel string // vmlinuz
	Initrd string // initrd.img
}

// LinuxKernel builds (or finds cached) the kernel and initramfs in
// build/lab/linux.
func LinuxKernel(ctx context.Context) (Linux, error) {
	dir, err := buildScript(ctx, "mkinitramfs.sh")
	if err != nil {
		return Linux{}, err
	}
	return Linux{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}, nil
}

// Install copies the kernel and initramfs into dir as vmlinuz and
// initrd.img (say tftp.root/debian12, or a Pi's tftp.root/<serial>).
func (k Linux) Install(dir string) error {
	for src, name := range map[string]string{k.Kernel: "vmlinuz", k.Initrd: "initrd.img"} {
		if err := Clone(src, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// buildScript runs lab/NAME from the repository root and returns the last
// line it printed: the path of what it built.
func buildScript(ctx context.Context, name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "lab", name))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("lab/%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// Clone copies an image: a reflink where the filesystem has them, else a
// sparse copy that skips all-zero blocks.
func Clone(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return out.Close()
	}
	st, err := in.Stat()
	if err != nil {
		out.Close()
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); ; {
		n, err := in.Read(buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				out.Close()
				return fmt.Errorf("clone %s: %w", dst, werr)
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			out.Close()
			return fmt.Errorf("clone %s: %w", src, err)
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Stamp returns the host name the guest stamped into image's scratch
// sector, or "" when no guest has written there.
func Stamp(image string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 512)
	if _, err := f.ReadAt(buf, ScratchSector*512); err != nil {
		return "", fmt.Errorf("%s: scratch sector: %w", image, err)
	}
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	name, ok := bytes.CutPrefix(line, []byte("netsan-lab host="))
	if !ok {
		return "", nil
	}
	return string(name), nil
}

// bootPartition is where mkimage.sh puts the FAT partition, for mtools.
const bootPartition = "@@1048576"

// SetCommandLine replaces the netsan.* words of the kernel command line in
// both of the image's syslinux.cfg files (BIOS and UEFI) with args, and
// the initramfs list with initrds when any are given (the image holds
// /initrd.img, enough for a SAN boot, and /data.img, which adds open-iscsi's
// daemon and e2fsprogs for netsan.mode=data).
func SetCommandLine(image, args string, initrds ...string) error {
	return editSyslinux(image, func(w []string) string {
		switch {
		case strings.EqualFold(w[0], "APPEND"):
			kept := []string{"APPEND"}
			for _, f := range w[1:] {
				if !strings.HasPrefix(f, "netsan.") {
					kept = append(kept, f)
				}
			}
			return "  " + strings.Join(kept, " ") + " " + args
		case strings.EqualFold(w[0], "INITRD") && len(initrds) > 0:
			return "  INITRD " + strings.Join(initrds, ",")
		}
		return ""
	})
}

// SetPrompt makes the image's syslinux wait at its "boot:" prompt for d
// (tenths of a second in syslinux.cfg) before it boots the default entry,
// as a machine left at its boot menu does: the firmware reads nothing from
// the disk in that time.
func SetPrompt(image string, d time.Duration) error {
	return editSyslinux(image, func(w []string) string {
		switch {
		case strings.EqualFold(w[0], "PROMPT"):
			return "PROMPT 1"
		case strings.EqualFold(w[0], "TIMEOUT"):
			return "TIMEOUT " + strconv.FormatInt(int64(d/(100*time.Millisecond)), 10)
		}
		return ""
	})
}

// editSyslinux rewrites both syslinux.cfg files of image line by line: edit
// gets each non-empty line's words and returns its replacement, or "" to
// keep it.
func editSyslinux(image string, edit func(words []string) string) error {
	for _, cfg := range []string{"::/syslinux.cfg", "::/EFI/BOOT/syslinux.cfg"} {
		cmd := exec.Command("mtype", "-i", image+bootPartition, cfg)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		old, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("mtype %s: %w", cfg, err)
		}
		var b strings.Builder
		for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
			if w := strings.Fields(line); len(w) > 0 {
				if n := edit(w); n != "" {
					line = n
				}
			}
			b.WriteString(line + "\n")
		}
		cmd = exec.Command("mcopy", "-o", "-i", image+bootPartition, "-", cfg)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		cmd.Stdin = strings.NewReader(b.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mcopy %s: %w: %s", cfg, err, out)
		}
	}
	return nil
}
