package images

import (
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/netsan/netsan/inventory"
)

// gauges scrapes reg and returns metric → "kind/host" → value.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range s.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			m[l["kind"]+"/"+l["image"]+"/"+l["host"]] = s.GetGauge().GetValue()
		}
		out[mf.GetName()] = m
	}
	return out
}

func TestCollector(t *testing.T) {
	inv := provisioned(t, 2, "128MiB", 8)
	if err := os.Remove(inv.Hosts[1].Root.Image); err != nil { // missing: left out
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(func() *inventory.Inventory { return inv }))

	g := gauges(t, reg)
	if got := g["netsan_image_size_bytes"]["root/golden/node00"]; got != float64(128*mib) {
		t.Errorf("root size %v, want %d", got, 128*mib)
	}
	if got := g["netsan_image_size_bytes"]["golden/golden/"]; got != float64(64*mib) {
		t.Errorf("golden size %v, want %d", got, 64*mib)
	}
	before := g["netsan_image_allocated_bytes"]["root/golden/node00"]
	if before < float64(8*mib) || before > float64(9*mib) {
		t.Errorf("root allocated %v, want 8 MiB", before)
	}
	if _, ok := g["netsan_image_size_bytes"]["root/golden/node01"]; ok {
		t.Error("a missing root was exported")
	}

	// What UNMAP does to a sparse image: punch a hole. The space shows as freed.
	f, err := os.OpenFile(inv.Hosts[0].Root.Image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 64*mib); err != nil {
		t.Skipf("file system cannot punch holes: %v", err)
	}
	after := gauges(t, reg)["netsan_image_allocated_bytes"]["root/golden/node00"]
	if after >= before || after > float64(mib) {
		t.Errorf("allocated after punching out the data: %v (before %v)", after, before)
	}
}
