package tftpd

import (
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsan/netsan/bootmenu"
)

// metrics counts requests and transfers. It is pin/tftp's Hook (transfer
// outcomes as the library sees them, retransmissions included) and the
// source of the Server's prometheus.Collector.
type metrics struct {
	bootmenu.Counters
	transfers   *prometheus.CounterVec
	datagrams   prometheus.Counter
	retransmits prometheus.Counter
	duration    prometheus.Histogram
	active      prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		Counters: bootmenu.NewCounters("tftp", "result", "TFTP requests by content kind, host (where known) and result (ok, aborted, cut (at shutdown), not_found, refused, forbidden, write_refused, busy, error)."),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netsan_tftp_transfers_total",
			Help: "TFTP transfers ended, by outcome (success, failure), as the TFTP engine reports them.",
		}, []string{"outcome"}),
		datagrams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netsan_tftp_datagrams_sent_total",
			Help: "TFTP DATA and OACK datagrams sent, retransmissions included.",
		}),
		retransmits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netsan_tftp_retransmits_total",
			Help: "TFTP datagrams sent again for want of an acknowledgement.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "netsan_tftp_transfer_duration_seconds",
			Help:    "Duration of successful TFTP transfers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netsan_tftp_transfers_active",
			Help: "TFTP read transfers running now.",
		}),
	}
}

// OnSuccess implements tftp.Hook.
func (m *metrics) OnSuccess(st tftp.TransferStats) {
	m.transfers.WithLabelValues("success").Inc()
	m.account(st, st.DatagramsSent-st.DatagramsAcked)
	m.duration.Observe(st.Duration.Seconds())
}

// OnFailure implements tftp.Hook. pin/tftp also calls it for datagrams it
// cannot parse on the listening socket; those carry empty stats.
func (m *metrics) OnFailure(st tftp.TransferStats, _ error) {
	m.transfers.WithLabelValues("failure").Inc()
	// The last datagram of a failed transfer went unacknowledged without
	// necessarily being sent twice.
	m.account(st, st.DatagramsSent-st.DatagramsAcked-1)
}

func (m *metrics) account(st tftp.TransferStats, retransmits int) {
	m.datagrams.Add(float64(st.DatagramsSent))
	if retransmits > 0 {
		m.retransmits.Add(float64(retransmits))
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Counters, m.transfers, m.datagrams, m.retransmits, m.duration, m.active}
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.metrics.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.metrics.collectors() {
		c.Collect(ch)
	}
}
