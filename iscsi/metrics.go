package iscsi

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counterKey groups traffic by target and initiator; counters outlive the
// sessions that feed them.
type counterKey struct {
	target, initiator string
}

type counters struct {
	readBytes, writeBytes, commands atomic.Uint64
}

var (
	descSessions   = prometheus.NewDesc("netsan_iscsi_sessions", "iSCSI sessions in full feature phase.", []string{"target", "initiator"}, nil)
	descReadBytes  = prometheus.NewDesc("netsan_iscsi_read_bytes_total", "Bytes sent to initiators in Data-In.", []string{"target", "initiator"}, nil)
	descWriteBytes = prometheus.NewDesc("netsan_iscsi_write_bytes_total", "Bytes received from initiators for writes.", []string{"target", "initiator"}, nil)
	descCommands   = prometheus.NewDesc("netsan_iscsi_commands_total", "SCSI commands executed.", []string{"target", "initiator"}, nil)

	descLoginsPending = prometheus.NewDesc("netsan_iscsi_logins_pending", "Connections not yet in full feature phase.", nil, nil)
	descLoginsEvicted = prometheus.NewDesc("netsan_iscsi_logins_evicted_total", "Pending logins closed to admit newer connections (MaxPendingLogins reached).", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	ch <- descReadBytes
	ch <- descWriteBytes
	ch <- descCommands
	ch <- descLoginsPending
	ch <- descLoginsEvicted
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	pending, evicted := s.portal.logins()
	ch <- prometheus.MustNewConstMetric(descLoginsPending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(descLoginsEvicted, prometheus.CounterValue, float64(evicted))
	for _, t := range s.sessions.totals() {
		k := t.key
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(t.open), k.target, k.initiator)
		ch <- prometheus.MustNewConstMetric(descReadBytes, prometheus.CounterValue, float64(t.c.readBytes.Load()), k.target, k.initiator)
		ch <- prometheus.MustNewConstMetric(descWriteBytes, prometheus.CounterValue, float64(t.c.writeBytes.Load()), k.target, k.initiator)
		ch <- prometheus.MustNewConstMetric(descCommands, prometheus.CounterValue, float64(t.c.commands.Load()), k.target, k.initiator)
	}
}

// total is one target and initiator's counters with their open sessions.
type total struct {
	key  counterKey
	c    *counters
	open int
}

// totals lists the counters of every target and initiator that had a
// session.
func (st *sessionTable) totals() []total {
	st.mu.Lock()
	defer st.mu.Unlock()
	open := map[counterKey]int{}
	for _, ss := range st.byTSIH {
		open[counterKey{ss.nexus.TargetName, ss.initiator}]++
	}
	out := make([]total, 0, len(st.traffic))
	for k, c := range st.traffic {
		out = append(out, total{k, c, open[k]})
	}
	return out
}
