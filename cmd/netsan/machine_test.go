package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
)

// TestCheckMachine: check reports what serve would refuse on this machine,
// each at its stanza's line, and serve does refuse it; --offline looks at
// the file only.
func TestCheckMachine(t *testing.T) {
	cfg, dataDir := imageLab(t, `listen = ["127.0.0.1:`+fmt.Sprint(netsantest.FreePort(t, "tcp"))+`"]
[[host]]
name = "dev"
mac = "52:54:00:00:00:03"
root = { device = "/dev/netsan-no-such-disk" }
[[host]]
name = "nosize"
mac = "52:54:00:00:00:04"
root = { image = "roots/nosize.img" }
[[target]]
name = "data"
luns = [ { lun = 0, image = "luns/ro.img", read_only = true },
         { lun = 1, image = "luns/new.img", size = "1MiB" } ]
[[target.acl]]
initiator = "iqn.2026-11.example.lab:node1"
`)
	golden := filepath.Join(dataDir, "golden/base.img")
	if err := os.Remove(golden); err != nil {
		t.Fatal(err)
	}
	check := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(append([]string{"check", "-c", cfg}, args...), &out, &out)
		return code, out.String()
	}
	code, out := check()
	for _, want := range []string{
		at(t, cfg, `root = { image = "roots/node1.img"`) + `: host node1: root ` + filepath.Join(dataDir, "roots/node1.img") + ` is missing and must be cloned from golden image "base", but ` + golden + " does not exist",
		at(t, cfg, `root = { image = "roots/node2.img"`) + `: host node2: root ` + filepath.Join(dataDir, "roots/node2.img") + ` is missing and must be cloned`,
		at(t, cfg, `root = { device`) + ": host dev: device /dev/netsan-no-such-disk does not exist",
		at(t, cfg, `root = { image = "roots/nosize.img"`) + ": host nosize: image " + filepath.Join(dataDir, "roots/nosize.img") + " does not exist, and without a size",
		at(t, cfg, `{ lun = 0`) + ": target data lun 0: image " + filepath.Join(dataDir, "luns/ro.img") + " does not exist",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q", want)
		}
	}
	if code != 1 || strings.Contains(out, "OK") || strings.Contains(out, "lun 1") || strings.Contains(out, "warning") {
		t.Errorf("check: exit %d, want 1 with the problems above only:\n%s", code, out)
	}
	// What check refuses, serve refuses: here the clone from the missing
	// golden image, before any service starts.
	if err := cmdServe([]string{"-c", cfg, "--log-format", "json"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "base.img") {
		t.Errorf("serve of what check refuses: %v", err)
	}
	if code, out := check("--offline"); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("check --offline: exit %d\n%s", code, out)
	}

	// With the golden image back, the roots cloned from it are fine.
	if err := os.WriteFile(golden, make([]byte, 4096), 0o444); err != nil {
		t.Fatal(err)
	}
	code, out = check()
	if code != 1 || strings.Contains(out, "node1") || strings.Contains(out, "node2") || !strings.Contains(out, "host dev") {
		t.Errorf("check with the golden image in place: exit %d\n%s", code, out)
	}
}

// at is FILE:LINE:COL of the first occurrence of s in file.
func at(t *testing.T, file, s string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), s)
	if i < 0 {
		t.Fatalf("%s has no %q", file, s)
	}
	line := strings.Count(string(b[:i]), "\n") + 1
	col := i - strings.LastIndexByte(string(b[:i]), '\n')
	return fmt.Sprintf("%s:%d:%d", file, line, col)
}

// TestCheckIPXEDir: a missing ipxe_dir, or one without the loaders, is a
// warning in check (serve starts without it) naming the directory and the
// loaders missing.
func TestCheckIPXEDir(t *testing.T) {
	dir := t.TempDir()
	ipxe := filepath.Join(dir, "ipxe")
	cfg := filepath.Join(dir, "netsan.toml")
	writeFile(t, cfg, "[server]\naddress = \"198.18.0.1\"\ndata_dir = \"data\"\n[tftp]\nlisten = \"127.0.0.1:6969\"\nipxe_dir = \"ipxe\"\n")
	for _, tc := range []struct {
		files []string
		want  string // "" for no warning
	}{
		{nil, cfg + ":6:1: warning: ipxe_dir " + ipxe + " does not exist: no iPXE loader for undionly.kpxe (x86 BIOS), ipxe.efi or snponly.efi (x86-64 UEFI)"},
		{[]string{"README"}, cfg + ":6:1: warning: ipxe_dir " + ipxe + " holds no iPXE loader: no iPXE loader for undionly.kpxe (x86 BIOS), ipxe.efi or snponly.efi (x86-64 UEFI)"},
		{[]string{"snponly.efi"}, cfg + ":6:1: warning: ipxe_dir " + ipxe + " lacks loaders: no iPXE loader for undionly.kpxe (x86 BIOS)"},
		{[]string{"undionly.kpxe"}, ""},
	} {
		for _, f := range tc.files {
			if err := os.MkdirAll(ipxe, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ipxe, f), []byte("loader"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		code := run([]string{"check", "-c", cfg}, &out, &out)
		if code != 0 || !strings.Contains(out.String(), "OK") ||
			(tc.want == "") == strings.Contains(out.String(), "ipxe_dir") || !strings.Contains(out.String(), tc.want) {
			t.Errorf("ipxe_dir with %q: exit %d\n%s\nwant exit 0 and %q", tc.files, code, &out, tc.want)
		}
	}
	// DHCP also finds loaders in tftp.root: they make up for ipxe_dir.
	root := filepath.Join(dir, "tftp")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"undionly.kpxe", "ipxe.efi"} {
		writeFile(t, filepath.Join(root, f), "loader")
	}
	writeFile(t, cfg, "[server]\naddress = \"198.18.0.1\"\ndata_dir = \"data\"\n[tftp]\nlisten = \"127.0.0.1:6969\"\nipxe_dir = \"none\"\nroot = \"tftp\"\n")
	var out bytes.Buffer
	if code := run([]string{"check", "-c", cfg}, &out, &out); code != 0 || strings.Contains(out.String(), "ipxe_dir") {
		t.Errorf("loaders in tftp.root only: exit %d\n%s\nwant exit 0 and no warning", code, &out)
	}
}

// TestCheckDirs: check refuses a data_dir netsan cannot write in and a
// tftp.root that is not there; a data_dir not made yet is fine (serve
// makes it).
func TestCheckDirs(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "netsan.toml")
	inv := func(dataDir, tftpRoot string) string {
		return fmt.Sprintf("[server]\naddress = \"198.18.0.1\"\ndata_dir = %q\n[dhcp]\nenabled = false\n[tftp]\nlisten = \"127.0.0.1:6969\"\nipxe_dir = \"/usr/lib/ipxe\"\nroot = %q\n", dataDir, tftpRoot)
	}
	check := func() (int, string) {
		var out bytes.Buffer
		code := run([]string{"check", "-c", cfg}, &out, &out)
		return code, out.String()
	}
	file := filepath.Join(dir, "a-file")
	writeFile(t, file, "not a directory\n")
	if err := os.Mkdir(filepath.Join(dir, "tftp"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dataDir, tftpRoot string
		want              string // "" for OK
	}{
		{"data", "tftp", ""},
		{"a-file", "tftp", cfg + ":3:1: data_dir " + file + " is not a directory"},
		{"data", "no-tftp", cfg + ":9:1: tftp.root " + filepath.Join(dir, "no-tftp") + " is not a directory on this machine"},
	} {
		writeFile(t, cfg, inv(tc.dataDir, tc.tftpRoot))
		code, out := check()
		switch {
		case tc.want == "" && (code != 0 || strings.Contains(out, "data_dir") || strings.Contains(out, "tftp.root")):
			t.Errorf("data_dir %s, tftp.root %s: exit %d\n%s", tc.dataDir, tc.tftpRoot, code, out)
		case tc.want != "" && (code != 1 || !strings.Contains(out, tc.want)):
			t.Errorf("exit %d\n%s\nwant exit 1 and %q", code, out, tc.want)
		}
	}
}

// TestCheckLinuxFiles: check finds a boot = "linux" host's kernel and
// initramfs under tftp.root, and reports a missing one at its line.
func TestCheckLinuxFiles(t *testing.T) {
	cfg := linuxInventory(t, "")
	dir := filepath.Dir(cfg)
	if err := os.MkdirAll(filepath.Join(dir, "tftp", "debian12"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tftp", "debian12", "vmlinuz"), "kernel\n")
	var out bytes.Buffer
	code := run([]string{"check", "-c", cfg}, &out, &out)
	want := cfg + ":19:1: host linux1: initrd debian12/initrd.img is not a file under tftp.root " + filepath.Join(dir, "tftp")
	if code != 1 || !strings.Contains(out.String(), want) || strings.Contains(out.String(), "kernel") {
		t.Errorf("exit %d\n%s\nwant exit 1 and %q alone", code, out.String(), want)
	}
	writeFile(t, filepath.Join(dir, "tftp", "debian12", "initrd.img"), "initramfs\n")
	out.Reset()
	if code := run([]string{"check", "-c", cfg}, &out, &out); code != 0 {
		t.Errorf("with both files: exit %d\n%s", code, out.String())
	}
}

// linuxInventory writes, in a new directory, an inventory whose one host,
// linux1, boots "linux" from tftp/debian12/ with more keys of its own, and
// returns its path.
func linuxInventory(t *testing.T, more string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "netsan.toml")
	writeFile(t, cfg, `[server]
address = "198.18.0.1"
data_dir = "data"
[dhcp]
enabled = false
[tftp]
listen = "127.0.0.1:6969"
ipxe_dir = "/usr/lib/ipxe"
root = "tftp"
[iscsi]
listen = ["127.0.0.1:13260"]
base_iqn = "iqn.2026-11.example.lab"
[[host]]
name = "linux1"
mac = "52:54:00:00:00:08"
boot = "linux"
root = { image = "roots/linux1.img", size = "64MiB" }
kernel = "debian12/vmlinuz"
initrd = "debian12/initrd.img"
`+more)
	return cfg
}

// TestCheckSecureBoot: a secure_boot host needs shim and GRUB to serve;
// without them check refuses the inventory at the host's secure_boot line,
// naming each missing file and where it would be.
func TestCheckSecureBoot(t *testing.T) {
	cfg := linuxInventory(t, "secure_boot = true\n")
	root := filepath.Join(filepath.Dir(cfg), "tftp")
	if err := os.MkdirAll(filepath.Join(root, "debian12"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "debian12", "vmlinuz"), "kernel")
	writeFile(t, filepath.Join(root, "debian12", "initrd.img"), "initramfs")
	inv, _, err := inventory.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bootmenu.MissingSigned(inv) == "" {
		t.Skip("Debian's shim-signed and grub-efi-amd64-signed are installed here")
	}
	check := func() (int, string) {
		var out bytes.Buffer
		code := run([]string{"check", "-c", cfg}, &out, &out)
		return code, out.String()
	}
	code, out := check()
	want := at(t, cfg, "secure_boot = true") + ": host linux1: secure_boot: nowhere to serve shimx64.efi (tftp.root or /usr/lib/shim/shimx64.efi.signed, package shim-signed), grubx64.efi (tftp.root or /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed, package grub-efi-amd64-signed) from"
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("check without shim and GRUB: exit %d\n%s\nwant exit 1 and %q", code, out, want)
	}
	writeFile(t, filepath.Join(root, "shimx64.efi"), "shim")
	writeFile(t, filepath.Join(root, "grubx64.efi"), "grub")
	if code, out := check(); code != 0 || strings.Contains(out, "secure_boot") {
		t.Errorf("check with both in tftp.root: exit %d\n%s", code, out)
	}
}
