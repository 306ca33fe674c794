//go:build ceph

package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestCephStandbyRefusesClusterChange: a gateway standing by refuses a
// reload that changes [cluster] or [ceph], as a leader does: its elector
// campaigns on the interface and lease it started with, and its next term
// would otherwise serve the new ones. Other changes it takes in.
func TestCephStandbyRefusesClusterChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netsan.toml")
	const base = "[server]\naddress = \"198.18.0.1\"\n[dhcp]\nsubnet = \"198.18.0.0/24\"\n[iscsi]\nbase_iqn = \"iqn.2026-11.example.lab\"\n" +
		"[ceph]\npool = \"rbd\"\n"
	const cl = "[cluster]\ninterface = \"eth0\"\n"
	writeFile(t, path, base+cl)
	inv, _, err := loadInventory(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	sup := &supervisor{path: path, log: zap.New(core), current: inv} // no term: standing by
	for _, tc := range []struct{ name, src, refused string }{
		{"lease", base + cl + "lease = \"9s\"\n", "[cluster] changed"},
		{"interface", base + strings.Replace(cl, "eth0", "eth1", 1), "[cluster] changed"},
		{"pool", strings.Replace(base, `pool = "rbd"`, `pool = "other"`, 1) + cl, "[ceph] changed"},
	} {
		writeFile(t, path, tc.src)
		if err := sup.reload(context.Background()); err == nil || !strings.Contains(err.Error(), tc.refused) {
			t.Errorf("%s: reload while standing by = %v, want %q", tc.name, err, tc.refused)
		}
		if got := sup.inventory(); got != inv {
			t.Errorf("%s: the refused inventory became the one the next term builds from", tc.name)
		}
	}
	writeFile(t, path, base+cl+"[[host]]\nname = \"node2\"\nmac = \"52:54:00:00:00:02\"\nboot = \"local\"\n")
	if err := sup.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sup.inventory().HostByName("node2") == nil || logs.FilterMessage("reloaded while standing by").Len() != 1 {
		t.Errorf("a host added while standing by was not taken in: %v", logs.All())
	}
}
