package main

import (
	"strings"
	"testing"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
)

// TestGatewayProblems: check tells a gateway whose cluster.interface does
// not exist, and warns of the floating address configured there for good;
// the address as the leader adds it, with a lifetime, is no problem.
func TestGatewayProblems(t *testing.T) {
	lab := netsantest.NewLab(t, "gwck")
	ns := lab.Server
	lab.IP(ns, "link", "add", "gw0", "type", "veth", "peer", "name", "gw1")
	lab.IP(ns, "link", "set", "gw0", "up")
	parse := func(ifname string) *inventory.Inventory {
		src := "[server]\naddress = \"198.18.0.1\"\n[dhcp]\nsubnet = \"198.18.0.0/24\"\n[iscsi]\nbase_iqn = \"iqn.2026-11.example.lab\"\n" +
			"[ceph]\n[cluster]\ninterface = \"" + ifname + "\"\n"
		inv, ps := inventory.Parse("netsan.toml", []byte(src))
		if inv == nil {
			t.Fatal(ps)
		}
		return inv
	}
	problems := func(inv *inventory.Inventory) (ps inventory.Problems) {
		netsantest.InNetns(t, ns, func() { ps = gatewayProblems(inv) })
		return ps
	}
	if ps := problems(parse("nosuch0")); len(ps) != 1 || ps[0].Warning || !strings.Contains(ps[0].Message, "cluster.interface nosuch0: no such interface") || ps[0].Pos.Line != 9 {
		t.Errorf("a missing interface: %v", ps)
	}
	inv := parse("gw0")
	if ps := problems(inv); len(ps) != 0 {
		t.Errorf("a gateway without the address: %v", ps)
	}
	lab.IP(ns, "addr", "add", "198.18.0.1/24", "dev", "gw0", "valid_lft", "30", "preferred_lft", "30")
	if ps := problems(inv); len(ps) != 0 {
		t.Errorf("the address as a leader adds it (with a lifetime): %v", ps)
	}
	lab.IP(ns, "addr", "change", "198.18.0.1/24", "dev", "gw0", "valid_lft", "forever", "preferred_lft", "forever")
	if ps := problems(inv); len(ps) != 1 || !ps[0].Warning || !strings.Contains(ps[0].Message, "server.address 198.18.0.1 is configured on gw0 for good") || ps[0].Pos.Line != 2 {
		t.Errorf("the address configured for good: %v", ps)
	}
}
