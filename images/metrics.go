package images

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsan/netsan/inventory"
)

// Collector exports the size and allocated bytes of every golden image and
// host root image for /metrics, read from the file system at each scrape:
// UNMAP from initiators punches holes, and the allocated figure falls.
type Collector struct {
	// Inventory returns the inventory being served (it changes on reload).
	Inventory func() *inventory.Inventory

	size, allocated, shared *prometheus.Desc
}

// NewCollector returns a Collector over the inventory inv returns.
func NewCollector(inv func() *inventory.Inventory) *Collector {
	labels := []string{"image", "kind", "host"}
	return &Collector{
		Inventory: inv,
		size: prometheus.NewDesc("netsan_image_size_bytes",
			"Apparent size of a golden image (kind=golden) or host root image (kind=root).", labels, nil),
		allocated: prometheus.NewDesc("netsan_image_allocated_bytes",
			"Bytes the file system has allocated to the image (st_blocks; shared extents counted in full).", labels, nil),
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
	emit := func(path string, labels ...string) {
		size, alloc, err := Usage(path)
		if err != nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(size), labels...)
		ch <- prometheus.MustNewConstMetric(c.allocated, prometheus.GaugeValue, float64(alloc), labels...)
		if sh, err := Shared(path); err == nil {
			ch <- prometheus.MustNewConstMetric(c.shared, prometheus.GaugeValue, float64(sh), labels...)
		}
	}
	for _, img := range inv.Images {
		emit(img.Path, img.Name, "golden", "")
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Root != nil && h.Root.Device == "" {
			emit(h.Root.Image, h.Root.From, "root", h.Name)
		}
	}
}
