package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// fakeTarget stands in for the running server's sessions. The real one is
// reached over the server's control endpoint (cmd/netsan); here it records
// what reset asked of it and what the root held at that moment.
type fakeTarget struct {
	t        *testing.T
	root     string
	sessions map[string][]string
	calls    []string
}

func (f *fakeTarget) Sessions(_ context.Context, iqn string) ([]string, error) {
	f.calls = append(f.calls, "sessions "+iqn)
	return f.sessions[iqn], nil
}

func (f *fakeTarget) Logout(_ context.Context, iqn string) error {
	b, _ := os.ReadFile(f.root)
	f.calls = append(f.calls, "logout "+iqn+" root="+marker(b))
	delete(f.sessions, iqn)
	return nil
}

func (f *fakeTarget) Reopen(_ context.Context, iqn string) error {
	b, _ := os.ReadFile(f.root)
	f.calls = append(f.calls, "reopen "+iqn+" root="+marker(b))
	return nil
}

// marker says whether the root still holds what the host wrote.
func marker(b []byte) string {
	if strings.HasPrefix(string(b), "host wrote this") {
		return "old"
	}
	return "new"
}

func TestResetRefusedWhileSessionLive(t *testing.T) {
	inv := provisioned(t, 2, "64MiB", 6)
	h := &inv.Hosts[0]
	root := h.Root.Image
	f, err := os.OpenFile(root, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("host wrote this"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	iqn := inv.TargetIQN(h)
	live := &fakeTarget{t: t, root: root, sessions: map[string][]string{
		iqn: {inv.InitiatorIQN(h) + " from 198.18.0.11:50123"},
	}}

	_, err = ResetRoot(t.Context(), inv, nil, h, live, false, nil)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Host != h.Name || len(busy.Sessions) != 1 {
		t.Fatalf("reset with a live session: %v, want *BusyError for %s", err, h.Name)
	}
	t.Logf("refused: %v", err)
	if b, _ := os.ReadFile(root); marker(b) != "old" {
		t.Fatal("refused reset changed the root")
	}
	if strings.Join(live.calls, ";") != "sessions "+iqn {
		t.Errorf("refused reset asked %q, want only the sessions", live.calls)
	}

	// Another host's session does not block this one.
	live.calls = nil
	live.sessions[inv.TargetIQN(&inv.Hosts[1])] = []string{"x"}
	if _, err := ResetRoot(t.Context(), inv, nil, &inv.Hosts[0], live, false, nil); err == nil {
		t.Fatal("session of node00 was ignored")
	}

	live.calls = nil
	m, err := ResetRoot(t.Context(), inv, nil, h, live, true, nil)
	if err != nil {
		t.Fatalf("forced reset: %v", err)
	}
	want := []string{"sessions " + iqn, "logout " + iqn + " root=old", "reopen " + iqn + " root=new"}
	if strings.Join(live.calls, ";") != strings.Join(want, ";") {
		t.Errorf("forced reset asked\n %q\nwant\n %q", live.calls, want)
	}
	if digest(t, root) != digest(t, inv.ImageByName("golden").Path) {
		t.Errorf("reset (%v) root differs from the golden image", m)
	}
	if tt := temps(t, root); len(tt) != 0 {
		t.Errorf("temporary files left: %v", tt)
	}

	// No server running: nothing to ask, the reset just happens.
	if _, err := ResetRoot(t.Context(), inv, nil, &inv.Hosts[1], nil, false, nil); err != nil {
		t.Errorf("reset without a server: %v", err)
	}
}

func TestEnsureLeavesOthersAlone(t *testing.T) {
	dir := t.TempDir()
	makeGolden(t, filepath.Join(dir, "golden", "g.img"), 16*mib, 4*mib, 7)
	inv := fleet(t, dir, 3, "32MiB")
	// node01's root exists already: kept as is. node02 has no from: left
	// to the iSCSI backstore.
	kept := inv.Hosts[1].Root.Image
	if err := os.MkdirAll(filepath.Dir(kept), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv.Hosts[2].Root.From = ""
	if err := Ensure(t.Context(), inv, nil, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if size, _, err := Usage(inv.Hosts[0].Root.Image); err != nil || size != 32*mib {
		t.Errorf("node00: size %d, %v; want a 32 MiB clone", size, err)
	}
	if b, _ := os.ReadFile(kept); string(b) != "mine" {
		t.Error("Ensure replaced an existing root")
	}
	if _, err := os.Stat(inv.Hosts[2].Root.Image); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Ensure created a root without from: %v", err)
	}
	if _, err := CloneRoot(t.Context(), inv, nil, &inv.Hosts[1], nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("CloneRoot of an existing root: %v, want ErrExist", err)
	}
	if _, err := ResetRoot(t.Context(), inv, nil, &inv.Hosts[2], nil, false, nil); err == nil {
		t.Error("reset of a root without from: no error")
	}

	// A missing golden image fails that host, loudly.
	if err := os.Remove(inv.ImageByName("golden").Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(inv.Hosts[0].Root.Image); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(t.Context(), inv, nil, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), "node00") {
		t.Errorf("Ensure without its golden image: %v", err)
	}
}
