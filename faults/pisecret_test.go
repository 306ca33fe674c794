package faults

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/netsantest"
)

// newBridgeLab is netsan's namespace with bridge br0 at 198.18.0.1/24, a
// LAN for Attach to cable machines to.
func newBridgeLab(t *testing.T) *netnsLab {
	t.Helper()
	l := &netnsLab{Lab: netsantest.NewLab(t, "faults"), t: t}
	l.Bridge("198.18.0.1/24")
	return l
}

// lease has busybox udhcpc in ns take an address from netsan and puts it
// on eth0; it returns the address.
func (l *netnsLab) lease(ns string) string {
	l.t.Helper()
	vars := udhcpcEnv(l.t, ns)
	l.IP(ns, "addr", "add", vars["ip"]+"/"+vars["mask"], "dev", "eth0")
	return vars["ip"]
}

// TestPiSecretOnlyToItsPi: a SAN-booting Pi's generated cmdline.txt
// carries its CHAP secret. On one LAN, the Pi (its MAC, its address)
// gets it over TFTP (busybox tftp) and HTTP (curl); a second machine with
// another MAC and address asking for the same <serial>/cmdline.txt gets a
// TFTP error and a 403, and netsan logs a WARN naming the host, the
// asking address and the MAC found behind it. So does a third machine that
// set itself the fixed address of a second Pi, which is off, and asks for
// that Pi's file. Files without a secret still go to anyone. In proxy mode
// netsan tells the Pi by the kernel's neighbour table, in authoritative
// mode by the lease or fixed address it gave, held to the MAC the
// neighbour table shows for it.
func TestPiSecretOnlyToItsPi(t *testing.T) {
	netsantest.NeedTools(t, "busybox", "curl")
	const (
		piMAC, otherMAC = "dc:a6:32:00:00:01", "02:00:5e:00:00:50"
		secret          = "pi1-root-secret-c0ffee"
		cmdline         = "9ffefde1/cmdline.txt"
		// pi2 never boots: an impostor takes its fixed address.
		pi2MAC, impostorMAC = "dc:a6:32:00:00:02", "02:00:5e:00:00:51"
		pi2Secret, pi2IP    = "pi2-root-secret-decaf", "198.18.0.22"
	)
	for _, mode := range []string{"proxy", "authoritative"} {
		t.Run(mode, func(t *testing.T) {
			l := newBridgeLab(t)
			dir := t.TempDir()
			for _, f := range []string{"ipxe/undionly.kpxe", "ipxe/ipxe.efi", "tftp/start4.elf"} {
				os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
				os.WriteFile(filepath.Join(dir, f), []byte("boot file "+f), 0o644)
			}
			pool := ""
			if mode == "authoritative" {
				pool = `range = ["198.18.0.100", "198.18.0.110"]`
			}
			path := writeInventory(t, dir, fmt.Sprintf(`
[server]
address  = "198.18.0.1"
data_dir = "data"
[dhcp]
mode      = %q
interface = "br0"
subnet    = "198.18.0.0/24"
%s
[tftp]
root     = "tftp"
ipxe_dir = "ipxe"
[http]
listen = "0.0.0.0:8080"
[iscsi]
listen   = ["198.18.0.1:3260"]
base_iqn = "iqn.2026-11.example.faults"
[[host]]
name   = "pi1"
mac    = %q
ip     = "198.18.0.21"
serial = "9ffefde1"
boot   = "san"
root   = { image = "roots/pi1.img", size = "64MiB" }
chap   = { user = "pi1", secret = %q }
[[host]]
name   = "pi2"
mac    = %q
ip     = %q
serial = "9ffefde2"
boot   = "san"
root   = { image = "roots/pi2.img", size = "64MiB" }
chap   = { user = "pi2", secret = %q }
`, mode, pool, piMAC, secret, pi2MAC, pi2IP, pi2Secret))
			n := startNetsan(t, path, l.Server, "http://198.18.0.1:8080")

			var pi, other, otherIP string
			if mode == "proxy" {
				// The LAN's own DHCP server gave these; netsan never saw them.
				pi = l.Attach("pi", piMAC, "198.18.0.21/24")
				other, otherIP = l.Attach("other", otherMAC, "198.18.0.50/24"), "198.18.0.50"
			} else {
				pi = l.Attach("pi", piMAC, "")
				if got := l.lease(pi); got != "198.18.0.21" {
					t.Fatalf("the Pi leased %s, want its fixed 198.18.0.21", got)
				}
				other = l.Attach("other", otherMAC, "")
				otherIP = l.lease(other)
			}

			tftpGet := func(ns, name string) (string, error) {
				out := filepath.Join(t.TempDir(), "got")
				msg, err := run(30*time.Second, nil, "ip", "netns", "exec", ns, "busybox", "tftp", "-g", "-r", name, "-l", out, "198.18.0.1")
				b, _ := os.ReadFile(out)
				if err != nil {
					return string(b), fmt.Errorf("%v: %s", err, msg)
				}
				return string(b), nil
			}
			httpGet := func(ns, name string) (string, string) {
				out := filepath.Join(t.TempDir(), "got")
				code, err := run(30*time.Second, nil, "ip", "netns", "exec", ns, "curl", "-s", "--max-time", "20",
					"-o", out, "-w", "%{http_code}", "http://198.18.0.1:8080/"+name)
				if err != nil {
					t.Errorf("curl %s in %s: %v %s", name, ns, err, code)
				}
				b, _ := os.ReadFile(out)
				return code, string(b)
			}

			if got, err := tftpGet(pi, cmdline); err != nil || !strings.Contains(got, "iscsi_password="+secret) {
				t.Errorf("the Pi's own cmdline.txt over TFTP: %v %q", err, got)
			}
			if code, got := httpGet(pi, cmdline); code != "200" || !strings.Contains(got, "iscsi_password="+secret) {
				t.Errorf("the Pi's own cmdline.txt over HTTP: %s %q", code, got)
			}
			got, err := tftpGet(other, cmdline)
			if err == nil || strings.Contains(got, secret) {
				t.Errorf("%s (%s) fetched the Pi's cmdline.txt over TFTP: %v %q", otherIP, otherMAC, err, got)
			} else if !strings.Contains(err.Error(), "access violation") {
				t.Errorf("TFTP refusal: %v, want an access violation", err)
			}
			if code, got := httpGet(other, cmdline); code != "403" || strings.Contains(got, secret) {
				t.Errorf("%s (%s) over HTTP: %s %q, want 403", otherIP, otherMAC, code, got)
			}
			// Files without a secret are anyone's.
			if got, err := tftpGet(other, "9ffefde1/start4.elf"); err != nil || got != "boot file tftp/start4.elf" {
				t.Errorf("a shared Pi file to another machine: %v %q", err, got)
			}

			// checkRefusals wants the two refusals (TFTP, HTTP) logged
			// after the first since bytes of the log to name host, ip and mac.
			checkRefusals := func(since int, host, ip, mac string) {
				t.Helper()
				var rs []map[string]any
				for line := range strings.Lines(n.log.String()[since:]) {
					var e map[string]any
					if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == "secret refused" {
						rs = append(rs, e)
					}
				}
				if len(rs) != 2 {
					t.Fatalf("%d \"secret refused\" lines, want 2 (TFTP, HTTP):\n%s", len(rs), n.log.String())
				}
				for _, e := range rs {
					if e["level"] != "warn" || e["host"] != host || e["ip"] != ip || e["mac"] != mac {
						t.Errorf("refusal logged as %v, want warn, host %s, ip %s, mac %s", e, host, ip, mac)
					}
				}
			}
			checkRefusals(0, "pi1", otherIP, otherMAC)

			// pi2 is off; a machine that set itself pi2's address asks
			// for pi2's file. DHCP state alone would name pi2 for it.
			since := len(n.log.String())
			impostor := l.Attach("impostor", impostorMAC, pi2IP+"/24")
			if got, err := tftpGet(impostor, "9ffefde2/cmdline.txt"); err == nil || strings.Contains(got, pi2Secret) {
				t.Errorf("%s (%s) on pi2's address fetched pi2's cmdline.txt over TFTP: %v %q", pi2IP, impostorMAC, err, got)
			}
			if code, got := httpGet(impostor, "9ffefde2/cmdline.txt"); code != "403" || strings.Contains(got, pi2Secret) {
				t.Errorf("%s (%s) on pi2's address over HTTP: %s %q, want 403", pi2IP, impostorMAC, code, got)
			}
			checkRefusals(since, "pi2", pi2IP, impostorMAC)
			n.kill()
			assertNoSecret(t, n.log.String(), secret)
			assertNoSecret(t, n.log.String(), pi2Secret)
		})
	}
}
