package inventory

import (
	"net/netip"
	"time"
)

// Cluster is the [cluster] section: two or more gateways serve this
// inventory, one at a time, on a floating server.address. Leadership,
// roots and state are shared through [ceph], so it needs one.
type Cluster struct {
	// Interface is where the leader adds server.address.
	Interface string `toml:"interface"`
	// Lease is how long leadership lasts without a renewal: the longest
	// a dead leader holds the address before a standby may take it.
	Lease Duration `toml:"lease"`
}

// Leases shorter than minLease leave a loaded cluster too little time to
// renew; longer than maxLease is a failover slower than an initiator waits.
const (
	defaultLease = 5 * time.Second
	minLease     = 2 * time.Second
	maxLease     = time.Minute
)

func (v *validator) clusterDefaults() {
	if c := v.inv.Cluster; c != nil && c.Lease.raw == "" {
		c.Lease.Duration = defaultLease
	}
}

func (v *validator) cluster() {
	c := v.inv.Cluster
	if c == nil {
		return
	}
	if v.inv.Ceph == nil {
		v.errorf("cluster", "[cluster] needs [ceph]: the gateways share leadership, roots and state through the Ceph cluster")
	}
	if c.Interface == "" {
		v.errorf("cluster", "cluster.interface is required (where the leader adds the floating server.address)")
	}
	switch {
	case c.Lease.err != nil:
		v.errorf("cluster.lease", "cluster.lease %q is not a duration (want e.g. 5s)", c.Lease.raw)
	case c.Lease.Duration < minLease || c.Lease.Duration > maxLease:
		v.errorf("cluster.lease", "cluster.lease %s: want between %s and %s", c.Lease.Duration, minLease, maxLease)
	}
}

// shared refuses, in a [cluster], a backing that lives on one gateway's own
// disks: after a failover the new leader would serve another copy.
func (v *validator) shared(path, what, rbd string) {
	if v.inv.Cluster != nil && rbd == "" {
		v.errorf(path, "%s must be an rbd image in a [cluster]: a file or device is on one gateway only", what)
	}
}

// FloatingAddress is server.address with the prefix length the leader adds
// it with: dhcp.subnet's when the subnet holds it, else a host route (/32).
func (inv *Inventory) FloatingAddress() netip.Prefix {
	a := inv.Server.Address.Addr
	if s := inv.DHCP.Subnet; s.IsValid() && s.Contains(a) {
		return netip.PrefixFrom(a, s.Bits())
	}
	return netip.PrefixFrom(a, a.BitLen())
}
