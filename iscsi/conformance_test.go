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

// failures lists the tests CUnit reports as failed, with the assertions
// that failed in them ("Suite S, Test T had failures:" and the numbered
// file:line lines after it), then the [FAILED] lines libiscsi printed,
// which also come from commands a test expected to fail.
func failures(out string) []string {
	var tests, printed []string
	inList := false
	for _, line := range strings.Split(out, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.Contains(l, "had failures:"):
			tests, inList = append(tests, l), true
		case inList && len(l) > 0 && l[0] >= '0' && l[0] <= '9' && strings.Contains(l, " - "):
			tests = append(tests, "  "+l)
		case strings.HasPrefix(l, "[FAILED]"):
			inList = false
			printed = append(printed, l)
		default:
			inList = inList && l != ""
		}
	}
	return append(tests, printed...)
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
	if r.failed > 0 && r.failed <= 2 {
		// One test in 615 has failed now and then under CI's load (other
		// packages' tests on the same 2 cores) and never on a quiet machine:
		// until it is found, a run with one or two failures is repeated once
		// on a fresh target, and its failures are shown, so that the next
		// occurrence names the test. A second failing run fails.
		t.Logf("iscsi-test-cu: %d failed; running the suite again. The failures:\n%s", r.failed, strings.Join(failures(r.output), "\n"))
		r = runTestCU(t, cfg, os.Getenv("NETSAN_CU_TEST"))
		t.Logf("iscsi-test-cu, second run: %d tests, %d ran, %d passed, %d failed", r.total, r.ran, r.passed, r.failed)
	}
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
