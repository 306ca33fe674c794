package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/netsantest"
)

// suggestedStanza renders the unknown-host menu for mac from the inventory
// at cfg, as a client at the pool address 198.18.0.50 gets it, and returns
// the [[host]] stanza it suggests.
func suggestedStanza(t *testing.T, cfg, mac string) string {
	t.Helper()
	inv, err := load(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, err := bootmenu.New(inv, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Resolve(bootmenu.Client{IP: netip.MustParseAddr("198.18.0.50")}, bootmenu.ScriptName(hw))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	script, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	var stanza strings.Builder
	for _, l := range strings.Split(string(script), "\n") {
		l, ok := strings.CutPrefix(l, "item --gap   ")
		if ok && (stanza.Len() > 0 || l == "[[host]]") {
			stanza.WriteString(l + "\n")
		}
	}
	if stanza.Len() == 0 {
		t.Fatalf("no [[host]] stanza in the unknown-host menu:\n%s", script)
	}
	return stanza.String()
}

// acceptedAsIs appends stanza to cfg and requires check to find no problem
// at all with the result.
func acceptedAsIs(t *testing.T, cfg, stanza string) {
	t.Helper()
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n" + stanza); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var out bytes.Buffer
	code := run([]string{"check", "-c", cfg}, &out, &out)
	if code != 0 || strings.Count(out.String(), "\n") != 1 || !strings.Contains(out.String(), ": OK (") {
		t.Errorf("check of the suggested stanza:\n%s\nsaid (exit %d):\n%s", stanza, code, &out)
	}
}

// TestUnknownHostStanza: the stanza the unknown-host menu suggests passes
// check as it is: a fixed address free outside the pool, a name nobody
// has, a root cloned from a golden image that is on disk, or the menu
// where there is none.
func TestUnknownHostStanza(t *testing.T) {
	const mac = "02:00:00:ab:cd:ef"
	t.Run("golden image", func(t *testing.T) {
		cfg, _ := imageLab(t, `
[dhcp]
subnet = "198.18.0.0/24"
range  = ["198.18.0.2", "198.18.0.99"]
router = "198.18.0.1"
dns    = ["198.18.0.100"]

[[host]]
name = "host-abcdef"
mac  = "52:54:00:00:00:10"
ip   = "198.18.0.101"
boot = "local"
`)
		stanza := suggestedStanza(t, cfg, mac)
		for _, want := range []string{`name = "host-abcdef-2"`, `ip   = "198.18.0.102"`, `boot = "san"`, `from = "base"`} {
			if !strings.Contains(stanza, want) {
				t.Errorf("suggested stanza lacks %s:\n%s", want, stanza)
			}
		}
		acceptedAsIs(t, cfg, stanza)
	})
	t.Run("no golden image, no subnet", func(t *testing.T) {
		cfg := loopbackInventory(t, fmt.Sprintf("[iscsi]\nlisten = [\"127.0.0.1:%d\"]\nbase_iqn = \"iqn.2026-11.example.test\"\n", netsantest.FreePort(t, "tcp")))
		stanza := suggestedStanza(t, cfg, mac)
		if !strings.Contains(stanza, `boot = "menu"`) || strings.Contains(stanza, "root") || strings.Contains(stanza, "ip") {
			t.Errorf("suggested stanza without golden image or subnet:\n%s", stanza)
		}
		acceptedAsIs(t, cfg, stanza)
	})
}
