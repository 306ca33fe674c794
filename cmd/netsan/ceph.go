package main

import (
	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/inventory"
)

// loadInventory is inventory.Load plus what only this binary knows: whether
// it was built with Ceph support. An inventory that asks for Ceph from a
// netsan without it is invalid here, at the place it first asks, so check,
// serve and a reload all refuse it the same way.
func loadInventory(path string) (*inventory.Inventory, inventory.Problems, error) {
	inv, ps, err := inventory.Load(path)
	if err != nil || ceph.Built || !inv.UsesCeph() {
		return inv, ps, err
	}
	p := *inv.CephUse()
	p.Message += ": " + ceph.ErrNotBuilt.Error()
	ps = append(ps, p)
	return nil, ps, &inventory.InvalidError{Problems: ps}
}
