package images

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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
	for _, img := range NewStater(c.Cluster).List(inv) {
		labels := []string{img.Name, img.Kind, img.Host}
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(img.Size), labels...)
		ch <- prometheus.MustNewConstMetric(c.allocated, prometheus.GaugeValue, float64(img.Allocated), labels...)
		if img.Shared >= 0 {
			ch <- prometheus.MustNewConstMetric(c.shared, prometheus.GaugeValue, float64(img.Shared), labels...)
		}
	}
}

// Image is a golden image or a host's root image with its sizes, as
// /metrics and /status show them.
type Image struct {
	Name    string // the golden image; for a root, the one it was cloned from ("" if none)
	Kind    string // "golden" or "root"
	Host    string // a root's host
	Backing string // the file, or rbd:pool/image
	// Size is the provisioned size; Allocated what the file system gives
	// the file (st_blocks; shared extents counted in full) or the objects
	// an RBD image holds itself, as rbd du counts them (a clone's
	// unwritten parts are its parent's).
	Size, Allocated int64
	// Shared is the bytes of a file's extents shared with other files
	// (reflink clones and their golden image); -1 when not known (RBD, or
	// a file system without FIEMAP).
	Shared int64
}

// Stater reads the sizes of images and LUN backings, from the file system
// or the cluster. A cluster that fails other than for a missing image is
// not asked again by the same Stater: one that does not answer costs one
// timeout, not one per image. Make one per look (a scrape, a page).
type Stater struct {
	cluster Cluster
}

// NewStater returns a Stater; cl holds the RBD images, nil leaves them out.
func NewStater(cl Cluster) *Stater { return &Stater{cluster: cl} }

// Stat reports the provisioned size of a backing (a file, a device, or
// rbd:pool/image) and the bytes allocated to it; a device counts as
// allocated in full.
func (s *Stater) Stat(backing string) (size, allocated int64, err error) {
	if rbd, ok := strings.CutPrefix(backing, "rbd:"); ok {
		if s.cluster == nil {
			return 0, 0, fmt.Errorf("%s: no cluster", backing)
		}
		info, err := StatRBD(s.cluster, rbd)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			s.cluster = nil
		}
		return info.Size, info.Used, err
	}
	if strings.HasPrefix(backing, "/dev/") {
		f, err := os.Open(backing)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		size, err := f.Seek(0, io.SeekEnd)
		return size, size, err
	}
	return Usage(backing)
}

// List is every golden image and host root image (not a device) of inv
// with its sizes; those missing or that cannot be read are left out.
func (s *Stater) List(inv *inventory.Inventory) []Image {
	var out []Image
	add := func(img Image) {
		var err error
		if img.Size, img.Allocated, err = s.Stat(img.Backing); err != nil {
			return
		}
		img.Shared = -1
		if !strings.HasPrefix(img.Backing, "rbd:") {
			if sh, err := Shared(img.Backing); err == nil {
				img.Shared = sh
			}
		}
		out = append(out, img)
	}
	for _, img := range inv.Images {
		b := img.Path
		if img.RBD != "" {
			b = "rbd:" + img.RBD
		}
		add(Image{Name: img.Name, Kind: "golden", Backing: b})
	}
	for i := range inv.Hosts {
		if h := &inv.Hosts[i]; h.Root != nil && h.Root.Device == "" {
			add(Image{Name: h.Root.From, Kind: "root", Host: h.Name, Backing: h.Root.Backing()})
		}
	}
	return out
}
