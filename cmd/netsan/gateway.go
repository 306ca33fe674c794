package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/inventory"
)

// newElector makes this gateway's elector for an inventory with [cluster]:
// it leads through c, the Ceph connection serve made, under the name
// gateway (default: the host name).
func newElector(inv *inventory.Inventory, c *ceph.Cluster, gateway string, log *zap.Logger) (*cluster.Elector, error) {
	if gateway == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--gateway not given and no host name: %w", err)
		}
		gateway = h
	}
	digest, err := inventoryDigest(inv.File)
	if err != nil {
		return nil, err
	}
	return cluster.New(cluster.Config{
		Gateway:   gateway,
		Interface: inv.Cluster.Interface,
		Address:   inv.FloatingAddress(),
		Lease:     inv.Cluster.Lease.Duration,
		Inventory: digest,
	}, c, log.Named("cluster")), nil
}

// inventoryDigest names an inventory file's content, so that gateways can
// tell that they serve the same one.
func inventoryDigest(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// clusterStatus is the elector's view, which /status shows.
func clusterStatus(e *cluster.Elector) func() *cluster.Status {
	return func() *cluster.Status {
		s := e.Status()
		return &s
	}
}

// gatewayProblems is what this machine lacks to be a gateway of the
// inventory's [cluster]: the interface the floating address goes on, and
// the address not configured there for good (the leader adds it itself,
// for a lifetime it keeps renewing; a permanent one that the network
// configuration adds on every gateway would answer from all of them).
func gatewayProblems(inv *inventory.Inventory) inventory.Problems {
	if inv.Cluster == nil {
		return nil
	}
	link, err := netlink.LinkByName(inv.Cluster.Interface)
	if err != nil {
		return inventory.Problems{inv.Problemf("cluster.interface", "cluster.interface %s: no such interface on this machine", inv.Cluster.Interface)}
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return inventory.Problems{inv.Problemf("cluster.interface", "cluster.interface %s: %v", inv.Cluster.Interface, err)}
	}
	for _, a := range addrs {
		if a.IP.Equal(inv.Server.Address.AsSlice()) && a.ValidLft == permanentLft {
			p := inv.Problemf("server.address", "server.address %s is configured on %s for good: the leading gateway adds it itself; take it out of this machine's network configuration", inv.Server.Address, inv.Cluster.Interface)
			p.Warning = true
			return inventory.Problems{p}
		}
	}
	return nil
}

// permanentLft is the lifetime the kernel reports for an address added
// without one (INFINITY_LIFE_TIME).
const permanentLft = 0xffffffff
