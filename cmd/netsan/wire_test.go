package main

import (
	"testing"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/iscsi"
)

func TestISCSIConfig(t *testing.T) {
	inv, _, err := inventory.Load("../../examples/pc-fleet.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := iscsiConfig(inv, nil)
	byIQN := map[string]iscsi.Target{}
	for _, tg := range cfg.Targets {
		byIQN[tg.IQN] = tg
	}
	// Hosts with a root get their own target; local hosts without a root do not.
	if len(cfg.Targets) != 5 {
		t.Fatalf("%d targets, want 4 roots + 1 data: %+v", len(cfg.Targets), cfg.Targets)
	}
	pc02 := byIQN["iqn.2026-11.example.fleet:pc02"]
	if len(pc02.LUNs) != 1 || pc02.LUNs[0].Number != 0 || pc02.LUNs[0].Path != "/var/lib/netsan/roots/pc02.img" || pc02.LUNs[0].Size != 32<<30 {
		t.Errorf("pc02 LUNs = %+v", pc02.LUNs)
	}
	if len(pc02.ACL) != 1 || pc02.ACL[0].Initiator != "iqn.2026-11.example.fleet:pc02" || pc02.ACL[0].CHAP == nil || pc02.ACL[0].CHAP.MutualSecret != "pc02-target-secret-55d0" {
		t.Errorf("pc02 ACL = %+v", pc02.ACL)
	}
	data := byIQN["iqn.2026-11.example.fleet:data"]
	if len(data.LUNs) != 2 || len(data.ACL) != 2 {
		t.Fatalf("data = %+v", data)
	}
	backup := data.ACL[1]
	if !backup.WriteProtect || backup.Map[1] != 1 || backup.Map[0] != 0 || len(backup.Map) != 2 {
		t.Errorf("backup ACL = %+v", backup)
	}
	if cfg.DiscoveryCHAP == nil || cfg.DiscoveryCHAP.User != "discovery" || cfg.StateDir != "/var/lib/netsan/iscsi" {
		t.Errorf("cfg = %+v", cfg)
	}
}

// TestSessionsKeepBytes checks /status gets each target session with the
// bytes it moved, and no discovery session.
func TestSessionsKeepBytes(t *testing.T) {
	got := sessions([]iscsi.SessionInfo{
		{Target: "iqn.2026-11.example.test:node1", Initiator: "iqn.2026-11.example.test:node1", ReadBytes: 12288, WrittenBytes: 4096},
		{Initiator: "iqn.2026-11.example.test:node1", Discovery: true, ReadBytes: 1},
	})
	if len(got) != 1 || got[0].Target != "iqn.2026-11.example.test:node1" || got[0].ReadBytes != 12288 || got[0].WrittenBytes != 4096 {
		t.Errorf("sessions = %+v, want node1's with 12288 bytes read and 4096 written", got)
	}
}
