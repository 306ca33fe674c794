package httpd

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsan/netsan/bootmenu"
)

type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netsan_http_requests_total",
			Help: "HTTP boot file requests by content kind, host (where known) and status code.",
		}, []string{"kind", "host", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netsan_http_sent_bytes_total",
			Help: "Boot file bytes sent over HTTP, by content kind and host.",
		}, []string{"kind", "host"}),
	}
}

func (m *metrics) request(kind bootmenu.Kind, host string, code int) {
	m.requests.WithLabelValues(string(kind), host, strconv.Itoa(code)).Inc()
}

func (m *metrics) sent(kind bootmenu.Kind, host string, n int64) {
	m.bytes.WithLabelValues(string(kind), host).Add(float64(n))
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	s.metrics.requests.Describe(ch)
	s.metrics.bytes.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	s.metrics.requests.Collect(ch)
	s.metrics.bytes.Collect(ch)
}
