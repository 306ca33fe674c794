package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	s.httpBoot(t, h, "ack")
}

// TestProxyUEFIHTTPBoot is TestUEFIHTTPBoot beside the LAN's DHCP server
// (dnsmasq, on another machine of the bridge): netsan in proxy mode offers
// no address, option 60 HTTPClient and the loader's URL; OVMF takes that
// offer with dnsmasq's, as EDK2's HttpBootDxe pairs a DHCP offer without a
// URL and a proxy offer with one. iPXE then gets its script by proxyDHCP.
func TestProxyUEFIHTTPBoot(t *testing.T) {
	needNetsan(t)
	h := sanHost(t, 8)
	s := serveWith(t, env.golden, []lab.NetsanHost{h}, func(inv *lab.Inventory) { inv.Proxy = true })
	ctx, cancel := testContext(t, time.Minute)
	defer cancel()
	lan, err := s.Attach(ctx, "lan", "52:54:00:00:d0:01", "198.18.0.2/24")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartIn(lan, "dnsmasq", "dnsmasq", "-k", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=eth0", "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=198.18.0.150,198.18.0.160,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(s.Dir, "dnsmasq.leases"), "--log-dhcp", "--log-facility=-"); err != nil {
		t.Fatal(err)
	}
	s.httpBoot(t, h, "offer")
}

// httpBoot boots h through OVMF's HTTP Boot to its marker and checks, on
// netsan's /metrics, that DHCP answered the firmware as an HTTP Boot client
// (with reply, an ack, or a proxy's offer), that the loader went to h over
// HTTP, and that TFTP served nothing.
func (s *served) httpBoot(t *testing.T, h lab.NetsanHost, reply string) {
	t.Helper()
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
	// DHCP answered the firmware's HTTP Boot request once.
	if want := `netsan_dhcp_replies_total{kind="httpboot",message="` + reply + `"} 1`; !strings.Contains(metrics, want+"\n") {
		t.Errorf("/metrics lacks %s", want)
	}
	// The whole loader went over HTTP (after EDK2's HEAD), once; in proxy
	// mode netsan cannot tell which host has the address, so any host.
	loaderBytes := 0
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "netsan_http_sent_bytes_total{") && strings.Contains(l, `kind="loader"`) {
			loaderBytes++
			if !strings.HasSuffix(l, " "+strconv.FormatInt(loader.Size(), 10)) {
				t.Errorf("loader bytes over HTTP: %s, want ipxe.efi's %d", l, loader.Size())
			}
		}
		if strings.HasPrefix(l, "netsan_tftp_requests_total{") && !strings.HasSuffix(l, " 0") {
			t.Errorf("TFTP served the HTTP Boot guest: %s", l)
		}
	}
	if loaderBytes != 1 {
		t.Errorf("%d loader series in netsan_http_sent_bytes_total, want 1", loaderBytes)
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
