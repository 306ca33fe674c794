package httpd

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestDebugPprof: /debug/pprof/ answers loopback clients, and heap?gc=1
// collects first; any other address gets 403.
func TestDebugPprof(t *testing.T) {
	fx := start(t, zap.NewNop(), nil)
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(fx.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if code, body := get("/debug/pprof/"); code != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Errorf("GET /debug/pprof/ from loopback: %d\n%.200s", code, body)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, body := get("/debug/pprof/heap?gc=1")
	runtime.ReadMemStats(&after)
	// A heap profile is a gzipped protobuf.
	if code != http.StatusOK || !bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		t.Errorf("GET /debug/pprof/heap?gc=1 from loopback: %d, % x", code, body[:min(len(body), 8)])
	}
	if after.NumGC == before.NumGC {
		t.Errorf("heap?gc=1 ran no collection (NumGC %d)", after.NumGC)
	}

	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?gc=1", "/debug/pprof/cmdline"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "198.18.0.50:40000"
		rec := httptest.NewRecorder()
		fx.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("GET %s from %s: %d, want 403", path, req.RemoteAddr, rec.Code)
		}
	}
}
