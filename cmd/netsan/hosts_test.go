package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

const byHand = inventorytest.ByHand

// handLab writes byHand (mode 0640) beside a golden image and returns its
// path.
func handLab(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeDisk(t, filepath.Join(dir, "data/golden/base.img"), 8<<20, []byte("golden"), 0)
	cfg := filepath.Join(dir, "netsan.toml")
	if err := os.WriteFile(cfg, []byte(byHand), 0o640); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runNetsanIn(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestHostsAddRemove: hosts add puts the stanza after the last host, with
// the first free address outside the pool, every other byte of the file
// kept (and its mode); the result passes check; hosts rm gives the file
// back byte for byte. An edit that check refuses writes nothing and names
// the problem.
func TestHostsAddRemove(t *testing.T) {
	cfg := handLab(t)
	code, out, errs := runNetsanIn("hosts", "add", "new1", "--mac", "52-54-00-00-00-0A", "--from", "base", "-c", cfg)
	stanza := "[[host]]\nname = \"new1\"\nmac  = \"52:54:00:00:00:0a\"\nip   = \"198.18.0.102\"\nboot = \"san\"\nroot = { image = \"roots/new1.img\", from = \"base\" }\n"
	if code != 0 || !strings.Contains(out, stanza) {
		t.Fatalf("hosts add: exit %d\n%s%s\nwant the stanza\n%s", code, out, errs, stanza)
	}
	cut := strings.Index(byHand, "secret = \"0123456789abcdef\"\n") + len("secret = \"0123456789abcdef\"\n")
	if got := readFile(t, cfg); got != byHand[:cut]+"\n"+stanza+byHand[cut:] {
		t.Fatalf("after hosts add the file is\n%s", got)
	}
	if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after hosts add: %v, %v", fi.Mode(), err)
	}
	if code, out, _ := runNetsanIn("check", "-c", cfg); code != 0 || !strings.Contains(out, "OK (hosts: 3") {
		t.Errorf("check after hosts add: exit %d\n%s", code, out)
	}
	if code, out, _ := runNetsanIn("hosts", "-c", cfg); code != 0 || !strings.Contains(out, "new1  52:54:00:00:00:0a  198.18.0.102  san") {
		t.Errorf("hosts after hosts add: exit %d\n%s", code, out)
	}

	added := readFile(t, cfg)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hosts", "add", "new2", "--mac", "52:54:00:00:00:01"}, ":46:1: mac 52:54:00:00:00:01 is already used by host desk"},
		{[]string{"hosts", "add", "new1", "--mac", "52:54:00:00:00:02"}, `:45:1: host name "new1" is already used by host new1`},
		{[]string{"hosts", "add", "new2", "--mac", "52:54:00:00:00:02", "--from", "nope"}, `:49:36: root.from "nope": no [[image]] has that name`},
		{[]string{"hosts", "add", "new2", "--mac", "52:54:00:00:00:02", "--ip", "198.18.0.50"}, "ip 198.18.0.50 is inside the dynamic range"},
		{[]string{"hosts", "add", "new2", "--mac", "52:54:00:00:00:02", "--size", "lots"}, `bad size "lots"`},
		{[]string{"hosts", "rm", "nobody"}, `no host "nobody" in ` + cfg + "; nothing written"},
	} {
		code, out, errs := runNetsanIn(append(tc.args, "-c", cfg)...)
		if code != 1 || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "nothing written") || out != "" {
			t.Errorf("netsan %v: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and %q", tc.args, code, out, errs, tc.want)
		}
		if readFile(t, cfg) != added {
			t.Fatalf("netsan %v changed the file", tc.args)
		}
	}
	// A golden image that is gone: check's machine half refuses the
	// result, --offline does not look.
	golden := filepath.Join(filepath.Dir(cfg), "data/golden/base.img")
	if err := os.Rename(golden, golden+".away"); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runNetsanIn("hosts", "add", "new2", "--mac", "52:54:00:00:00:02", "--from", "base", "-c", cfg); code != 1 || !strings.Contains(errs, "host new2: root") || readFile(t, cfg) != added {
		t.Errorf("hosts add with the golden image gone: exit %d\n%s", code, errs)
	}
	if err := os.Rename(golden+".away", golden); err != nil {
		t.Fatal(err)
	}

	code, out, errs = runNetsanIn("hosts", "rm", "new1", "-c", cfg)
	if code != 0 || !strings.Contains(out, "removed host new1") {
		t.Fatalf("hosts rm: exit %d\n%s%s", code, out, errs)
	}
	if got := readFile(t, cfg); got != byHand {
		t.Fatalf("hosts rm of the host hosts add added did not give the file back:\n%s", got)
	}
	if code, _, errs := runNetsanIn("hosts", "rm", "desk", "-c", cfg); code != 0 || readFile(t, cfg) != strings.Replace(byHand, "# the PC under the desk\n# (keep it)\n[[host]]\nname=\"desk\"\nmac = \"52:54:00:00:00:01\"\nip = \"198.18.0.101\"\n  boot = \"local\"   # boots from its disk\n# chap = { user = \"x\", secret = \"…\" }\n\n", "", 1) {
		t.Errorf("hosts rm desk: exit %d %s, file:\n%s", code, errs, readFile(t, cfg))
	}
}

// TestHostsRemoveRoot: a removed host's root stays on disk unless
// --delete-root.
func TestHostsRemoveRoot(t *testing.T) {
	cfg := handLab(t)
	root := filepath.Join(filepath.Dir(cfg), "data/roots/new1.img")
	for _, keep := range []bool{true, false} {
		if code, out, errs := runNetsanIn("hosts", "add", "new1", "--mac", "52:54:00:00:00:0a", "--size", "1MiB", "-c", cfg); code != 0 {
			t.Fatalf("hosts add: %s%s", out, errs)
		}
		writeDisk(t, root, 1<<20, []byte("root"), 0)
		args := []string{"hosts", "rm", "new1", "-c", cfg}
		if !keep {
			args = append(args, "--delete-root")
		}
		code, out, errs := runNetsanIn(args...)
		_, err := os.Stat(root)
		if code != 0 || keep != (err == nil) {
			t.Errorf("netsan %v: exit %d %s%s; root there: %v", args, code, out, errs, err == nil)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHostsAddLive: a running serve takes up what hosts add writes, and
// what hosts rm removes, without a restart: the new host's boot script
// and its line in /status.json.
func TestHostsAddLive(t *testing.T) {
	bin := netsantest.Binary(t)
	httpPort := netsantest.FreePort(t, "tcp")
	path := loopbackInventory(t, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n[iscsi]\nlisten = [\"127.0.0.1:%d\"]\nbase_iqn = \"iqn.2026-11.example.test\"\n",
		httpPort, netsantest.FreePort(t, "tcp")))
	log := netsantest.NewLog(t, "netsan")
	p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)
	get := func(p string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, p))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	hosts := func() []string {
		var st struct{ Hosts []struct{ Name, MAC string } }
		if err := json.Unmarshal([]byte(get("/status.json")), &st); err != nil {
			return nil
		}
		names := []string{}
		for _, h := range st.Hosts {
			names = append(names, h.Name+" "+h.MAC)
		}
		return names
	}
	netsantest.WaitFor(t, "http up", 20*time.Second, func() bool { return hosts() != nil })
	if script := get("/boot/52-54-00-00-00-07.ipxe"); !strings.Contains(script, "not in the inventory") {
		t.Fatalf("script of an unknown MAC:\n%s", script)
	}
	hostsCmd := func(args ...string) {
		t.Helper()
		out, err := exec.Command(bin, append(append([]string{"hosts"}, args...), "-c", path)...).CombinedOutput()
		if err != nil {
			t.Fatalf("netsan hosts %v: %v\n%s", args, err, out)
		}
	}
	hostsCmd("add", "pc7", "--mac", "52:54:00:00:00:07", "--boot", "shell")
	netsantest.WaitFor(t, "pc7 in /status.json", 20*time.Second, func() bool { return fmt.Sprint(hosts()) == "[pc7 52:54:00:00:00:07]" })
	if script := get("/boot/52-54-00-00-00-07.ipxe"); strings.Contains(script, "not in the inventory") || !strings.Contains(script, "shell") {
		t.Errorf("pc7's script after hosts add:\n%s", script)
	}
	hostsCmd("rm", "pc7")
	netsantest.WaitFor(t, "pc7 gone from /status.json", 20*time.Second, func() bool { h := hosts(); return h != nil && len(h) == 0 })
	if !strings.Contains(log.String(), "inventory changed: reloading") {
		t.Errorf("serve did not log the reloads:\n%s", log)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
}

// TestHostsSeenLive: a PXE client that is not in the inventory asks a
// running serve for an address; hosts seen lists it (MAC, kind,
// architecture, vendor class, the address leased) with the hosts add
// command that lets it boot; that command, run as printed, adds it, and
// it is no longer unknown.
func TestHostsSeenLive(t *testing.T) {
	bin := netsantest.Binary(t)
	httpPort, dhcpPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "udp")
	path := loopbackInventory(t, fmt.Sprintf(`[dhcp]
listen = "127.0.0.1:%d"
subnet = "127.0.0.0/24"
range  = ["127.0.0.100", "127.0.0.199"]
[http]
listen = "127.0.0.1:%d"
[iscsi]
enabled = false
base_iqn = "iqn.2026-11.example.test"
`, dhcpPort, httpPort))
	log := netsantest.NewLog(t, "netsan")
	p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)
	seen := func() string {
		out, err := exec.Command(bin, "hosts", "seen", "-c", path).CombinedOutput()
		if err != nil {
			return err.Error() + ": " + string(out)
		}
		return string(out)
	}
	netsantest.WaitFor(t, "serve up", 20*time.Second, func() bool { return strings.HasPrefix(seen(), "no machine") })

	// DISCOVER and REQUEST of a UEFI PXE client, unicast to the server's
	// socket (the replies go to the broadcast address, unheard here).
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: dhcpPort})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mac := net.HardwareAddr{0x02, 0, 0, 0xab, 0xcd, 0xef}
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	disc, err := dhcpv4.NewDiscovery(mac, pxe...)
	if err != nil {
		t.Fatal(err)
	}
	req, err := dhcpv4.NewDiscovery(mac, append(pxe, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(127, 0, 0, 100))))...)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*dhcpv4.DHCPv4{disc, req} {
		if _, err := conn.Write(m.ToBytes()); err != nil {
			t.Fatal(err)
		}
	}
	var out string
	netsantest.WaitFor(t, "the PC in hosts seen", 20*time.Second, func() bool { out = seen(); return strings.Contains(out, "127.0.0.100") })
	t.Logf("netsan hosts seen:\n%s", out)
	for _, want := range []string{
		"02:00:00:ab:cd:ef  pxe   EFI x86-64  PXEClient:Arch:00007:UNDI:003016",
		"netsan hosts add host-abcdef --mac 02:00:00:ab:cd:ef --ip 127.0.0.2 --boot menu\n[[host]]\nname = \"host-abcdef\"\nmac  = \"02:00:00:ab:cd:ef\"\nip   = \"127.0.0.2\"\nboot = \"menu\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("hosts seen lacks %q:\n%s", want, out)
		}
	}
	add := strings.Fields("hosts add host-abcdef --mac 02:00:00:ab:cd:ef --ip 127.0.0.2 --boot menu")
	if out, err := exec.Command(bin, append(add, "-c", path)...).CombinedOutput(); err != nil {
		t.Fatalf("the command hosts seen printed: %v\n%s", err, out)
	}
	netsantest.WaitFor(t, "the PC known", 20*time.Second, func() bool { return strings.HasPrefix(seen(), "no machine") })
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
}
