package httpd

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

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
