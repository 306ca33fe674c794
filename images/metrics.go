package images

import (
	"errors"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsan/netsan/inventory"
)

// Collector exports the size and allocated bytes of every golden image and
// host root image for /metrics, read at each scrape from the file system
// or, for RBD images, from the cluster: UNMAP from initiators punches holes
// (or removes objects), and the allocated figure falls.
type Collector struct {
	// Inventory returns the inventory being served (it changes on reload).
	Inventory func() *inventory.Inventory
	// Cluster holds the inventory's RBD images; nil leaves them out.
	Cluster Cluster

	size, allocated, shared *prometheus.Desc
}

// NewCollector returns a Collector over the inventory inv returns.
func NewCollector(inv func() *inventory.Inventory) *Collector {
	labels := []string{"image", "kind", "host"}
	return &Collector{
		Inventory: inv,
		size: prometheus.NewDesc("netsan_image_size_bytes",
			"Apparent (provisioned) size of a golden image (kind=golden) or host root image (kind=root).", labels, nil),
		allocated: prometheus.NewDesc("netsan_image_allocated_bytes",
			"Bytes allocated to the image: by the file system to a file (st_blocks; shared extents counted in full), "+
				"or the objects an RBD image holds itself, as rbd du counts them (a clone's unwritten parts are its parent's).", labels, nil),
		shared: prometheus.NewDesc("netsan_image_shared_bytes",
			"Bytes of the image's extents shared with other files (reflink clones and their golden image).", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.allocated
	ch <- c.shared
}

// Collect implements prometheus.Collector. Missing images are left out.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	inv := c.Inventory()
	if inv == nil {
		return
	}
	send := func(size, allocated int64, labels []string) {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(size), labels...)
		ch <- prometheus.MustNewConstMetric(c.allocated, prometheus.GaugeValue, float64(allocated), labels...)
	}
	file := func(path string, labels ...string) {
		size, alloc, err := Usage(path)
		if err != nil {
			return
		}
		send(size, alloc, labels)
		if sh, err := Shared(path); err == nil {
			ch <- prometheus.MustNewConstMetric(c.shared, prometheus.GaugeValue, float64(sh), labels...)
		}
	}
	cluster := c.Cluster
	rbd := func(name string, labels ...string) {
		if cluster == nil {
			return
		}
		info, err := StatRBD(cluster, name)
		if err != nil {
			// Other than a missing image, the cluster is in trouble: the
			// other RBD images wait for the next scrape, so that a cluster
			// that does not answer costs a scrape one timeout, not one per
			// image.
			if !errors.Is(err, os.ErrNotExist) {
				cluster = nil
			}
			return
		}
		send(info.Size, info.Used, labels)
	}
	for _, img := range inv.Images {
		if img.RBD != "" {
			rbd(img.RBD, img.Name, "golden", "")
		} else {
			file(img.Path, img.Name, "golden", "")
		}
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		switch {
		case h.Root == nil || h.Root.Device != "":
		case h.Root.RBD != "":
			rbd(h.Root.RBD, h.Root.From, "root", h.Name)
		default:
			file(h.Root.Image, h.Root.From, "root", h.Name)
		}
	}
}
