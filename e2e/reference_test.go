package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/netsan/netsan/lab"
)

// TestReference boots the golden image from dnsmasq + tgtd, BIOS and UEFI:
// it proves the image and the lab independently of netsan, and is what
// bench/boot measures netsan against.
func TestReference(t *testing.T) {
	for _, fw := range []lab.Firmware{lab.BIOS, lab.UEFI} {
		t.Run(fw.String(), func(t *testing.T) { testReference(t, fw) })
	}
}

func testReference(t *testing.T, fw lab.Firmware) {
	needLab(t)
	if err := lab.ReferenceAvailable(); err != nil {
		t.Skip(err)
	}
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
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
