package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/netsan/netsan/lab"
)

const baseIQN = "iqn.2026-11.example.lab"

// host is inventory host n: node<n>, with its MAC, fixed IP and IQNs.
func host(t *testing.T, n int) lab.Host {
	t.Helper()
	name := fmt.Sprintf("node%d", n)
	return lab.Host{
		Name:      name,
		MAC:       fmt.Sprintf("52:54:00:4e:53:%02x", n),
		IP:        fmt.Sprintf("198.18.0.%d", 10+n),
		Initiator: baseIQN + ":" + name,
		Target:    baseIQN + ":" + name,
	}
}

// machine is the QEMU guest for h: its MAC and an SMBIOS UUID of its own.
func machine(h lab.Host, fw lab.Firmware) lab.Machine {
	mac := strings.ReplaceAll(h.MAC, ":", "")
	return lab.Machine{
		Name:     h.Name,
		MAC:      h.MAC,
		UUID:     "4e455453-414e-4c41-4200-" + mac,
		Firmware: fw,
	}
}

// checkMarker checks the guest's marker: it booted h's own root target with
// the expected firmware, from a fresh clone.
func checkMarker(t *testing.T, line string, h lab.Host, firmware string) {
	t.Helper()
	f := lab.Fields(line)
	want := map[string]string{"host": h.Name, "target": h.Target, "prev": "none", "firmware": firmware}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("marker %s = %q, want %q (line %q)", k, f[k], v, line)
		}
	}
	if !strings.HasPrefix(f["disk"], "/dev/sd") {
		t.Errorf("marker disk = %q, want an iSCSI SCSI disk /dev/sd* (line %q)", f["disk"], line)
	}
}

// checkStamp checks who wrote image's scratch sector ("" = nobody).
func checkStamp(t *testing.T, image, want string) {
	t.Helper()
	got, err := lab.Stamp(image)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s stamped by %q, want %q", image, got, want)
	}
}
