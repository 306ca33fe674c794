package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory"
)

// The inventory the lab generates must be one netsan accepts, with the
// hosts, CHAP and data targets the tests rely on.
func TestInventoryTOMLLoads(t *testing.T) {
	dir := t.TempDir()
	inv := Inventory{
		DataDir: dir,
		BaseIQN: "iqn.2026-11.example.lab",
		Golden:  "golden/golden.img",
		Hosts: []NetsanHost{
			{Host: Host{Name: "node1", MAC: "52:54:00:4e:53:01", IP: "198.18.0.11", Image: "roots/node1.img"}},
			{Host: Host{Name: "node2", MAC: "52:54:00:4e:53:02", IP: "198.18.0.12", Initiator: "iqn.2026-11.example.lab:other"},
				Boot: "local", CHAP: &CHAP{User: "node2", Secret: "node2-secret-0001"}},
		},
		Targets: []DataTarget{{Name: "data", Image: "data/d.img", Size: "64MiB", Initiator: "iqn.2026-11.example.lab:node2",
			CHAP: &CHAP{User: "u", Secret: "secret-secret-1", MutualUser: "m", MutualSecret: "mutual-secret-1"}}},
		DiscoveryCHAP: &CHAP{User: "disc", Secret: "discovery-secret"},
	}
	path := filepath.Join(dir, "netsan.toml")
	if err := os.WriteFile(path, []byte(inv.TOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, problems, err := inventory.Load(path)
	for _, p := range problems {
		t.Logf("%s", p)
	}
	if err != nil {
		t.Fatalf("inventory.Load: %v\n%s", err, inv.TOML())
	}
	if len(got.Hosts) != 2 || got.Hosts[0].Boot != "san" || got.Hosts[1].Boot != "local" {
		t.Errorf("hosts = %+v", got.Hosts)
	}
	if h := got.HostByName("node1"); h == nil || h.Root == nil || h.Root.From != "golden" {
		t.Errorf("node1 root = %+v, want one cloned from golden", h)
	}
	if h := got.HostByName("node2"); h == nil || h.CHAP == nil || h.CHAP.Secret != "node2-secret-0001" {
		t.Errorf("node2 chap = %+v", h)
	}
	if len(got.Targets) != 1 || len(got.Targets[0].ACL) != 1 || !got.Targets[0].ACL[0].CHAP.Mutual() {
		t.Errorf("targets = %+v, want one with a mutual-CHAP ACL", got.Targets)
	}
	if got.ISCSI.DiscoveryCHAP == nil || got.ISCSI.DiscoveryCHAP.User != "disc" {
		t.Errorf("discovery_chap = %+v", got.ISCSI.DiscoveryCHAP)
	}
}

// With Ceph, the golden image, the roots netsan clones from it and the data
// LUNs are RBD images.
func TestInventoryTOMLCeph(t *testing.T) {
	inv := Inventory{DataDir: t.TempDir(), BaseIQN: "iqn.2026-11.example.lab", Ceph: "/etc/ceph/ceph.conf", GoldenRBD: "rbd/golden",
		Hosts:   []NetsanHost{{Host: Host{Name: "node1", MAC: "52:54:00:4e:53:01", IP: "198.18.0.11"}, RBD: "rbd/node1"}},
		Targets: []DataTarget{{Name: "data", RBD: "rbd/d", Size: "64MiB", Initiator: "iqn.2026-11.example.lab:store1"}},
	}
	got, ps := inventory.Parse("lab.toml", []byte(inv.TOML()))
	if got == nil {
		t.Fatalf("refused: %v\n%s", ps, inv.TOML())
	}
	if g := got.ImageByName("golden"); g == nil || g.RBD != "rbd/golden" {
		t.Errorf("golden = %+v", g)
	}
	if h := got.HostByName("node1"); h.Root == nil || h.Root.Backing() != "rbd:rbd/node1" || h.Root.From != "golden" {
		t.Errorf("node1 root = %+v, want rbd/node1 cloned from golden", h.Root)
	}
	if l := got.Targets[0].LUNs[0]; l.Backing() != "rbd:rbd/d" || l.Size.Bytes != 64<<20 {
		t.Errorf("data LUN = %+v", l)
	}
}

// A gateways' inventory: [cluster] on the gateways' eth0, where DHCP
// serves too, every backing in Ceph, and ServerIP the floating address.
func TestInventoryTOMLCluster(t *testing.T) {
	inv := Inventory{DataDir: t.TempDir(), BaseIQN: "iqn.2026-11.example.lab", Ceph: "/etc/ceph/ceph.conf", GoldenRBD: "rbd/golden",
		Hosts:        []NetsanHost{{Host: Host{Name: "node1", MAC: "52:54:00:4e:53:01", IP: "198.18.0.11"}, RBD: "rbd/node1"}},
		Targets:      []DataTarget{{Name: "probe", RBD: "rbd/probe", Size: "16MiB", Initiator: "iqn.2026-11.example.lab:probe"}},
		ClusterLease: "3s",
	}
	got, ps := inventory.Parse("lab.toml", []byte(inv.TOML()))
	if got == nil {
		t.Fatalf("refused: %v\n%s", ps, inv.TOML())
	}
	if c := got.Cluster; c == nil || c.Interface != GatewayInterface || c.Lease.Duration != 3*time.Second {
		t.Errorf("cluster = %+v, want %s with a 3s lease", c, GatewayInterface)
	}
	if got.DHCP.Interface != GatewayInterface {
		t.Errorf("dhcp.interface = %q, want %q", got.DHCP.Interface, GatewayInterface)
	}
	if f := got.FloatingAddress().String(); f != Prefix {
		t.Errorf("floating address %s, want %s", f, Prefix)
	}
}
