package main

import (
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// TestMetricsDocumented: every netsan_ metric that serve's services, the
// images collector and a gateway's elector describe is in docs/metrics.md,
// and the guide names none that nothing exports.
func TestMetricsDocumented(t *testing.T) {
	// Made, not started: the ports are never bound.
	path := loopbackInventory(t, "[dhcp]\nlisten = \"127.0.0.1:6767\"\nsubnet = \"127.0.0.0/8\"\n[tftp]\nlisten = \"127.0.0.1:6969\"\n"+
		"[http]\nlisten = \"127.0.0.1:8080\"\n[iscsi]\nlisten = [\"127.0.0.1:3260\"]\nbase_iqn = \"iqn.2026-11.example.lab\"\n")
	inv, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	services, err := buildServices(inv, nil, zap.NewNop(), prometheus.NewRegistry(), nil, timeline.New(8, 8))
	if err != nil {
		t.Fatal(err)
	}
	collectors := []prometheus.Collector{
		images.NewCollector(func() *inventory.Inventory { return inv }),
		cluster.NewCollector(cluster.New(cluster.Config{Gateway: "gw1", Address: netip.MustParsePrefix("198.18.0.1/24"), Lease: 5 * time.Second}, nil, zap.NewNop())),
	}
	for _, ns := range services {
		c, ok := ns.svc.(prometheus.Collector)
		if !ok {
			t.Fatalf("service %s exports no metrics", ns.name)
		}
		collectors = append(collectors, c)
	}
	fqName := regexp.MustCompile(`fqName: "(netsan_[a-z_]+)"`)
	var exported []string
	for _, c := range collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				exported = append(exported, m[1])
			}
		}
	}
	if len(exported) < 15 {
		t.Fatalf("only %d netsan_ metrics described: %v", len(exported), exported)
	}
	guide, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range exported {
		if !strings.Contains(string(guide), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
	for _, m := range regexp.MustCompile("`(netsan_[a-z_]+)`").FindAllStringSubmatch(string(guide), -1) {
		if !slices.Contains(exported, m[1]) {
			t.Errorf("docs/metrics.md describes %s, which nothing exports", m[1])
		}
	}
}
