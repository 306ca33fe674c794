package inventory_test

import (
	"net"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/inventory/inventorytest"
)

const handWritten = inventorytest.ByHand

var newHost = inventory.HostStanza{Name: "new", MAC: "52:54:00:00:00:09", IP: "198.18.0.102", Boot: "san",
	Root: &inventory.RootStanza{Image: "roots/new.img", Size: "1GiB"}}

// TestAddHostKeepsEveryByte: the stanza goes after the last [[host]] (and
// its sub-table), set off by a blank line, every other byte as it was;
// removing it again gives the file back byte for byte.
func TestAddHostKeepsEveryByte(t *testing.T) {
	out := string(inventory.AddHost([]byte(handWritten), newHost))
	cut := strings.Index(handWritten, "secret = \"0123456789abcdef\"\n") + len("secret = \"0123456789abcdef\"\n")
	want := handWritten[:cut] + "\n" + newHost.String() + handWritten[cut:]
	if out != want {
		t.Fatalf("AddHost gave\n%s\nwant\n%s", out, want)
	}
	inv, ps := inventory.Parse("netsan.toml", []byte(out))
	if inv == nil {
		t.Fatalf("the result does not validate: %v", ps)
	}
	if h := inv.HostByName("new"); h == nil || h.MAC.String() != "52:54:00:00:00:09" || h.IP.String() != "198.18.0.102" || h.Root.Size.Bytes != 1<<30 {
		t.Errorf("new host as parsed: %+v", h)
	}
	back, err := inventory.RemoveHost([]byte(out), "new")
	if err != nil || string(back) != handWritten {
		t.Errorf("inventory.RemoveHost(inventory.AddHost(f)) is not f (err %v):\n%s", err, back)
	}
}

// TestRemoveHostKeepsEveryByte: exactly the host's table, its sub-tables
// and the comment block directly above it go; the comment block above
// the next table stays, with it.
func TestRemoveHostKeepsEveryByte(t *testing.T) {
	for _, tc := range []struct{ name, gone string }{
		{"desk", "# the PC under the desk\n# (keep it)\n[[host]]\nname=\"desk\"\nmac = \"52:54:00:00:00:01\"\nip = \"198.18.0.101\"\n  boot = \"local\"   # boots from its disk\n# chap = { user = \"x\", secret = \"…\" }\n\n"},
		{"pi", "# the Pi\n[[host]]\n\tname = 'pi'\n\tmac = \"d8:3a:dd:00:00:03\"\n\tboot = \"menu\"\n[host.chap]\nuser = \"pi\"\nsecret = \"0123456789abcdef\"\n\n"},
	} {
		if !strings.Contains(handWritten, tc.gone) {
			t.Fatalf("test data: %q not in the file", tc.gone)
		}
		out, err := inventory.RemoveHost([]byte(handWritten), tc.name)
		if want := strings.Replace(handWritten, tc.gone, "", 1); err != nil || string(out) != want {
			t.Errorf("RemoveHost %s (err %v) gave\n%s\nwant\n%s", tc.name, err, out, want)
			continue
		}
		if inv, ps := inventory.Parse("netsan.toml", out); inv == nil || len(inv.Hosts) != 1 || inv.HostByName(tc.name) != nil {
			t.Errorf("after removing %s: %v", tc.name, ps)
		}
	}
	if _, err := inventory.RemoveHost([]byte(handWritten), "nobody"); err == nil || !strings.Contains(err.Error(), `no host "nobody"`) {
		t.Errorf("removing a host that is not there: %v", err)
	}
	inline := "host = [ { name = \"a\", mac = \"52:54:00:00:00:01\" } ]\n[iscsi]\nbase_iqn = \"iqn.2026-11.example.lab\"\n"
	if _, err := inventory.RemoveHost([]byte(inline), "a"); err == nil || !strings.Contains(err.Error(), "remove it by hand") {
		t.Errorf("removing an inline host: %v", err)
	}
}

// TestAddHostEdges: a file without hosts gets the stanza at its end; one
// with CRLF line ends gets CRLF; one without a final newline gets one
// before the blank line; the last host in the file is removed with the
// blank line before it.
func TestAddHostEdges(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"no host", "[iscsi]\nbase_iqn = \"x\"\n", "[iscsi]\nbase_iqn = \"x\"\n\n" + newHost.String()},
		{"empty file", "", newHost.String()},
		{"no final newline", "[[host]]\nname = \"a\"", "[[host]]\nname = \"a\"\n\n" + newHost.String()},
		{"crlf", "[[host]]\r\nname = \"a\"\r\n\r\n# t\r\n[[target]]\r\n", "[[host]]\r\nname = \"a\"\r\n\r\n" + strings.ReplaceAll(newHost.String(), "\n", "\r\n") + "\r\n# t\r\n[[target]]\r\n"},
	} {
		if got := string(inventory.AddHost([]byte(tc.src), newHost)); got != tc.want {
			t.Errorf("%s: AddHost gave %q, want %q", tc.name, got, tc.want)
		}
	}
	src := "[[host]]\nname = \"a\"\n\n# b\n[[host]]\nname = \"b\"\n"
	if out, err := inventory.RemoveHost([]byte(src), "b"); err != nil || string(out) != "[[host]]\nname = \"a\"\n" {
		t.Errorf("removing the last host: %q, %v", out, err)
	}
}

// TestHostStanza: the stanza is TOML that reads back as written, values
// quoted as TOML wants them.
func TestHostStanza(t *testing.T) {
	want := "[[host]]\nname = \"new\"\nmac  = \"52:54:00:00:00:09\"\nip   = \"198.18.0.102\"\nboot = \"san\"\nroot = { image = \"roots/new.img\", size = \"1GiB\" }\n"
	if got := newHost.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	odd := inventory.HostStanza{Name: "a\"b\\c\x01", Serial: "9ffefdef"}
	var doc struct {
		Host []struct{ Name, Serial string }
	}
	if _, err := toml.Decode(odd.String(), &doc); err != nil || len(doc.Host) != 1 || doc.Host[0].Name != odd.Name || doc.Host[0].Serial != "9ffefdef" {
		t.Errorf("%q read back as %+v, %v", odd.String(), doc, err)
	}
}

// TestSuggest: the stanzas suggested for several machines pass check
// together: names that no host has and that differ (host- and the MAC's
// last three bytes, then -2), fixed addresses free outside the pool and
// different, a root from the golden image named.
func TestSuggest(t *testing.T) {
	inv, ps := inventory.Parse("netsan.toml", []byte(handWritten))
	if inv == nil {
		t.Fatal(ps)
	}
	macs := []net.HardwareAddr{{2, 0, 0, 0xab, 0xcd, 0xef}, {4, 0, 0, 0xab, 0xcd, 0xef}, {2, 0, 0, 0, 0, 1}}
	got := inv.Suggest(macs, "base")
	src := handWritten
	for _, s := range got {
		src = string(inventory.AddHost([]byte(src), s))
	}
	want := []string{
		"[[host]]\nname = \"host-abcdef\"\nmac  = \"02:00:00:ab:cd:ef\"\nip   = \"198.18.0.102\"\nboot = \"san\"\nroot = { image = \"roots/host-abcdef.img\", from = \"base\" }\n",
		"[[host]]\nname = \"host-abcdef-2\"\nmac  = \"04:00:00:ab:cd:ef\"\nip   = \"198.18.0.103\"\nboot = \"san\"\nroot = { image = \"roots/host-abcdef-2.img\", from = \"base\" }\n",
		"[[host]]\nname = \"host-000001\"\nmac  = \"02:00:00:00:00:01\"\nip   = \"198.18.0.104\"\nboot = \"san\"\nroot = { image = \"roots/host-000001.img\", from = \"base\" }\n",
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("stanza %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
	if next, ps := inventory.Parse("netsan.toml", []byte(src)); next == nil || len(next.Hosts) != 5 || len(ps) != 0 {
		t.Errorf("the inventory with every stanza suggested: %v", ps)
	}
	if got := inv.Suggest(macs[:1], ""); got[0].Root != nil || got[0].Boot != "menu" {
		t.Errorf("without a golden image: %+v", got[0])
	}
}

// TestNewRoot: a new host's root is a file under data_dir/roots, or, from
// an RBD golden image, an RBD image in that image's pool; a size alone is
// an empty root; neither is no root.
func TestNewRoot(t *testing.T) {
	inv, ps := inventory.Parse("netsan.toml", []byte(handWritten+"[ceph]\n[[image]]\nname = \"cephbase\"\nrbd = \"golden/base\"\n"))
	if inv == nil {
		t.Fatal(ps)
	}
	for _, tc := range []struct {
		from, size string
		want       *inventory.RootStanza
	}{
		{"base", "", &inventory.RootStanza{Image: "roots/n.img", From: "base"}},
		{"cephbase", "32GiB", &inventory.RootStanza{RBD: "golden/n", From: "cephbase", Size: "32GiB"}},
		{"", "1GiB", &inventory.RootStanza{Image: "roots/n.img", Size: "1GiB"}},
		{"", "", nil},
	} {
		got := inv.NewRoot("n", tc.from, tc.size)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("NewRoot(n, %q, %q) = %+v, want %+v", tc.from, tc.size, got, tc.want)
		}
	}
}
