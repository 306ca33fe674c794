package httpd

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestControl(t *testing.T) {
	var calls []string
	fx := start(t, zap.NewNop(), func(s *Server) {
		s.Control = ControlSource{
			LogoutTarget: func(iqn string) error { calls = append(calls, "logout "+iqn); return nil },
			ReopenTarget: func(iqn string) error { return errors.New("no target " + iqn) },
		}
	})
	post := func(path string) int {
		resp, err := http.Post(fx.base+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/iscsi/logout?target=iqn.2026-11.x:node1", http.StatusNoContent},
		{"/iscsi/logout", http.StatusBadRequest},
		{"/iscsi/reopen?target=iqn.2026-11.x:nope", http.StatusConflict},
		{"/iscsi/frobnicate?target=x", http.StatusNotFound},
	} {
		if got := post(tc.path); got != tc.code {
			t.Errorf("POST %s = %d, want %d", tc.path, got, tc.code)
		}
	}
	if len(calls) != 1 || calls[0] != "logout iqn.2026-11.x:node1" {
		t.Errorf("calls = %v", calls)
	}

	// Not from loopback: refused before anything is called.
	req := httptest.NewRequest(http.MethodPost, "/iscsi/logout?target=iqn.2026-11.x:node1", nil)
	req.RemoteAddr = "198.18.0.50:40000"
	rec := httptest.NewRecorder()
	fx.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || len(calls) != 1 {
		t.Errorf("remote POST: %d, calls %v", rec.Code, calls)
	}

	// Without a ControlSource the endpoints do not exist.
	fx2 := start(t, zap.NewNop(), nil)
	resp, err := http.Post(fx2.base+"/iscsi/logout?target=x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST without control = %d", resp.StatusCode)
	}
}

// TestControlClient drives a real Server through ControlClient: a
// target's sessions as /status.json serves them, logout and reopen, the
// server's refusal, and no server at all.
func TestControlClient(t *testing.T) {
	since := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	node1 := Session{Initiator: "iqn.2026-11.x:node1", Target: "iqn.2026-11.x:node1", Remote: "198.18.0.11:51000",
		Since: since, ReadBytes: 12288, WrittenBytes: 4096}
	var calls []string
	fx := start(t, zap.NewNop(), func(s *Server) {
		s.Status.Sessions = func() []Session {
			return []Session{node1, {Initiator: "iqn.2026-11.x:node2", Target: "iqn.2026-11.x:node2", Since: since}}
		}
		s.Control = ControlSource{
			LogoutTarget: func(iqn string) error { calls = append(calls, "logout "+iqn); return nil },
			ReopenTarget: func(iqn string) error { return errors.New("no target " + iqn) },
		}
	})
	c := &ControlClient{Base: fx.base, HTTP: &http.Client{Timeout: 10 * time.Second}}
	ss, err := c.Sessions(t.Context(), node1.Target)
	if err != nil || len(ss) != 1 || ss[0] != node1 || ss[0].String() != "iqn.2026-11.x:node1 from 198.18.0.11:51000" {
		t.Fatalf("Sessions = %+v, %v; want %+v", ss, err, node1)
	}
	if err := c.Logout(t.Context(), node1.Target); err != nil || len(calls) != 1 || calls[0] != "logout "+node1.Target {
		t.Errorf("Logout: %v, calls %v", err, calls)
	}
	if err := c.Reopen(t.Context(), "iqn.2026-11.x:nope"); err == nil || !strings.Contains(err.Error(), "409") ||
		!strings.Contains(err.Error(), "no target iqn.2026-11.x:nope") {
		t.Errorf("Reopen refused: %v", err)
	}

	// Nothing listening: no server runs, so no sessions and nothing to do.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := &ControlClient{Base: "http://" + ln.Addr().String(), HTTP: http.DefaultClient}
	ln.Close()
	if ss, err := gone.Sessions(t.Context(), node1.Target); err != nil || ss != nil {
		t.Errorf("Sessions with no server: %v, %v", ss, err)
	}
	if err := gone.Logout(t.Context(), node1.Target); err != nil {
		t.Errorf("Logout with no server: %v", err)
	}
}
