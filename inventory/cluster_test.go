package inventory

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// clusterBase is two gateways' inventory: everything they serve is in Ceph.
const clusterBase = `
[server]
address = "198.18.0.1"

[dhcp]
subnet = "198.18.0.0/24"
range  = ["198.18.0.100", "198.18.0.199"]

[iscsi]
base_iqn = "iqn.2026-11.example.lab"

[ceph]
pool = "rbd"

[[image]]
name = "deb"
rbd  = "debian12"

[[host]]
name = "node1"
mac  = "52:54:00:00:00:01"
root = { rbd = "node1", from = "deb" }
`

func TestClusterInventory(t *testing.T) {
	inv, ps := Parse("netsan.toml", []byte(clusterBase+"\n[cluster]\ninterface = \"eth0\"\n"))
	if inv == nil {
		t.Fatalf("rejected: %v", ps)
	}
	if c := inv.Cluster; c == nil || c.Interface != "eth0" || c.Lease.Duration != 5*time.Second {
		t.Errorf("[cluster] = %+v, want interface eth0 and the 5s default lease", c)
	}
	if got, want := inv.FloatingAddress(), netip.MustParsePrefix("198.18.0.1/24"); got != want {
		t.Errorf("FloatingAddress = %s, want %s (dhcp.subnet's length)", got, want)
	}
	if !inv.UsesCeph() {
		t.Error("an inventory with [cluster] does not use Ceph")
	}
	inv, ps = Parse("netsan.toml", []byte(strings.Replace(clusterBase, "subnet = \"198.18.0.0/24\"\nrange  = [\"198.18.0.100\", \"198.18.0.199\"]", `subnet = "198.18.1.0/24"`, 1)+"\n[cluster]\ninterface = \"eth0\"\nlease = \"9s\"\n"))
	if inv == nil {
		t.Fatalf("rejected: %v", ps)
	}
	if got := inv.FloatingAddress(); got != netip.MustParsePrefix("198.18.0.1/32") {
		t.Errorf("FloatingAddress outside dhcp.subnet = %s, want /32", got)
	}
	if got := inv.Cluster.Lease.Duration; got != 9*time.Second {
		t.Errorf("lease = %s, want 9s", got)
	}
}

func TestBadClusterInventories(t *testing.T) {
	const cl = "[cluster]\ninterface = \"eth0\"\n"
	noCeph := strings.Replace(strings.Replace(clusterBase, "[ceph]\npool = \"rbd\"\n", "", 1), "rbd  = \"debian12\"", "path = \"g.img\"", 1)
	noCeph = strings.Replace(noCeph, `root = { rbd = "node1", from = "deb" }`, `root = { image = "node1.img", from = "deb" }`, 1)
	for _, tc := range []struct {
		name, src, msg string
		at             string // the problem is on the first line holding this
	}{
		{"no ceph", noCeph + cl, "[cluster] needs [ceph]", "[cluster]"},
		{"no interface", clusterBase + "[cluster]\nlease = \"5s\"\n", "cluster.interface is required", "[cluster]"},
		{"bad lease", clusterBase + cl + "lease = \"soon\"\n", `cluster.lease "soon" is not a duration`, "lease ="},
		{"short lease", clusterBase + cl + "lease = \"1s\"\n", "want between 2s and 1m0s", "lease ="},
		{"file root", clusterBase + cl + "[[host]]\nname = \"n2\"\nmac = \"52:54:00:00:00:02\"\nroot = { image = \"n2.img\" }\n", "root must be an rbd image in a [cluster]", "root = { image"},
		{"device lun", clusterBase + cl + "[[target]]\nname = \"d\"\nluns = [ { lun = 0, device = \"/dev/sdb\" } ]\n", "lun must be an rbd image in a [cluster]", "luns ="},
		{"file golden", clusterBase + cl + "[[image]]\nname = \"g\"\npath = \"g.img\"\n", `image "g" must be an rbd image`, `path = "g.img"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, "", tc.src, tc.msg, tc.at)
		})
	}
}
