package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/httpd"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/iscsi"
	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/iscsi/scsi"
	"github.com/netsan/netsan/neigh"
	"github.com/netsan/netsan/tftpd"
	"github.com/netsan/netsan/timeline"
)

// newRegistry is the one Prometheus registry every service's metrics go
// into and /metrics shows.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// buildServices makes one service per section the inventory enables.
// /metrics shows base (the process's own metrics) and the services'
// metrics, which live in a registry of their own so that the next term's
// services can register theirs. cluster, nil without [ceph], opens the LUNs
// that are RBD images; gateways, nil on a single box, is what /status shows
// of a [cluster]; events, kept from one term to the next, is where each
// service records the steps of the boots it serves.
func buildServices(inv *inventory.Inventory, cluster *ceph.Cluster, log *zap.Logger, base prometheus.Gatherer, gateways func() *cluster.Status, events *timeline.Recorder) ([]namedService, error) {
	reg := prometheus.NewRegistry()
	var (
		out     []namedService
		status  = httpd.StatusSource{Cluster: gateways, Images: imageStatus(cluster)}
		control httpd.ControlSource
		macs    macFinder
	)
	add := func(name string, svc service, c prometheus.Collector) error {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("%s metrics: %w", name, err)
		}
		out = append(out, namedService{name, svc})
		return nil
	}
	leaseStore, prs, err := sharedState(inv, cluster)
	if err != nil {
		return nil, err
	}
	if inv.DHCP.On() {
		d, err := dhcpd.New(inv, log, dhcpd.WithLeaseStore(leaseStore), dhcpd.WithEvents(events))
		if err != nil {
			return nil, err
		}
		status.Leases = func() []httpd.Lease { return leases(d.Leases()) }
		status.Seen = seenMachines(d)
		macs.dhcp = d
		if err := add("dhcp", d, d); err != nil {
			return nil, err
		}
		// Beside DHCP, and like it only on a leading gateway: the answer to
		// iPXE's IPv6 router solicitations. It idles while dhcp.ipv6_ra is
		// off, so a reload can turn it on.
		ra := dhcpd.NewRA(inv, log)
		if err := add("ipv6-ra", ra, ra); err != nil {
			return nil, err
		}
	}
	if inv.TFTP.On() {
		t, err := tftpd.New(inv, log)
		if err != nil {
			return nil, err
		}
		t.SetMACFinder(macs)
		t.Events = events
		if err := add("tftp", t, t); err != nil {
			return nil, err
		}
	}
	if inv.ISCSI.On() {
		cfg := iscsiConfig(inv, cluster)
		cfg.Reservations = prs
		if err := makeImageDirs(cfg); err != nil {
			return nil, err
		}
		i, err := iscsi.New(cfg, log)
		if err != nil {
			return nil, err
		}
		i.Events = events
		status.Sessions = func() []httpd.Session { return sessions(i.Sessions()) }
		status.Targets = targetStatus(i, cluster)
		control = httpd.ControlSource{LogoutTarget: i.LogoutTarget, ReopenTarget: i.ReopenTarget}
		if err := add("iscsi", iscsiService{i, cluster, prs}, i); err != nil {
			return nil, err
		}
	}
	if inv.HTTP.On() {
		h, err := httpd.New(inv, log)
		if err != nil {
			return nil, err
		}
		h.Gatherer, h.Status, h.Control, h.Events = prometheus.Gatherers{base, reg}, status, control, events
		h.SetMACFinder(macs)
		if err := add("http", h, h); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// macFinder tells tftpd and httpd which machine asks for a file with a
// secret: the kernel's neighbour table, where the client's ARP for us left
// its MAC; when netsan hands out the addresses, the address must also be
// leased or fixed in dhcpd. The table's MAC wins: dhcpd names a host for
// its fixed address even while another machine has set that address
// itself (the host is off). A client beyond a relay has no entry in the
// table, and dhcpd answers alone.
type macFinder struct{ dhcp *dhcpd.Server }

func (f macFinder) MACOf(ip, local netip.Addr) (net.HardwareAddr, error) {
	seen, nerr := neigh.Lookup(ip, local)
	if f.dhcp == nil {
		return seen, nerr
	}
	mac, err := f.dhcp.MACOf(ip)
	switch {
	case errors.Is(err, dhcpd.ErrNotAssigning):
		return seen, nerr
	case err != nil || nerr != nil:
		return mac, err
	}
	return seen, nil
}

// makeImageDirs creates the directories that missing images will be created
// in, so that a fresh data_dir needs no preparation.
func makeImageDirs(cfg iscsi.Config) error {
	dirs := []string{cfg.StateDir}
	for _, t := range cfg.Targets {
		for _, l := range t.LUNs {
			if _, rbd := ceph.ParseBacking(l.Path); l.Size > 0 && !rbd && !strings.HasPrefix(l.Path, "/dev/") {
				dirs = append(dirs, filepath.Dir(l.Path))
			}
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("iscsi: %w", err)
		}
	}
	return nil
}

// iscsiService gives the iSCSI target, which knows no inventory, the face
// of the other services.
type iscsiService struct {
	*iscsi.Server
	cluster      *ceph.Cluster
	reservations scsi.ReservationStore // the one chosen at start
}

func (s iscsiService) Reload(inv *inventory.Inventory) error {
	cfg := iscsiConfig(inv, s.cluster)
	cfg.Reservations = s.reservations
	return s.Server.Reload(cfg)
}

// leases lists the bound, unexpired leases: /status shows who has an address,
// not the declined or expired bookkeeping behind it.
func leases(ls []dhcpd.Lease) []httpd.Lease {
	now := time.Now()
	out := make([]httpd.Lease, 0, len(ls))
	for _, l := range ls {
		if l.State != dhcpd.StateBound || !l.Expires.After(now) {
			continue
		}
		out = append(out, httpd.Lease{MAC: l.MAC, IP: l.IP.String(), Host: l.Host, Expires: l.Expires})
	}
	return out
}

// sessions turns the target's sessions into the view /status shows (the
// one place iscsi.SessionInfo becomes httpd.Session); discovery sessions
// move no data and belong to no host, so they are left out.
func sessions(ss []iscsi.SessionInfo) []httpd.Session {
	out := make([]httpd.Session, 0, len(ss))
	for _, s := range ss {
		if s.Discovery {
			continue
		}
		out = append(out, httpd.Session{Initiator: s.Initiator, Target: s.Target, Remote: s.Remote, Since: s.Since,
			ReadBytes: s.ReadBytes, WrittenBytes: s.WrittenBytes})
	}
	return out
}

// iscsiConfig is the iSCSI target's view of the inventory: each host with a
// root gets target base_iqn:name with its root as LUN 0, admitting only that
// host's initiator (and its CHAP); each [[target]] keeps its LUNs and ACLs.
// A LUN's path is its backing: a file, a device, or "rbd:pool/image", which
// is opened through cluster.
func iscsiConfig(inv *inventory.Inventory, cluster *ceph.Cluster) iscsi.Config {
	cfg := iscsi.Config{
		Listen:        inv.ISCSI.Listen,
		DiscoveryCHAP: chap(inv.ISCSI.DiscoveryCHAP),
		MaxSessions:   inv.ISCSI.MaxSessions,
		StateDir:      filepath.Join(inv.Server.DataDir, "iscsi"),
		OpenStore:     openStore(cluster),
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Root == nil {
			continue
		}
		cfg.Targets = append(cfg.Targets, iscsi.Target{
			IQN:  inv.TargetIQN(h),
			LUNs: []iscsi.LUN{{Number: 0, Path: h.Root.Backing(), Size: h.Root.Size.Bytes}},
			ACL:  []iscsi.ACL{{Initiator: inv.InitiatorIQN(h), CHAP: chap(h.CHAP)}},
		})
	}
	for i := range inv.Targets {
		t := &inv.Targets[i]
		it := iscsi.Target{IQN: inv.DataTargetIQN(t)}
		for _, l := range t.LUNs {
			it.LUNs = append(it.LUNs, iscsi.LUN{Number: uint64(l.LUN), Path: l.Backing(), Size: l.Size.Bytes, ReadOnly: l.ReadOnly})
		}
		for _, a := range t.ACL {
			acl := iscsi.ACL{Initiator: a.Initiator, WriteProtect: a.WriteProtect, CHAP: chap(a.CHAP)}
			if a.Map != nil {
				acl.Map = make(map[uint64]uint64, len(a.Map))
				for k, tl := range a.Map {
					n, _ := strconv.ParseUint(k, 10, 64) // validated by inventory
					acl.Map[n] = uint64(tl)
				}
			}
			it.ACL = append(it.ACL, acl)
		}
		cfg.Targets = append(cfg.Targets, it)
	}
	return cfg
}

// openStore opens a LUN's backing: an RBD image through cluster (which
// serve made before anything, and Ensure then), else the file or device.
func openStore(cluster *ceph.Cluster) func(iscsi.LUN) (backstore.Store, error) {
	return func(l iscsi.LUN) (backstore.Store, error) {
		return ceph.OpenBacking(cluster, l.Path, l.Size, l.ReadOnly)
	}
}

func chap(c *inventory.CHAP) *iscsi.CHAP {
	if c == nil {
		return nil
	}
	return &iscsi.CHAP{User: c.User, Secret: c.Secret, MutualUser: c.MutualUser, MutualSecret: c.MutualSecret}
}
