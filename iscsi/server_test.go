package iscsi

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no IQN", Config{Targets: []Target{{}}}, "without IQN"},
		{"duplicate target", Config{Targets: []Target{{IQN: "iqn.a:x"}, {IQN: "iqn.a:x"}}}, "defined twice"},
		{"duplicate LUN", Config{Targets: []Target{{IQN: "iqn.a:x", LUNs: []LUN{{Number: 1, Path: img, Size: 1 << 20}, {Number: 1, Path: img, Size: 1 << 20}}}}}, "lun 1 defined twice"},
		{"LUN too large", Config{Targets: []Target{{IQN: "iqn.a:x", LUNs: []LUN{{Number: 20000, Path: img, Size: 1 << 20}}}}}, "beyond 16383"},
		{"duplicate ACL", Config{Targets: []Target{{IQN: "iqn.a:x", ACL: []ACL{{Initiator: "i"}, {Initiator: "i"}}}}}, "listed twice"},
		{"missing image without size", Config{Targets: []Target{{IQN: "iqn.a:x", LUNs: []LUN{{Number: 0, Path: filepath.Join(dir, "none.img")}}}}}, "lun 0"},
	} {
		if _, err := New(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestServeListenError(t *testing.T) {
	srv, err := New(Config{Listen: []string{"127.0.0.1:-1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); err == nil {
		t.Fatal("Serve on a bad address returned nil")
	}
	if a := srv.ListenAddrs(); a != nil {
		t.Errorf("ListenAddrs after a failed Serve: %v", a)
	}
}
