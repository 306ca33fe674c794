package iscsi

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// conformance runs libiscsi's iscsi-test-cu against a fresh target and
// returns the CUnit test counts and the number of [SKIPPED] lines.
type cuResult struct {
	total, ran, passed, failed, skips int
	output                            string
}

var cuTests = regexp.MustCompile(`(?m)^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)

func runTestCU(t *testing.T, cfg Config, suite string, extra ...string) cuResult {
	t.Helper()
	need(t, "iscsi-test-cu")
	ts := startServer(t, cfg)
	url := ts.url("", testTarget, 0)
	args := append([]string{"-d", "-n"}, extra...)
	if suite != "" {
		args = append(args, "-t", suite)
	}
	args = append(args, url, url)
	out, err := run(t, 20*time.Minute, nil, "iscsi-test-cu", args...)
	m := cuTests.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("iscsi-test-cu %v: no CUnit summary (%v)\n%s", args, err, tail(out, 4000))
	}
	var r cuResult
	r.total, _ = strconv.Atoi(m[1])
	r.ran, _ = strconv.Atoi(m[2])
	r.passed, _ = strconv.Atoi(m[3])
	r.failed, _ = strconv.Atoi(m[4])
	r.skips = strings.Count(out, "[SKIPPED]")
	r.output = out
	// NETSAN_CU_LOG=PREFIX keeps the suite's output in PREFIX.<test name>.
	if prefix := os.Getenv("NETSAN_CU_LOG"); prefix != "" {
		os.WriteFile(prefix+"."+t.Name(), []byte(out), 0o644)
	}
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// failures lists the tests CUnit reports as failed.
func failures(out string) []string {
	var f []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "FAILED") || strings.HasPrefix(strings.TrimSpace(line), "Test: ") && strings.Contains(line, "...FAILED") {
			f = append(f, strings.TrimSpace(line))
		}
	}
	return f
}

// TestConformance runs the whole of libiscsi's conformance suite
// (iscsi-test-cu -d -n URL URL) and fails on any failed test.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	// An empty ACL admits both of iscsi-test-cu's initiator names.
	cfg := oneDisk(64<<20, ACL{})
	cfg.Targets[0].ACL = nil
	// NETSAN_CU_TEST narrows the run to one family or suite while debugging.
	r := runTestCU(t, cfg, os.Getenv("NETSAN_CU_TEST"))
	t.Logf("iscsi-test-cu: %d tests, %d ran, %d passed, %d failed, %d [SKIPPED] lines", r.total, r.ran, r.passed, r.failed, r.skips)
	if r.failed > 0 || r.passed != r.ran {
		t.Errorf("iscsi-test-cu: %d failures:\n%s", r.failed, strings.Join(failures(r.output), "\n"))
	}
}

// TestConformanceReadOnly runs libiscsi's ReadOnly suite through a
// write_protect ACL entry.
func TestConformanceReadOnly(t *testing.T) {
	cfg := oneDisk(16<<20, ACL{Initiator: "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test", WriteProtect: true},
		ACL{Initiator: "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2", WriteProtect: true})
	r := runTestCU(t, cfg, "ALL.ReadOnly")
	t.Logf("iscsi-test-cu ALL.ReadOnly: %d tests, %d passed, %d failed, %d [SKIPPED] lines", r.total, r.passed, r.failed, r.skips)
	if r.ran == 0 || r.failed > 0 || r.passed != r.ran {
		t.Errorf("ALL.ReadOnly: %d of %d failed:\n%s", r.failed, r.ran, strings.Join(failures(r.output), "\n"))
	}
}
