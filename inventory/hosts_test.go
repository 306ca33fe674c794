package inventory

import (
	"fmt"
	"net"
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

// The lookups find a host by the whole MAC, a serial in either case, a
// name; the serial pattern is the one validation holds a host's to.
func TestLookups(t *testing.T) {
	src := `[server]
address = "198.18.0.1"
[iscsi]
base_iqn = "iqn.2026-11.example.lab"
[[image]]
name = "debian"
path = "/srv/debian.img"
[[host]]
name = "pi1"
mac = "dc:a6:32:00:00:01"
boot = "local"
serial = "9FFEFDE1"
[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
boot = "local"
`
	inv, ps := Parse("lookups.toml", []byte(src))
	if inv == nil {
		t.Fatal(ps)
	}
	for _, tc := range []struct {
		what string
		got  *Host
		want string
	}{
		{"mac", inv.HostByMAC(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}), "node1"},
		{"mac prefix", inv.HostByMAC(net.HardwareAddr{0x52, 0x54, 0, 0, 0}), ""},
		{"longer mac", inv.HostByMAC(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1, 0}), ""},
		{"serial, lower case", inv.HostBySerial("9ffefde1"), "pi1"},
		{"other serial", inv.HostBySerial("9ffefde2"), ""},
		{"no serial", inv.HostBySerial(""), ""},
		{"name", inv.HostByName("node1"), "node1"},
		{"other name", inv.HostByName("node2"), ""},
	} {
		name := ""
		if tc.got != nil {
			name = tc.got.Name
		}
		if name != tc.want {
			t.Errorf("%s: host %q, want %q", tc.what, name, tc.want)
		}
	}
	if im := inv.ImageByName("debian"); im == nil || im.Path != "/srv/debian.img" {
		t.Errorf("ImageByName(debian) = %+v", im)
	}
	if im := inv.ImageByName("ubuntu"); im != nil {
		t.Errorf("ImageByName(ubuntu) = %+v, want nil", im)
	}
	for s, want := range map[string]bool{"9ffefde5": true, "0BADC0DE": true, "9ffefde": false, "9ffefde10": false, "9ffefdeg": false, "": false} {
		if got := IsPiSerial(s); got != want {
			t.Errorf("IsPiSerial(%q) = %v, want %v", s, got, want)
		}
		if inv, _ := Parse("serial.toml", []byte(src+"[[host]]\nname = \"pi9\"\nmac = \"dc:a6:32:00:00:09\"\nboot = \"local\"\nserial = \""+s+"\"\n")); (inv != nil) != (want || s == "") {
			t.Errorf("serial %q: valid %v, want %v", s, inv != nil, want)
		}
	}
}
