package iscsi

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestInquiry(t *testing.T) {
	need(t, "iscsi-inq")
	ts := startServer(t, oneDisk(16<<20))
	out := mustRun(t, 30*time.Second, nil, "iscsi-inq", "-i", testInitiator, ts.url("", testTarget, 0))
	t.Logf("iscsi-inq:\n%s", out)
	if !strings.Contains(out, "Peripheral Device Type") && !strings.Contains(out, "Vendor") {
		t.Errorf("iscsi-inq output lacks the INQUIRY data:\n%s", out)
	}
	// Another initiator is refused.
	if out, err := run(t, 30*time.Second, nil, "iscsi-inq", "-i", otherInit, ts.url("", testTarget, 0)); err == nil {
		t.Errorf("initiator %s outside the ACL logged in:\n%s", otherInit, out)
	}
}

func TestDiscoveryACL(t *testing.T) {
	need(t, "iscsi-ls")
	cfg := oneDisk(16 << 20)
	cfg.Targets = append(cfg.Targets, Target{
		IQN:  testBase + ":other",
		LUNs: []LUN{{Number: 0, Path: "other.img", Size: 8 << 20}},
		ACL:  []ACL{{Initiator: otherInit}},
	})
	ts := startServer(t, cfg)
	url := "iscsi://" + ts.addr
	out := mustRun(t, 30*time.Second, nil, "iscsi-ls", "-i", testInitiator, url)
	t.Logf("iscsi-ls:\n%s", out)
	if !strings.Contains(out, testTarget) || strings.Contains(out, testBase+":other") {
		t.Errorf("%s sees:\n%s", testInitiator, out)
	}
	out = mustRun(t, 30*time.Second, nil, "iscsi-ls", "-i", otherInit, url)
	if strings.Contains(out, testTarget) || !strings.Contains(out, testBase+":other") {
		t.Errorf("%s sees:\n%s", otherInit, out)
	}
	out = mustRun(t, 30*time.Second, nil, "iscsi-ls", "-i", testBase+":stranger", url)
	if strings.Contains(out, testBase) {
		t.Errorf("a stranger sees:\n%s", out)
	}
}

func TestCHAP(t *testing.T) {
	need(t, "iscsi-inq", "iscsi-ls")
	mutualIQN := testBase + ":mutual"
	cfg := oneDisk(8<<20, ACL{Initiator: testInitiator, CHAP: &CHAP{User: "node1", Secret: "node1-secret-0"}})
	cfg.Targets = append(cfg.Targets, Target{
		IQN:  mutualIQN,
		LUNs: []LUN{{Number: 0, Path: "mutual.img", Size: 8 << 20}},
		ACL: []ACL{{Initiator: testInitiator, CHAP: &CHAP{User: "node1m", Secret: "node1m-secret",
			MutualUser: "target-m", MutualSecret: "target-m-secret"}}},
	})
	cfg.DiscoveryCHAP = &CHAP{User: "disc", Secret: "discovery-secret"}
	ts := startServer(t, cfg)
	mutualEnv := []string{"LIBISCSI_CHAP_TARGET_USERNAME=target-m", "LIBISCSI_CHAP_TARGET_PASSWORD=target-m-secret"}

	for _, tc := range []struct {
		name string
		env  []string
		url  string
		ok   bool
	}{
		{"one-way CHAP", nil, ts.url("node1%node1-secret-0", testTarget, 0), true},
		{"wrong secret", nil, ts.url("node1%node1-secret-X", testTarget, 0), false},
		{"wrong user", nil, ts.url("node9%node1-secret-0", testTarget, 0), false},
		{"no CHAP", nil, ts.url("", testTarget, 0), false},
		{"mutual CHAP", mutualEnv, ts.url("node1m%node1m-secret", mutualIQN, 0), true},
		{"mutual CHAP, target proves a wrong secret", []string{"LIBISCSI_CHAP_TARGET_USERNAME=target-m",
			"LIBISCSI_CHAP_TARGET_PASSWORD=not-the-secret"}, ts.url("node1m%node1m-secret", mutualIQN, 0), false},
		{"mutual asked of a one-way target", mutualEnv, ts.url("node1%node1-secret-0", testTarget, 0), false},
	} {
		out, err := run(t, 30*time.Second, tc.env, "iscsi-inq", "-i", testInitiator, tc.url)
		if ok := err == nil && strings.Contains(out, "Vendor"); ok != tc.ok {
			t.Errorf("%s: logged in %v, want %v (%v)\n%s", tc.name, ok, tc.ok, err, out)
		}
	}

	// Discovery needs the discovery secret or the host's own; the host's
	// own shows the targets whose ACL names that CHAP user.
	disc := func(userinfo string) (string, error) {
		if userinfo != "" {
			userinfo += "@"
		}
		return run(t, 30*time.Second, nil, "iscsi-ls", "-i", testInitiator, "iscsi://"+userinfo+ts.addr)
	}
	if out, err := disc(""); err == nil && strings.Contains(out, testBase) {
		t.Errorf("discovery without CHAP listed targets:\n%s", out)
	}
	if out, err := disc("disc%wrong-secret-1"); err == nil && strings.Contains(out, testBase) {
		t.Errorf("discovery with a wrong secret listed targets:\n%s", out)
	}
	out, err := disc("disc%discovery-secret")
	if err != nil || strings.Contains(out, testTarget) || strings.Contains(out, mutualIQN) {
		t.Errorf("discovery CHAP (not a host's user) sees the CHAP targets or failed (%v):\n%s", err, out)
	}
	out, err = disc("node1%node1-secret-0")
	if err != nil || !strings.Contains(out, testTarget) || strings.Contains(out, mutualIQN) {
		t.Errorf("discovery as node1: want only %s (%v):\n%s", testTarget, err, out)
	}
}

func TestHeaderDigest(t *testing.T) {
	need(t, "iscsi-ls", "qemu-img")
	core, logs := observer.New(zap.InfoLevel)
	ts := startServerLog(t, oneDisk(8<<20), zap.New(core))
	mustRun(t, 30*time.Second, nil, "iscsi-ls", "-i", testInitiator, "iscsi://"+ts.addr+"?header_digest=crc32c")
	out := mustRun(t, 30*time.Second, nil, "qemu-img", "info", "--image-opts",
		"driver=iscsi,transport=tcp,portal="+ts.addr+",target="+testTarget+",lun=0,header-digest=crc32c,initiator-name="+testInitiator)
	if !strings.Contains(out, "virtual size: 8 MiB") {
		t.Errorf("qemu-img info:\n%s", out)
	}
	var withDigest int
	for _, e := range logs.FilterMessage("login").All() {
		if e.ContextMap()["header_digest"] == true {
			withDigest++
		}
	}
	if withDigest != 2 {
		t.Errorf("%d logins with HeaderDigest=CRC32C, want 2 (discovery and qemu)", withDigest)
	}
}

// TestSendTargetsEmptyLogged checks an empty SendTargets answer, which the
// initiator cannot tell from a target without targets, is logged with the
// initiator's name and the reason; a non-empty one is not.
func TestSendTargetsEmptyLogged(t *testing.T) {
	need(t, "iscsi-ls")
	core, logs := observer.New(zap.InfoLevel)
	cfg := oneDisk(8<<20, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit, CHAP: &CHAP{User: "node2", Secret: "node2-secret-0"}})
	ts := startServerLog(t, cfg, zap.New(core))
	empty := startServerLog(t, Config{}, zap.New(core))
	stranger := testBase + ":stranger"
	for _, tc := range []struct {
		addr, initiator, reason string
	}{
		{ts.addr, testInitiator, ""},
		{ts.addr, stranger, "no target's ACL admits the initiator"},
		{ts.addr, otherInit, "the targets admitting the initiator require CHAP, and discovery was not authenticated as their user"},
		{empty.addr, testInitiator, "no targets"},
	} {
		logs.TakeAll()
		out := mustRun(t, 30*time.Second, nil, "iscsi-ls", "-i", tc.initiator, "iscsi://"+tc.addr)
		if tc.reason == "" && !strings.Contains(out, testTarget) {
			t.Fatalf("%s sees no target:\n%s", tc.initiator, out)
		}
		var got []string
		for _, e := range logs.FilterMessage("SendTargets lists no target").All() {
			if e.Level != zap.InfoLevel || e.ContextMap()["initiator"] != tc.initiator {
				t.Errorf("%s: logged %v %q with %v", tc.initiator, e.Level, e.Message, e.ContextMap())
			}
			got = append(got, e.ContextMap()["reason"].(string))
		}
		if tc.reason == "" && len(got) != 0 || tc.reason != "" && (len(got) != 1 || got[0] != tc.reason) {
			t.Errorf("%s at %s: empty SendTargets logged with reasons %q, want %q", tc.initiator, tc.addr, got, tc.reason)
		}
	}
}
