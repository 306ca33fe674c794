package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/netsan/netsan/lab"
)

// TestUEFIHTTPBoot: OVMF's own UEFI HTTP Boot (PXE turned off) asks DHCP
// as HTTPClient, gets ipxe.efi as a URL and fetches it from netsan's HTTP
// server; iPXE then does its DHCP, runs its script and sanboots its root to
// the Linux marker, as in TestUEFIBoot. netsan's TFTP server serves nothing
// to it: the loader came over HTTP.
func TestUEFIHTTPBoot(t *testing.T) {
	needNetsan(t)
	h := sanHost(t, 6)
	s := serve(t, []lab.NetsanHost{h}, nil, nil)
	ctx, cancel := testContext(t, bootTimeout)
	defer cancel()
	m := machine(h.Host, lab.UEFI)
	m.HTTPBoot = true
	s.bootMachine(t, ctx, h.Host, m)
	checkStamp(t, s.roots[h.Name], h.Name)

	loader, err := os.Stat("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		t.Fatal(err)
	}
	metrics := s.metrics(ctx, t)
	for _, want := range []string{
		// DHCP acked the firmware's HTTP Boot request once, and the whole
		// loader went to this host over HTTP (after EDK2's HEAD).
		`netsan_dhcp_replies_total{kind="httpboot",message="ack"} 1`,
		`netsan_http_sent_bytes_total{host="` + h.Name + `",kind="loader"} ` + strconv.FormatInt(loader.Size(), 10),
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "netsan_tftp_requests_total{") && !strings.HasSuffix(l, " 0") {
			t.Errorf("TFTP served the HTTP Boot guest: %s", l)
		}
	}
}

// metrics is netsan's /metrics, read from the lab's namespace.
func (s *served) metrics(ctx context.Context, t *testing.T) string {
	t.Helper()
	out, err := s.Run(ctx, "curl", "-sf", "-m", "5", "http://"+lab.ServerIP+":8080/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v: %s", err, out)
	}
	return out
}
