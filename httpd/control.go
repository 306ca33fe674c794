package httpd

import (
	"net"
	"net/http"

	"go.uber.org/zap"
)

// ControlSource lets `netsan image reset --force` reach the running iSCSI
// target: end a target's sessions before its root is replaced, then reopen
// the replaced file. Either func may be nil (404).
type ControlSource struct {
	LogoutTarget func(iqn string) error
	ReopenTarget func(iqn string) error
}

// control answers POST /iscsi/logout?target=IQN and POST /iscsi/reopen?target=IQN.
// Only loopback clients may: http listens on every address, and these end
// hosts' sessions.
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	var op func(string) error
	switch r.URL.Path {
	case "/iscsi/logout":
		op = s.Control.LogoutTarget
	case "/iscsi/reopen":
		op = s.Control.ReopenTarget
	}
	if op == nil {
		http.NotFound(w, r)
		return
	}
	if !s.loopbackOnly(w, r) {
		return
	}
	iqn := r.URL.Query().Get("target")
	if iqn == "" {
		http.Error(w, "missing ?target=IQN", http.StatusBadRequest)
		return
	}
	if err := op(iqn); err != nil {
		s.log.Error("control request failed", zap.String("op", r.URL.Path), zap.String("iqn", iqn), zap.Error(err))
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	s.log.Info("control", zap.String("op", r.URL.Path), zap.String("iqn", iqn), zap.String("ip", r.RemoteAddr))
	w.WriteHeader(http.StatusNoContent)
}

// loopbackOnly answers 403 and returns false unless r comes from a loopback
// address: http listens on every address, and what it guards (control,
// profiling) is for the box's own operator.
func (s *Server) loopbackOnly(w http.ResponseWriter, r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		s.log.Warn("request refused: not from loopback", zap.String("op", r.URL.Path), zap.String("ip", r.RemoteAddr))
		http.Error(w, "accepted from loopback only", http.StatusForbidden)
		return false
	}
	return true
}
