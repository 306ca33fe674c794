package lab

import (
	"bufio"
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
)

// Firmware is what a guest powers on with.
type Firmware int

const (
	// BIOS is SeaBIOS with QEMU's iPXE NIC option ROM: iPXE does the first DHCP.
	BIOS Firmware = iota
	// UEFI is OVMF with its own PXE (no NIC option ROM): the first DHCP comes
	// from the firmware, which then loads ipxe.efi/snponly.efi over TFTP.
	UEFI
	// UEFISecureBoot is UEFI with Secure Boot enforced: Debian's OVMF build
	// that needs SMM, with variables that enroll Microsoft's keys and turn
	// Secure Boot on (OVMF_CODE_4M.ms.fd, OVMF_VARS_4M.ms.fd). It runs only
	// what Microsoft's UEFI CA signed: shim, then what shim trusts.
	UEFISecureBoot
)

func (f Firmware) String() string {
	switch f {
	case UEFI:
		return "uefi"
	case UEFISecureBoot:
		return "uefi-secureboot"
	}
	return "bios"
}

// ovmf names a UEFI firmware's code and variable template.
func (f Firmware) ovmf() (code, vars string) {
	if f == UEFISecureBoot {
		return "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	}
	return "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
}

// Machine describes one QEMU guest.
type Machine struct {
	Name     string // log and serial file names
	MAC      string
	UUID     string // SMBIOS UUID; iPXE's default initiator name uses it
	Firmware Firmware
	// Disk, when set, is a local disk (an "installed host") booted first.
	Disk string
	// Reboot lets the guest reboot; otherwise a reboot ends QEMU.
	Reboot bool
	// MemoryMiB defaults to 512.
	MemoryMiB int
	// Kernel, Initrd and Append, when Kernel is set, boot that kernel
	// directly (QEMU's -kernel, -initrd, -append), as a machine whose
	// firmware fetched them itself does (a Raspberry Pi).
	Kernel, Initrd, Append string
	// HTTPBoot (UEFI only) turns OVMF's PXE off, over IPv4 and IPv6, so
	// that its first network boot option is "UEFI HTTPv4": the firmware's
	// own HTTP Boot, which fetches the loader by the URL DHCP gives.
	HTTPBoot bool
}

// Markers the guest's /init (lab/guest/init) prints on the serial console.
const (
	MarkerBoot = "NETSAN-LAB-MARKER"
	MarkerData = "NETSAN-LAB-DATA"
	MarkerFail = "NETSAN-LAB-FAIL"
)

// Guest is a running QEMU.
type Guest struct {
	Machine
	// Serial is the file the guest's serial console is written to.
	Serial string
	// Started is when QEMU was started.
	Started time.Time
	proc    *Proc
}

// QEMUAvailable reports why guests cannot run here, or nil.
func QEMUAvailable() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return errors.New("qemu-system-x86_64 not installed (qemu-system-x86)")
	}
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd",
		"/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s missing (ovmf)", f)
		}
	}
	return nil
}

// Boot starts m on a new tap device. There is no KVM on the lab machines
// (and syslinux's mode switch trips over a half-working one), so it is
// software emulation: tens of seconds a boot.
func (l *Lab) Boot(ctx context.Context, m Machine) (*Guest, error) {
	tap, err := l.Tap(ctx)
	if err != nil {
		return nil, err
	}
	g := &Guest{Machine: m, Serial: filepath.Join(l.Dir, m.Name+".serial")}
	if g.MemoryMiB == 0 {
		g.MemoryMiB = 512
	}
	_ = os.Remove(g.Serial)
	argv := []string{"qemu-system-x86_64",
		"-name", m.Name,
		"-accel", "tcg",
		"-m", strconv.Itoa(g.MemoryMiB),
		"-uuid", m.UUID,
		"-display", "none", "-vga", "none",
		"-monitor", "none",
		"-serial", "file:" + g.Serial,
		"-netdev", "tap,id=net0,ifname=" + tap + ",script=no,downscript=no",
	}
	if !m.Reboot {
		argv = append(argv, "-no-reboot")
	}
	nic := "virtio-net-pci,netdev=net0,mac=" + m.MAC
	switch m.Firmware {
	case BIOS:
		// SeaBIOS copies what iPXE prints only to a port it is told about.
		sercon := filepath.Join(l.Dir, "sercon-port")
		if err := os.WriteFile(sercon, []byte{0xf8, 0x03}, 0o644); err != nil {
			return nil, err
		}
		argv = append(argv, "-fw_cfg", "name=etc/sercon-port,file="+sercon)
	case UEFI, UEFISecureBoot:
		code, template := m.Firmware.ovmf()
		vars := filepath.Join(l.Dir, m.Name+".OVMF_VARS.fd")
		if err := copyFile(template, vars); err != nil {
			return nil, err
		}
		machine := "q35"
		if m.Firmware == UEFISecureBoot {
			// The Secure Boot build keeps its variables behind SMM, and
			// stops at once without it.
			machine += ",smm=on"
			argv = append(argv, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		argv = append(argv,
			"-machine", machine,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		// No option ROM: OVMF's own VirtioNetDxe and PXE do the first DHCP.
		nic += ",romfile="
		if m.HTTPBoot {
			// OVMF (edk2 PxeBcPcdProducerLib, 2020 on) reads these at
			// boot: without PXE its NIC's boot options start with HTTP
			// Boot over IPv4, rather than after two PXE attempts time out.
			argv = append(argv,
				"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
				"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
		}
	}
	if m.Disk != "" {
		argv = append(argv,
			"-drive", "if=none,id=disk0,format=raw,file="+m.Disk,
			"-device", "virtio-blk-pci,drive=disk0,bootindex=0")
		nic += ",bootindex=1"
	} else if m.Kernel == "" {
		nic += ",bootindex=0"
	}
	argv = append(argv, "-device", nic)
	if m.Kernel != "" {
		argv = append(argv, "-kernel", m.Kernel, "-initrd", m.Initrd, "-append", m.Append)
	}
	g.Started = time.Now()
	if g.proc, err = l.Start(m.Name+".qemu", argv...); err != nil {
		return nil, err
	}
	return g, nil
}

// Done is closed when QEMU has exited.
func (g *Guest) Done() <-chan struct{} { return g.proc.Done() }

// Wait waits for QEMU to exit (the guest powered off), or ctx.
func (g *Guest) Wait(ctx context.Context) error {
	select {
	case <-g.proc.Done():
		if err := g.proc.Err(); err != nil {
			return fmt.Errorf("%s: qemu: %w: %s", g.Name, err, tail(g.proc.Log, 2048))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: still running: %w", g.Name, ctx.Err())
	}
}

// Stop ends QEMU.
func (g *Guest) Stop() { _ = g.proc.Stop(5 * time.Second) }

// Console returns what the guest has printed on its serial console so far.
func (g *Guest) Console() string {
	b, _ := os.ReadFile(g.Serial)
	return string(b)
}

// WaitLine waits for a serial console line containing want and returns it.
// It gives up early when the guest reports a failure (MarkerFail) or QEMU
// exits without printing it.
func (g *Guest) WaitLine(ctx context.Context, want string) (string, error) {
	return g.wait(ctx, want, findLine)
}

// WaitText waits for want anywhere on the console, a line finished or not:
// full-screen text such as an iPXE menu is drawn with cursor moves, not
// newlines.
func (g *Guest) WaitText(ctx context.Context, want string) error {
	_, err := g.wait(ctx, want, func(text, want string) (string, bool) {
		return want, strings.Contains(text, want)
	})
	return err
}

func (g *Guest) wait(ctx context.Context, want string, find func(text, want string) (string, bool)) (string, error) {
	for {
		exited := false
		select {
		case <-g.proc.Done():
			exited = true
		default:
		}
		if line, ok := find(g.Console(), want); ok {
			return line, nil
		}
		if line, ok := findLine(g.Console(), MarkerFail); ok {
			return "", fmt.Errorf("%s: guest failed: %s", g.Name, line)
		}
		if exited {
			return "", fmt.Errorf("%s: qemu exited without %q", g.Name, want)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: no %q on the console: %w", g.Name, want, ctx.Err())
		case <-g.proc.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Fields parses a marker line's key=value words (values may be "quoted").
func Fields(line string) map[string]string {
	m := make(map[string]string)
	for len(line) > 0 {
		line = strings.TrimLeft(line, " \r")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		if i := strings.LastIndexByte(k, ' '); i >= 0 {
			k = k[i+1:]
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			v, line, _ = strings.Cut(rest[1:], `"`)
		} else {
			v, line, _ = strings.Cut(rest, " ")
		}
		m[k] = strings.TrimRight(v, "\r")
	}
	return m
}

// findLine returns the first complete line of text containing want, from
// want on. A last line without its newline is still being written.
func findLine(text, want string) (string, bool) {
	text = text[:strings.LastIndexByte(text, '\n')+1]
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if i := strings.Index(sc.Text(), want); i >= 0 {
			return strings.TrimRight(sc.Text()[i:], "\r"), true
		}
	}
	return "", false
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// Elapsed is the time since QEMU was started.
func (g *Guest) Elapsed() time.Duration { return time.Since(g.Started).Round(100 * time.Millisecond) }
