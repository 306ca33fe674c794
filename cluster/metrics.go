package cluster

import "github.com/prometheus/client_golang/prometheus"

// Collector exports an Elector's Status for /metrics.
type Collector struct {
	e                           *Elector
	leader, renewals, takeovers *prometheus.Desc
}

// NewCollector returns a Collector over e.
func NewCollector(e *Elector) *Collector {
	return &Collector{
		e: e,
		leader: prometheus.NewDesc("netsan_cluster_leader",
			"1 for the gateway that leads (holds the lock and the floating address) as this gateway sees it, 0 for the others.",
			[]string{"gateway"}, nil),
		renewals: prometheus.NewDesc("netsan_cluster_lease_renewals_total",
			"Leadership lease renewals this gateway made.", nil, nil),
		takeovers: prometheus.NewDesc("netsan_cluster_takeovers_total",
			"Times this gateway became the leader.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.leader
	ch <- c.renewals
	ch <- c.takeovers
}

// Collect implements prometheus.Collector: one leader series per known
// gateway.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Status()
	for _, g := range s.Gateways {
		v := 0.0
		if g.Leader {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, v, g.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.renewals, prometheus.CounterValue, float64(s.Renewals))
	ch <- prometheus.MustNewConstMetric(c.takeovers, prometheus.CounterValue, float64(s.Takeovers))
}
