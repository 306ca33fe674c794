package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/lab"
)

// menuWait is how long the guest's syslinux waits at its prompt: far past
// iSCSI's NOPInterval + NOPTimeout, as a machine left at its boot menu.
const menuWait = 120 * time.Second

// Test: a node that waits at its boot menu. iPXE does not answer NOP-In
// while the loader it started sits at a prompt (nothing polls the NIC), so
// netsan closes the silent connection; when syslinux then reads the kernel,
// iPXE logs in again and the guest boots. A change to the NOP logic or to
// the session table that broke the second login would hang such nodes.
func TestIdleAtMenu(t *testing.T) {
	needNetsan(t)
	h := sanHost(t, 12)
	s := serve(t, []lab.NetsanHost{h}, nil, nil)
	if err := lab.SetPrompt(s.roots[h.Name], menuWait); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := testContext(t, bootTimeout+menuWait)
	defer cancel()
	s.bootMarker(t, ctx, h.Host, lab.BIOS)
	checkStamp(t, s.roots[h.Name], h.Name)

	b, err := os.ReadFile(s.netsan.Log)
	if err != nil {
		t.Fatal(err)
	}
	var logins, dropped int
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"initiator": "`+h.Initiator+`"`) {
			continue
		}
		switch {
		case strings.Contains(line, "\tlogin\t") && strings.Contains(line, `"discovery": false`):
			logins++
		case strings.Contains(line, "no answer to NOP-In"):
			dropped++
		}
	}
	// The wait must have cost the first connection, and the boot a second
	// login: otherwise the test did not wait long enough to test anything.
	if dropped == 0 {
		t.Errorf("netsan never closed %s's silent connection during the %v prompt", h.Initiator, menuWait)
	}
	if logins < 2 {
		t.Errorf("%d logins by %s, want at least 2 (one before the prompt, one after it)", logins, h.Initiator)
	}
	t.Logf("%d logins, %d connections closed for want of a NOP-Out", logins, dropped)
}
