package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/netsan/netsan/lab"
)

// TestReference boots the golden image from dnsmasq + tgtd: it proves the
// image and the lab independently of netsan (a failure here is not
// netsan's), and is what bench/boot measures netsan against. The UEFI case
// costs another minute of CI and runs with NETSAN_E2E_REFERENCE_UEFI=1
// (bench/boot boots it too).
func TestReference(t *testing.T) {
	t.Run("bios", func(t *testing.T) { testReference(t, lab.BIOS) })
	t.Run("uefi", func(t *testing.T) {
		if os.Getenv("NETSAN_E2E_REFERENCE_UEFI") != "1" {
			t.Skip("NETSAN_E2E_REFERENCE_UEFI != 1")
		}
		testReference(t, lab.UEFI)
	})
}

func testReference(t *testing.T, fw lab.Firmware) {
	needLab(t)
	if err := lab.ReferenceAvailable(); err != nil {
		t.Skip(err)
	}
	l := newLab(t)
	ctx, cancel := testContext(t, bootTimeout)
	defer cancel()

	h := host(t, 1)
	h.Image = filepath.Join(l.Dir, "node1.img")
	if err := lab.Clone(env.golden, h.Image); err != nil {
		t.Fatal(err)
	}
	if err := l.StartReference(ctx, []lab.Host{h}); err != nil {
		t.Fatal(err)
	}
	g, err := l.Boot(ctx, machine(h, fw))
	if err != nil {
		t.Fatal(err)
	}
	line, err := g.WaitLine(ctx, lab.MarkerBoot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s after %v", line, g.Elapsed())
	checkMarker(t, line, h, fw.String())
	if err := g.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	checkStamp(t, h.Image, h.Name)
	checkStamp(t, env.golden, "")
}
