package main

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/iscsi/scsi"
)

// loadInventory is inventory.Load plus what only this binary knows: whether
// it was built with Ceph support. An inventory that asks for Ceph from a
// netsan without it is invalid here, at the place it first asks, so check,
// serve and a reload all refuse it the same way.
func loadInventory(path string) (*inventory.Inventory, inventory.Problems, error) {
	inv, ps, err := inventory.Load(path)
	if err != nil {
		return inv, ps, err
	}
	return cephBuilt(inv, ps)
}

// parseInventory is loadInventory of data, the content path is about to
// have (an edit, checked before it is written).
func parseInventory(path string, data []byte) (*inventory.Inventory, inventory.Problems, error) {
	inv, ps := inventory.Parse(path, data)
	if inv == nil {
		return nil, ps, &inventory.InvalidError{Problems: ps}
	}
	return cephBuilt(inv, ps)
}

// cephBuilt refuses inv when it asks for Ceph and this netsan has none.
func cephBuilt(inv *inventory.Inventory, ps inventory.Problems) (*inventory.Inventory, inventory.Problems, error) {
	if ceph.Built || !inv.UsesCeph() {
		return inv, ps, nil
	}
	p := *inv.CephUse()
	p.Message += ": " + ceph.ErrNotBuilt.Error()
	ps = append(ps, p)
	return nil, ps, &inventory.InvalidError{Problems: ps}
}

// cephTimeout is how long serve, check and the image commands wait for the
// cluster's monitors before calling the cluster unreachable.
const cephTimeout = 10 * time.Second

// connectCeph connects to the inventory's [ceph] cluster, or returns nil
// when it has none.
func connectCeph(inv *inventory.Inventory) (*ceph.Cluster, error) {
	if inv.Ceph == nil {
		return nil, nil
	}
	c, err := ceph.Connect(ceph.Config{Conf: inv.Ceph.Conf, ID: inv.Ceph.ID, Pool: inv.Ceph.Pool}, cephTimeout)
	var errno interface{ ErrorCode() int } // librados' error
	switch {
	case errors.As(err, &errno) && errno.ErrorCode() == -int(syscall.ETIMEDOUT):
		return nil, fmt.Errorf("[ceph]: the cluster did not answer within %s: %w", cephTimeout, err)
	case err != nil:
		return nil, fmt.Errorf("[ceph]: %w", err)
	}
	return c, nil
}

// rbdCluster is c as the images package takes it: no cluster at all for a
// nil c (not an interface holding a nil pointer).
func rbdCluster(c *ceph.Cluster) images.Cluster {
	if c == nil {
		return nil
	}
	return c
}

// closeCeph closes a connection connectCeph made, if any.
func closeCeph(c *ceph.Cluster) {
	if c != nil {
		c.Close()
	}
}

// sharedState is where the gateways of a [cluster] keep what the next
// leader continues, in the [ceph] pool: the DHCP leases (netsan.leases)
// and the persistent reservations (netsan.pr.<target IQN>-lun<N>). Without
// [cluster] both are nil: the files in data_dir, as on a single box.
func sharedState(inv *inventory.Inventory, c *ceph.Cluster) (dhcpd.LeaseStore, scsi.ReservationStore, error) {
	if inv.Cluster == nil {
		return nil, nil, nil
	}
	if c == nil {
		return nil, nil, errors.New("[cluster]: no Ceph cluster connected ([ceph])")
	}
	recs, err := c.Records("leases")
	if err != nil {
		return nil, nil, fmt.Errorf("[cluster]: DHCP leases: %w", err)
	}
	prs, err := c.ReservationStore()
	if err != nil {
		return nil, nil, fmt.Errorf("[cluster]: persistent reservations: %w", err)
	}
	return dhcpd.LeaseRecords(recs), prs, nil
}
