package dhcpd

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts replies sent, by message and client kind.
type metrics struct {
	replies *prometheus.CounterVec
	leases  *prometheus.Desc
}

func newMetrics() *metrics {
	m := &metrics{
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "netsan", Subsystem: "dhcp", Name: "replies_total",
			Help: "DHCP replies sent, by message (offer, ack, nak, inform) and client kind (pxe, httpboot, ipxe, pi, other).",
		}, []string{"message", "kind"}),
		leases: prometheus.NewDesc("netsan_dhcp_leases", "Leases in the lease store, by state (bound, expired, declined).",
			[]string{"state"}, nil),
	}
	// Every series exists from the start, so a rate() over a fresh server is 0, not absent.
	for _, msg := range []string{"offer", "ack", "nak"} {
		for _, k := range kinds {
			m.replies.WithLabelValues(msg, string(k))
		}
	}
	return m
}

func (m *metrics) count(x *exchange) {
	m.replies.WithLabelValues(string(x.op), string(x.kind)).Inc()
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	s.metrics.replies.Describe(ch)
	ch <- s.metrics.leases
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	s.metrics.replies.Collect(ch)
	now := time.Now()
	n := map[LeaseState]int{StateBound: 0, stateExpired: 0, StateDeclined: 0}
	for _, l := range s.leases.list() {
		switch {
		case !l.activeAt(now):
			n[stateExpired]++
		default:
			n[l.State]++
		}
	}
	for st, v := range n {
		ch <- prometheus.MustNewConstMetric(s.metrics.leases, prometheus.GaugeValue, float64(v), string(st))
	}
}
