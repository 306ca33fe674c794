package iscsi

import (
	"strings"
	"testing"
	"time"
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
