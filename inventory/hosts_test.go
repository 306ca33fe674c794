package inventory

import (
	"fmt"
	"testing"
)

// TestFreeAddr: the address a new host is offered is one validation
// accepts for it, the first such in the subnet.
func TestFreeAddr(t *testing.T) {
	host := func(n int, ip string) string {
		return fmt.Sprintf("[[host]]\nname = \"h%d\"\nmac = \"52:54:00:00:00:%02x\"\nboot = \"local\"\nip = %q\n", n, n, ip)
	}
	for _, tc := range []struct {
		name, dhcp, hosts, want string
	}{
		{"first after the server", `subnet = "198.18.0.0/24"`, "", "198.18.0.2"},
		{"router, dns, hosts and the pool skipped",
			"subnet = \"198.18.0.0/24\"\nrange = [\"198.18.0.5\", \"198.18.0.9\"]\nrouter = \"198.18.0.2\"\ndns = [\"198.18.0.3\"]",
			host(1, "198.18.0.4") + host(2, "198.18.0.10"), "198.18.0.11"},
		{"pool from the start", "subnet = \"198.18.0.0/24\"\nrange = [\"198.18.0.2\", \"198.18.0.253\"]", "", "198.18.0.254"},
		{"full /30", `subnet = "198.18.0.0/30"`, host(1, "198.18.0.2"), ""},
		{"no subnet", `mode = "proxy"`, "", ""},
	} {
		src := "[server]\naddress = \"198.18.0.1\"\ndata_dir = \"/var/lib/netsan\"\n[iscsi]\nbase_iqn = \"iqn.2026-11.example.lab\"\n[dhcp]\n" + tc.dhcp + "\n" + tc.hosts
		inv, ps := Parse("free.toml", []byte(src))
		if inv == nil {
			t.Fatalf("%s: %v", tc.name, ps)
		}
		got := inv.FreeAddr()
		if s := got.String(); got.IsValid() != (tc.want != "") || got.IsValid() && s != tc.want {
			t.Errorf("%s: FreeAddr() = %v, want %q", tc.name, got, tc.want)
			continue
		}
		if got.IsValid() {
			// Validation accepts a host at that address.
			if inv, ps := Parse("free.toml", []byte(src+host(9, got.String()))); inv == nil || len(ps) > 0 {
				t.Errorf("%s: a host at %s: %v", tc.name, got, ps)
			}
		}
	}
}
