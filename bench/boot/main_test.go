package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The consoles are two real boots' serial output: OVMF's PXE, ipxe.efi and
// syslinux.efi drawing its "Loading" lines a character at a time between
// cursor moves; and SeaBIOS with QEMU's iPXE ROM and BIOS syslinux.
func TestOnConsole(t *testing.T) {
	for _, c := range []struct {
		file string
		want []string
	}{
		{"testdata/uefi.serial", []string{"pxe", "pxe-ip", "nbp-start", "nbp", "ipxe-init", "ipxe", "configured", "sanboot", "kernel", "initrd", "linux"}},
		{"testdata/bios.serial", []string{"ipxe-init", "ipxe", "configured", "sanboot", "kernel", "initrd", "linux"}},
	} {
		con, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if got := onConsole(string(con)); !slices.Equal(got, c.want) {
			t.Errorf("%s: onConsole = %q, want %q", c.file, got, c.want)
		}
	}
}

// The capture is the start of a UEFI guest's SAN boot from netsan: iPXE's
// login, TEST UNIT READY twice, READ CAPACITY, then EFI's first reads of
// the disk, one command at a time; it ends with a READ sent and not yet
// answered.
func TestISCSITrace(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	dir := t.TempDir()
	pcap := filepath.Join(dir, "ipxe-iscsi.pcapng")
	b, err := os.ReadFile("testdata/ipxe-iscsi.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pcap, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmds, err := iscsiTrace(context.Background(), pcap, time.Unix(1796062590, 0))
	if err != nil {
		t.Fatal(err)
	}
	ops := map[byte]int{}
	for i, c := range cmds {
		ops[c.op]++
		last := i == len(cmds)-1
		if c.answerd == last {
			t.Errorf("command %d (0x%02x at %v): answered %v", i, c.op, c.at, c.answerd)
		}
		if c.answerd && (c.done < c.at || c.done-c.at > 10*time.Millisecond) {
			t.Errorf("command %d (0x%02x): status %v after it", i, c.op, c.done-c.at)
		}
		if c.op == 0x28 && c.answerd && c.dataIn != 1 {
			t.Errorf("READ(10) of %d bytes: %d Data-In PDUs, want 1", c.length, c.dataIn)
		}
	}
	if want := map[byte]int{0x00: 2, 0x25: 1, 0x28: 18}; !maps.Equal(ops, want) {
		t.Errorf("commands by opcode %v, want %v", ops, want)
	}
	if len(cmds) > 0 && (cmds[0].at < 16*time.Second || cmds[0].at > 18*time.Second) {
		t.Errorf("first command at %v from the origin, want 17.0 s", cmds[0].at)
	}
	if tsv, err := os.ReadFile(filepath.Join(dir, "iscsi-commands.tsv")); err != nil || bytes.Count(tsv, []byte("\n")) != len(cmds)+1 {
		t.Errorf("iscsi-commands.tsv: %v, %d lines for %d commands", err, bytes.Count(tsv, []byte("\n")), len(cmds))
	}
	t.Log(traceSummary(cmds))
}

// A BIOS guest shows none of OVMF's steps: its first step counts from QEMU
// start, and a step it did not show is "-", not a time.
func TestSinceBefore(t *testing.T) {
	r := result{at: map[string]time.Duration{
		"ipxe-init": 2 * time.Second, "ipxe": 3500 * time.Millisecond, "sanboot": 4 * time.Second,
	}}
	idx := func(name string) int {
		return slices.IndexFunc(milestones, func(m struct{ name, text string }) bool { return m.name == name })
	}
	for _, c := range []struct {
		step, want string
	}{
		{"pxe", "-"}, {"ipxe-init", "2.0"}, {"ipxe", "1.5"}, {"configured", "-"}, {"sanboot", "0.5"},
	} {
		if got := sinceBefore(r, idx(c.step)); got != c.want {
			t.Errorf("%s: %q, want %q", c.step, got, c.want)
		}
	}
}
