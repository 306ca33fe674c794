package httpd

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// debug serves net/http/pprof under /debug/pprof/, to loopback clients
// only: profiles expose the process's insides and cost CPU. GET
// /debug/pprof/heap?gc=1 runs a collection first, which is how the fault
// tests compare a settled heap with its baseline.
func (s *Server) debug(w http.ResponseWriter, r *http.Request) {
	if !s.loopbackOnly(w, r) {
		return
	}
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		// The index, and the named profiles: heap, goroutine, allocs…
		pprof.Index(w, r)
	}
}
