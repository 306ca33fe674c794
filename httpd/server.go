// Package httpd is netsan's HTTP face: the same boot files as TFTP (through
// bootmenu, so a name means the same over both), with Content-Length and
// Range as iPXE wants them; /metrics for Prometheus; and /status, the
// inventory joined with DHCP leases and iSCSI sessions, as a page or JSON.
package httpd

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/netsan/netsan/bootmenu"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// Server serves boot files, /metrics and /status.
type Server struct {
	// Listener, when set before Serve, is used instead of binding http.listen
	// (tests listen on 127.0.0.1:0 themselves).
	Listener net.Listener
	// Gatherer is what /metrics exposes: cmd/netsan registers every
	// service's collector in one registry and sets it here. When nil,
	// /metrics shows this server's own metrics only.
	Gatherer prometheus.Gatherer
	// Status supplies the live half of /status; either func may be nil.
	Status StatusSource
	// Events, when set, is told of each boot file sent to a known machine,
	// and /status tells each host's last boot from it.
	Events *timeline.Recorder
	// Control serves POST /iscsi/logout and /iscsi/reopen to loopback clients.
	Control ControlSource
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// after its context is cancelled (30 s when zero); then it closes them.
	ShutdownTimeout time.Duration

	// Service holds the resolver and logger, and is the Server's Reload,
	// SetMACFinder and ListenAddrs.
	bootmenu.Service
	counters bootmenu.Counters
}

// New returns a Server for inv; Serve starts it.
func New(inv *inventory.Inventory, log *zap.Logger) (*Server, error) {
	s := &Server{counters: bootmenu.NewCounters("http", "code", "HTTP boot file requests by content kind, host (where known) and status code.")}
	var err error
	s.Service, err = bootmenu.NewService("http", inv, log,
		func(inv *inventory.Inventory) string { return inv.HTTP.Listen }, func() bool { return s.Listener != nil })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Serve answers requests until ctx is cancelled, then drains them.
func (s *Server) Serve(ctx context.Context) error {
	ln := s.Listener
	if ln == nil {
		addr := s.Listen()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.Bound(nil)
			return fmt.Errorf("http: listen %s: %w", addr, err)
		}
		ln = l
	}
	s.Bound(ln.Addr())
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(s.Log),
	}
	s.Log.Info("serving", zap.Stringer("addr", ln.Addr()))
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	timeout := s.ShutdownTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.Log.Warn("requests still running at shutdown; closing them", zap.Error(err))
		hs.Close()
	}
	<-done // http.ErrServerClosed
	s.Log.Info("stopped")
	return nil
}

// Handler is the whole HTTP surface, for Serve or any other http.Server.
func (s *Server) Handler() http.Handler {
	var g prometheus.Gatherer = s.Gatherer
	if g == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(s)
		g = reg
	}
	metricsHandler := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(s.Log)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				s.Log.Error("panic in request", zap.String("path", r.URL.Path),
					zap.String("ip", r.RemoteAddr), zap.Any("panic", p), zap.Stack("stack"))
				// Drop this connection only; the server goes on.
				panic(http.ErrAbortHandler)
			}
		}()
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/iscsi/") {
			s.control(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			s.debug(w, r)
			return
		}
		// Paths are matched as sent, not cleaned as http.ServeMux would:
		// bootmenu refuses ".." rather than having it quietly redirected.
		switch r.URL.Path {
		case "/":
			// A person at a browser: show them what is going on.
			http.Redirect(w, r, "/status", http.StatusFound)
		case "/metrics":
			metricsHandler.ServeHTTP(w, r)
		case "/status", "/status.json":
			s.status(w, r)
		default:
			s.file(w, r)
		}
	})
}

// file serves a boot file, /boot/<mac>.ipxe included.
func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var c bootmenu.Client
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.IP = ap.Addr().Unmap()
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			c.Local = ap.Addr().Unmap()
		}
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	log := s.Log.With(bootmenu.RequestFields(r.Method, name, c.IP)...)
	f, err := s.Resolver.Resolve(c, name)
	if err != nil {
		rf := bootmenu.Refuse(err)
		s.counters.Status("", "", rf.Status)
		log.Log(rf.Level, "refused", zap.String("result", rf.Result), zap.Int("status", rf.Status), zap.Error(err))
		http.Error(w, strings.ToLower(http.StatusText(rf.Status)), rf.Status)
		return
	}
	defer f.Close()
	h := w.Header()
	switch f.Kind {
	case bootmenu.KindScript, bootmenu.KindUnknown, bootmenu.KindCmdline:
		// Generated from the inventory: a reload must be seen at once.
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "text/plain; charset=utf-8")
	default:
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream" // loaders: never let sniffing guess
		}
		h.Set("Content-Type", ct)
	}
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	// ServeContent writes Content-Length (iPXE crawls without it) and
	// answers Range and If-Modified-Since.
	var content io.ReadSeeker = f
	if osf := f.OSFile(); osf != nil {
		content = osf // lets the kernel copy the file to the socket
	}
	http.ServeContent(cw, r, name, f.ModTime(), content)
	s.counters.Status(f.Kind, f.Host, cw.status)
	s.counters.Sent(f.Kind, f.Host, cw.n)
	log.Info("sent", append(f.Fields(), zap.Int("status", cw.status),
		zap.Int64("bytes", cw.n), zap.Duration("elapsed", time.Since(start)))...)
	if r.Method == http.MethodGet && cw.status/100 == 2 {
		s.Events.Record(f.Event("http", name))
	}
}

// countingWriter records the status and the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile(2) path for files on disk.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}
