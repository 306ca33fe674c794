package bootmenu

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
)

// ScriptName and ParseScriptName are one contract: what dhcpd hands iPXE is
// what Resolve recognises, in hyphens or colons, and nothing else is.
func TestScriptName(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	if got, want := ScriptName(mac), "boot/52-54-00-ab-cd-ef.ipxe"; got != want {
		t.Errorf("ScriptName = %q, want %q", got, want)
	}
	for _, name := range []string{ScriptName(mac), "boot/52:54:00:ab:cd:ef.ipxe", "boot/52-54-00-AB-CD-EF.ipxe"} {
		if got, ok := ParseScriptName(name); !ok || got.String() != mac.String() {
			t.Errorf("ParseScriptName(%q) = %v, %v; want %s", name, got, ok, mac)
		}
	}
	for _, name := range []string{"52-54-00-ab-cd-ef.ipxe", "boot/52-54-00-ab-cd-ef", "boot/52-54-00-ab-cd-ef.efi",
		"boot/x.ipxe", "boot/00-00-00-00-00-00-00-00.ipxe", "sub/boot/52-54-00-ab-cd-ef.ipxe"} {
		if got, ok := ParseScriptName(name); ok {
			t.Errorf("ParseScriptName(%q) = %s, want no script", name, got)
		}
	}
}

// Each error of Resolve maps to one answer over TFTP and HTTP.
func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Refusal
	}{
		{fmt.Errorf("x: %w", ErrNotFound), Refusal{"not_found", "file not found", http.StatusNotFound}},
		{fmt.Errorf("x: %w", ErrBadName), Refusal{"refused", "access violation", http.StatusBadRequest}},
		{fmt.Errorf("x: %w: %w", ErrForbidden, errors.New("y")), Refusal{"forbidden", "access violation", http.StatusForbidden}},
		{errors.New("stat: I/O error"), Refusal{"error", "server error", http.StatusInternalServerError}},
	} {
		if got := Refuse(tc.err); got != tc.want {
			t.Errorf("Refuse(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
	}
}
