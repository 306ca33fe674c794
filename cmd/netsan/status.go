package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/httpd"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/iscsi"
)

// targetStatus is the iSCSI targets of an inventory as /status shows them:
// iscsiConfig's targets, each LUN with the size its storage reports, and
// the sessions and bytes the target counts for each.
func targetStatus(target *iscsi.Server, cluster *ceph.Cluster) func(*inventory.Inventory) []httpd.Target {
	return func(inv *inventory.Inventory) []httpd.Target {
		roots := map[string]string{} // target IQN → the host whose root it is
		for i := range inv.Hosts {
			if h := &inv.Hosts[i]; h.Root != nil {
				roots[inv.TargetIQN(h)] = h.Name
			}
		}
		traffic := targetTraffic(target)
		st := images.NewStater(rbdCluster(cluster))
		cfg := iscsiConfig(inv, cluster)
		out := make([]httpd.Target, 0, len(cfg.Targets))
		for _, t := range cfg.Targets {
			ht := traffic[t.IQN]
			ht.IQN, ht.Host, ht.LUNs = t.IQN, roots[t.IQN], make([]httpd.LUN, 0, len(t.LUNs))
			for _, l := range t.LUNs {
				size, alloc, err := st.Stat(l.Path)
				if err != nil {
					size, alloc = -1, -1
				}
				ht.LUNs = append(ht.LUNs, httpd.LUN{Number: l.Number, Backing: l.Path, ReadOnly: l.ReadOnly, Size: size, Allocated: alloc})
			}
			out = append(out, ht)
		}
		return out
	}
}

// targetTraffic sums the target's counters by target IQN: the sessions
// open now and the bytes moved since it started. The counters outlive the
// sessions that fed them, and the target publishes them only as its
// metrics, so they are read back from one gathering.
func targetTraffic(target prometheus.Collector) map[string]httpd.Target {
	reg := prometheus.NewRegistry()
	out := map[string]httpd.Target{}
	if reg.Register(target) != nil {
		return out
	}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var iqn string
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" {
					iqn = l.GetValue()
				}
			}
			t := out[iqn]
			switch mf.GetName() {
			case "netsan_iscsi_sessions":
				t.Sessions += int(m.GetGauge().GetValue())
			case "netsan_iscsi_read_bytes_total":
				t.ReadBytes += uint64(m.GetCounter().GetValue())
			case "netsan_iscsi_write_bytes_total":
				t.WrittenBytes += uint64(m.GetCounter().GetValue())
			default:
				continue
			}
			out[iqn] = t
		}
	}
	return out
}

// imageStatus is the golden images and host roots of an inventory, with
// their sizes, as /status shows them.
func imageStatus(cluster *ceph.Cluster) func(*inventory.Inventory) []httpd.Image {
	return func(inv *inventory.Inventory) []httpd.Image {
		list := images.NewStater(rbdCluster(cluster)).List(inv)
		out := make([]httpd.Image, len(list))
		for i, img := range list {
			out[i] = httpd.Image{Name: img.Name, Kind: img.Kind, Host: img.Host, Backing: img.Backing, Size: img.Size, Allocated: img.Allocated}
		}
		return out
	}
}
