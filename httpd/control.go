package httpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

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
		s.Log.Error("control request failed", zap.String("op", r.URL.Path), zap.String("iqn", iqn), zap.Error(err))
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	s.Log.Info("control", zap.String("op", r.URL.Path), zap.String("iqn", iqn), zap.String("ip", r.RemoteAddr))
	w.WriteHeader(http.StatusNoContent)
}

// loopbackOnly answers 403 and returns false unless r comes from a loopback
// address: http listens on every address, and what it guards (control,
// profiling) is for the box's own operator.
func (s *Server) loopbackOnly(w http.ResponseWriter, r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		s.Log.Warn("request refused: not from loopback", zap.String("op", r.URL.Path), zap.String("ip", r.RemoteAddr))
		http.Error(w, "accepted from loopback only", http.StatusForbidden)
		return false
	}
	return true
}

// ControlClient calls these endpoints of a running `netsan serve`, as
// `netsan image reset` does: the sessions of a target from GET
// /status.json, then POST /iscsi/logout and /iscsi/reopen. A refused
// connection means no server runs: no sessions, nothing to log out or
// reopen. `netsan hosts seen` reads /status.json through it too.
type ControlClient struct {
	// Base is the server's base URL, such as http://127.0.0.1:8080.
	Base string
	HTTP *http.Client
}

// Status is the server's /status.json. A server that does not run is an
// error that wraps syscall.ECONNREFUSED.
func (c *ControlClient) Status(ctx context.Context) (*Status, error) {
	u := c.Base + "/status.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &st, nil
}

// Sessions lists the iSCSI sessions logged in to target iqn.
func (c *ControlClient) Sessions(ctx context.Context, iqn string) ([]Session, error) {
	st, err := c.Status(ctx)
	if notRunning(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Session
	for _, s := range st.Sessions {
		if s.Target == iqn {
			out = append(out, s)
		}
	}
	return out, nil
}

// Logout asks every initiator logged in to iqn to log out, and returns
// once they have (or were dropped).
func (c *ControlClient) Logout(ctx context.Context, iqn string) error {
	return c.post(ctx, "/iscsi/logout", iqn)
}

// Reopen makes the server reopen the files behind iqn's LUNs.
func (c *ControlClient) Reopen(ctx context.Context, iqn string) error {
	return c.post(ctx, "/iscsi/reopen", iqn)
}

func (c *ControlClient) post(ctx context.Context, path, iqn string) error {
	u := c.Base + path + "?target=" + url.QueryEscape(iqn)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if notRunning(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func notRunning(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
