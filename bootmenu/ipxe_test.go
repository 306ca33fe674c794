package bootmenu

import (
	"bytes"
	"cmp"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScriptsInIPXE runs generated scripts in iPXE itself: Debian's
// ipxe.lkrn under QEMU (TCG, no network, no disk) takes the script as its
// initrd and runs it, its console copied to the serial port by SeaBIOS.
// Each script must reach the lines it is written to reach, in order, and
// iPXE must never complain about a command, an option or its usage. The
// SAN and local boots fail here (there is no network and no disk), which
// is what exercises their failure paths.
func TestScriptsInIPXE(t *testing.T) {
	const lkrn = "/usr/lib/ipxe/ipxe.lkrn"
	if _, err := os.Stat(lkrn); err != nil {
		t.Skip("ipxe.lkrn not installed (Debian package ipxe)")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	r := newTestTree(t).resolver(t)
	sercon := filepath.Join(t.TempDir(), "sercon-port")
	if err := os.WriteFile(sercon, []byte{0xf8, 0x03}, 0o644); err != nil { // COM1, 0x3f8
		t.Fatal(err)
	}
	// The console check itself: iPXE's complaint about a bad option is
	// what the cases below must never show.
	t.Run("catches", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "bad.ipxe")
		if err := os.WriteFile(path, []byte("#!ipxe\nsanboot --bogus || echo netsan-test-done\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := runIPXE(t, qemu, lkrn, path, sercon, []string{"netsan-test-done"})
		if !strings.Contains(out, "Unrecognised option") || !strings.Contains(out, "Usage:") {
			t.Errorf("iPXE did not complain about sanboot --bogus:\n%s", out)
		}
	})
	for _, tc := range []struct {
		name  string
		mac   string
		ip    string   // the client's address; 198.18.0.200 when ""
		steps []string // in order
	}{
		{"san", "52-54-00-00-00-01", "", []string{
			"netsan: node1 52-54-00-00-00-01 booting from SAN iqn.2026-11.example.lab:node1",
			"Booting from SAN device 0x80", // the bare sanboot: the drive DHCP's root-path hooks
			"netsan: SAN boot of iqn.2026-11.example.lab:node1 failed",
			"Press s for the iPXE shell, or wait to reboot",
		}},
		{"local", "52-54-00-00-00-03", "", []string{
			"netsan: desk1 52-54-00-00-00-03 booting from the local disk",
			"netsan: local boot failed",
		}},
		{"menu", "52-54-00-00-00-04", "", []string{
			"netsan: lab1 52-54-00-00-00-04 198.18.0.14",
			"Boot from SAN (iqn.2026-11.example.lab:lab1)", "Boot from local disk", "iPXE shell", "Reboot",
			// the default entry, after the timeout
			"netsan: lab1 booting from SAN iqn.2026-11.example.lab:lab1",
			"Could not open SAN device", // sanboot <its URI>: no network here
			"netsan: boot failed",
			"Press any key to return to the menu",
		}},
		{"shell", "52-54-00-00-00-05", "", []string{
			"netsan: dev1 52-54-00-00-00-05 198.18.0.15: iPXE shell",
			"iPXE>",
		}},
		// The script carries its CHAP secret: its own host's address only.
		{"linux", "52-54-00-00-00-08", "198.18.0.18", []string{
			"netsan: linux1 52-54-00-00-00-08 booting tftp://198.18.0.1/debian12/vmlinuz with root on iqn.2026-11.example.lab:linux1",
			"netsan: boot of tftp://198.18.0.1/debian12/vmlinuz failed", // no network here
			"Press s for the iPXE shell, or wait to reboot",
		}},
		{"unknown", "02-00-00-ab-cd-ef", "", []string{
			"netsan: this machine is not in the inventory",
			"MAC address: 02-00-00-ab-cd-ef", "IP address: 198.18.0.200",
			`[[host]]`, `mac = "02:00:00:ab:cd:ef"`,
			"Retry (after the inventory is reloaded)", "Exit to the next boot device",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ip := cmp.Or(tc.ip, "198.18.0.200")
			f, err := r.Resolve(Client{IP: netip.MustParseAddr(ip)}, "boot/"+tc.mac+".ipxe")
			if err != nil {
				t.Fatal(err)
			}
			script, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), tc.name+".ipxe")
			if err := os.WriteFile(path, script, 0o644); err != nil {
				t.Fatal(err)
			}
			out := runIPXE(t, qemu, lkrn, path, sercon, tc.steps)
			for _, bad := range []string{"command not found", "Unrecognised option", "Usage:", "ipxe.org/cmd/", "No such"} {
				if strings.Contains(out, bad) {
					t.Errorf("iPXE said %q running\n%s\nconsole:\n%s", bad, script, out)
				}
			}
		})
	}
}

var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Za-z0-9])`)

// runIPXE boots iPXE with script as its initrd and returns its console
// text (escape sequences removed, blanks collapsed) once every step has
// appeared in order, or fails the test after 90 s.
func runIPXE(t *testing.T, qemu, lkrn, script, sercon string, steps []string) string {
	t.Helper()
	cmd := exec.Command(qemu, "-accel", "tcg", "-m", "128", "-display", "none", "-net", "none",
		"-no-reboot", "-serial", "stdio", "-kernel", lkrn, "-initrd", script,
		"-fw_cfg", "name=etc/sercon-port,file="+sercon)
	var mu sync.Mutex
	var raw bytes.Buffer
	cmd.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return raw.Write(p)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	text := func() string {
		mu.Lock()
		defer mu.Unlock()
		s := ansiEscape.ReplaceAllString(raw.String(), " ")
		return strings.Join(strings.Fields(s), " ")
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		s := text()
		rest, next := s, 0
		for next < len(steps) {
			i := strings.Index(rest, strings.Join(strings.Fields(steps[next]), " "))
			if i < 0 {
				break
			}
			rest = rest[i+len(steps[next]):]
			next++
		}
		if next == len(steps) {
			return s
		}
		select {
		case <-exited:
			t.Fatalf("QEMU exited before %q; console:\n%s", steps[next], s)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 90 s; console:\n%s", steps[next], s)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
