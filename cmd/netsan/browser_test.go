package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/netsan/netsan/httpd"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
	"github.com/netsan/netsan/timeline"
)

// The status page as chromium renders it: each cell of a table row by its
// label, with the instants of its <time>s and the values of its <data>s.
type (
	shownCell struct {
		Text   string
		Times  []string
		Values []string
	}
	shownRow = map[string]shownCell
	shown    struct {
		Title   string
		Hosts   map[string]shownRow
		Stories map[string][]shownCell
		Targets map[string]struct {
			Row  shownRow
			LUNs []shownCell
		}
		Images []shownRow
		// Layout: how wide the document is against the window, and
		// whether the tables are cards (their header rows hidden).
		ScrollWidth, InnerWidth int
		TheadDisplay            string
	}
)

// readPage opens each host's story, as a person clicking it would, and
// reads the page.
const readPage = `(() => {
	document.querySelectorAll('details').forEach(d => d.open = true);
	const cell = el => ({Text: el.innerText.trim(), Times: [...el.querySelectorAll('time')].map(x => x.dateTime),
		Values: [...el.querySelectorAll('data')].map(x => x.value)});
	const row = r => Object.fromEntries([...r.querySelectorAll(':scope > td[data-label]')].map(td => [td.dataset.label, cell(td)]));
	const out = {Title: document.title, Hosts: {}, Stories: {}, Targets: {}, Images: [],
		ScrollWidth: document.documentElement.scrollWidth, InnerWidth: window.innerWidth,
		TheadDisplay: getComputedStyle(document.querySelector('#hosts thead')).display};
	document.querySelectorAll('tr[id^="host-"]').forEach(r => out.Hosts[r.id.slice(5)] = row(r));
	document.querySelectorAll('tr[id^="story-"]').forEach(r => out.Stories[r.id.slice(6)] = [...r.querySelectorAll('li')].map(cell));
	document.querySelectorAll('tr[id^="target-"]').forEach(r => out.Targets[r.id.slice(7)] = {Row: row(r), LUNs: [...r.querySelectorAll('li[data-lun]')].map(cell)});
	document.querySelectorAll('#images tbody tr').forEach(r => out.Images.push(row(r)));
	return out;
})()`

// TestStatusPageBrowser boots a machine's worth of conversation against
// the real binary in a namespace lab — busybox udhcpc as a PXE ROM, the
// loader over TFTP, udhcpc again as iPXE, its script over HTTP, an iSCSI
// login by QEMU's initiator that writes and stays — then has chromium
// render /status, on a desk and on a phone: every step's time and what was
// sent, the bytes, the session, the target's LUN and the images are what
// /status.json says, and /status.json says what happened. Screenshots of
// both go to the test's artifacts directory (go test -artifacts keeps them;
// make test does).
func TestStatusPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace and browser test skipped in -short mode")
	}
	l := netsantest.NewLab(t, "status", "busybox", "curl", "qemu-io", "chromium")
	chromium, _ := exec.LookPath("chromium")
	l.Bridge("198.18.0.1/24")
	bin := netsantest.Binary(t)
	dir := t.TempDir()
	const (
		mac  = "52:54:00:00:00:01"
		base = "iqn.2026-11.example.test"
		iqn  = base + ":node1"
	)
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, `
[server]
address  = "198.18.0.1"
data_dir = "data"
[dhcp]
interface = "br0"
subnet = "198.18.0.0/24"
range  = ["198.18.0.100", "198.18.0.110"]
router = "198.18.0.1"
[tftp]
listen = "198.18.0.1:69"
[http]
listen = "198.18.0.1:8080"
[iscsi]
listen   = ["198.18.0.1:3260"]
base_iqn = "`+base+`"
[[image]]
name = "golden"
path = "golden/g.img"
`+nodeHost(1, `{ image = "roots/node1.img", from = "golden", size = "64MiB" }`)+"ip = \"198.18.0.11\"\n")
	netsantest.Disk(t, filepath.Join(dir, "data/golden/g.img"), 32<<20, func(w io.WriterAt) error {
		_, err := w.WriteAt([]byte(strings.Repeat("golden ", 100000)), 1<<20)
		return err
	})
	netsantest.Start(t, exec.Command("ip", "netns", "exec", l.Server, bin, "serve", "-c", path, "--log-format", "json"), netsantest.NewLog(t, "netsan"))
	web := "http://" + netsantest.Forward(t, l.Server, "198.18.0.1:8080")
	status := func() *httpd.Status {
		st, err := (&httpd.ControlClient{Base: web, HTTP: &http.Client{Timeout: 10 * time.Second}}).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	netsantest.WaitFor(t, "netsan's /status", 30*time.Second, func() bool {
		resp, err := http.Get(web + "/status.json")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	// The machine: a PXE ROM's DHCP, its loader over TFTP, iPXE's DHCP and
	// script over HTTP, then the login.
	ns := l.Attach("pc", mac, "")
	run := func(what string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
		return string(out)
	}
	script := filepath.Join(dir, "udhcpc.sh")
	writeFile(t, script, "#!/bin/sh\n[ \"$1\" = bound ] && ip addr replace \"$ip/$mask\" dev \"$interface\" && echo \"file=$boot_file\"\nexit 0\n")
	os.Chmod(script, 0o755)
	udhcpc := []string{"busybox", "udhcpc", "-f", "-q", "-n", "-t", "4", "-T", "2", "-A", "1", "-i", "eth0", "-s", script,
		"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}
	if out := run("udhcpc as a PXE ROM", udhcpc...); !strings.Contains(out, "file=undionly.kpxe") {
		t.Fatalf("the PXE ROM was not told its loader:\n%s", out)
	}
	run("the loader over TFTP", "busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", filepath.Join(dir, "undionly.kpxe"), "198.18.0.1")
	if out := run("udhcpc as iPXE", append(udhcpc, "-x", "0x4d:69505845")...); !strings.Contains(out, "file=http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe") {
		t.Fatalf("iPXE was not told its script:\n%s", out)
	}
	run("the script over HTTP", "curl", "-sSf", "-o", "/dev/null", "http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe")
	liveWrite(t, []string{"ip", "netns", "exec", ns},
		"driver=iscsi,transport=tcp,portal=198.18.0.1:3260,target="+iqn+",lun=0,initiator-name="+iqn, "write -P 0x11 0 64k")

	var st *httpd.Status
	netsantest.WaitFor(t, "node1's session in /status.json", 20*time.Second, func() bool {
		st = status()
		return len(st.Hosts) == 1 && len(st.Hosts[0].Sessions) == 1
	})
	// /status.json tells what happened.
	node := st.Hosts[0]
	b := node.LastBoot
	if b == nil {
		t.Fatal("no last boot for node1")
	}
	var steps []string
	for _, e := range b.Events {
		steps = append(steps, string(e.Step)+" "+e.Detail)
	}
	want := []string{
		"dhcp_discover pxe, Intel x86PC", "dhcp_ack 198.18.0.11, undionly.kpxe", "loader tftp undionly.kpxe",
		"dhcp_discover ipxe, Intel x86PC", "dhcp_ack 198.18.0.11, http://198.18.0.1:8080/boot/52-54-00-00-00-01.ipxe",
		"script http boot/52-54-00-00-00-01.ipxe", "iscsi_login " + iqn + " from 198.18.0.11:",
	}
	if len(steps) != len(want) {
		t.Fatalf("node1's last boot:\n %s\nwant\n %s", strings.Join(steps, "\n "), strings.Join(want, "\n "))
	}
	for i := range want {
		if !strings.HasPrefix(steps[i], want[i]) || i > 0 && b.Events[i].At.Before(b.Events[i-1].At) {
			t.Errorf("step %d: %s at %s, want %s", i, steps[i], b.Events[i].At, want[i])
		}
	}
	if node.WrittenBytes < 64<<10 || node.ReadBytes == 0 || node.Lease == nil || node.Lease.IP != "198.18.0.11" ||
		!strings.HasPrefix(node.Sessions[0].Remote, "198.18.0.11:") {
		t.Errorf("node1: written %d, read %d, lease %+v, sessions %+v", node.WrittenBytes, node.ReadBytes, node.Lease, node.Sessions)
	}
	if len(st.Targets) != 1 || st.Targets[0].IQN != iqn || st.Targets[0].Sessions != 1 || st.Targets[0].WrittenBytes != node.WrittenBytes ||
		len(st.Targets[0].LUNs) != 1 || st.Targets[0].LUNs[0].Size != 64<<20 || st.Targets[0].LUNs[0].Allocated < 700000 {
		t.Errorf("targets: %+v", st.Targets)
	}
	if len(st.Images) != 2 || st.Images[0].Kind != "golden" || st.Images[0].Size != 32<<20 || st.Images[1].Host != "node1" {
		t.Errorf("images: %+v", st.Images)
	}

	// Chromium renders the page: on a desk, then on a phone.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	artifacts := t.ArtifactDir()
	render := func(name string, setup ...chromedp.Action[chromedp.Void]) shown {
		t.Helper()
		steps := append(setup, chromedp.Navigate(web+"/status"), chromedp.WaitVisible("#hosts"))
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("chromium, %s: %v", name, err)
		}
		page, err := chromedp.Run(bctx, chromedp.Evaluate[shown](readPage))
		if err != nil {
			t.Fatalf("chromium, %s: reading the page: %v", name, err)
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("chromium, %s: screenshot: %v", name, err)
		}
		shot := filepath.Join(artifacts, "status-"+name+".png")
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of /status on a %s: %s", name, shot)
		return page
	}
	desk := render("desk")
	st = status() // what the JSON says now, beside what the page showed
	checkPage(t, "desk", desk, st)
	if desk.TheadDisplay == "none" {
		t.Error("on a desk the tables have no header row")
	}
	phone := render("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile))
	checkPage(t, "phone", phone, status())
	if phone.ScrollWidth > phone.InnerWidth || phone.InnerWidth != 390 {
		t.Errorf("on a phone the page is %d px wide in a %d px window", phone.ScrollWidth, phone.InnerWidth)
	}
	if phone.TheadDisplay != "none" {
		t.Errorf("on a phone the tables keep their header rows (display %q), not cards", phone.TheadDisplay)
	}
}

// checkPage holds what chromium showed to what /status.json says.
func checkPage(t *testing.T, where string, page shown, st *httpd.Status) {
	t.Helper()
	errorf := func(format string, args ...any) { t.Errorf(where+": "+format, args...) }
	if page.Title != "netsan "+st.Server {
		errorf("title %q", page.Title)
	}
	// at: the cell shows instant want (the time of day, in the server's
	// zone, which is the test's) and, when set, the detail.
	at := func(what string, c shownCell, want time.Time, detail string) {
		if len(c.Times) != 1 {
			errorf("%s: %q shows no time, want %s", what, c.Text, want)
			return
		}
		got, err := time.Parse(time.RFC3339Nano, c.Times[0])
		if err != nil || !got.Equal(want) || !strings.Contains(c.Text, want.Local().Format("15:04:05")) {
			errorf("%s: %q (%s), want %s", what, c.Text, c.Times[0], want)
		}
		if !strings.Contains(c.Text, detail) {
			errorf("%s: %q, want it to say %q", what, c.Text, detail)
		}
	}
	size := func(what string, c shownCell, want int64) {
		if len(c.Values) != 1 || c.Values[0] != strconv.FormatInt(want, 10) || !strings.Contains(c.Text, inventory.FormatSize(want)) {
			errorf("%s: %q %v, want %d bytes", what, c.Text, c.Values, want)
		}
	}
	for _, h := range st.Hosts {
		row, ok := page.Hosts[h.Name]
		if !ok {
			errorf("no row for host %s", h.Name)
			continue
		}
		for label, want := range map[string]string{"host": h.Name, "MAC": h.MAC, "IP": h.IP, "boot": h.Boot} {
			if row[label].Text != want {
				errorf("%s's %s: %q, want %q", h.Name, label, row[label].Text, want)
			}
		}
		if h.Lease == nil || !strings.HasPrefix(row["lease"].Text, h.Lease.IP) {
			errorf("%s's lease: %q, want %+v", h.Name, row["lease"].Text, h.Lease)
		}
		for _, step := range []timeline.Step{timeline.Discover, timeline.Ack, timeline.Loader, timeline.Script, timeline.Login} {
			label := map[timeline.Step]string{timeline.Discover: "DHCP discover", timeline.Ack: "DHCP ack", timeline.Loader: "loader",
				timeline.Script: "script", timeline.Login: "iSCSI login"}[step]
			e := h.LastBoot.First(step)
			if e == nil {
				errorf("%s: no %s in /status.json", h.Name, step)
				continue
			}
			at(h.Name+"'s "+label, row[label], e.At, e.Detail)
		}
		size(h.Name+"'s read", row["read"], int64(h.ReadBytes))
		size(h.Name+"'s written", row["written"], int64(h.WrittenBytes))
		if len(h.Sessions) != 1 || !strings.Contains(row["session now"].Text, h.Sessions[0].Remote) {
			errorf("%s's session now: %q, want %+v", h.Name, row["session now"].Text, h.Sessions)
		} else {
			at(h.Name+"'s session", row["session now"], h.Sessions[0].Since, "")
		}
		story := page.Stories[h.Name]
		if len(story) != len(h.LastBoot.Events) {
			errorf("%s's story has %d steps, /status.json %d", h.Name, len(story), len(h.LastBoot.Events))
			continue
		}
		for i, e := range h.LastBoot.Events {
			c := story[i]
			if len(c.Times) > 1 { // a repeated step also shows its last time
				c.Times = c.Times[:1]
			}
			at(fmt.Sprintf("%s's story, step %d", h.Name, i), c, e.At, e.Detail)
		}
	}
	for _, tg := range st.Targets {
		shownT, ok := page.Targets[tg.IQN]
		if !ok {
			errorf("no row for target %s", tg.IQN)
			continue
		}
		if shownT.Row["host"].Text != tg.Host || shownT.Row["sessions"].Text != strconv.Itoa(tg.Sessions) {
			errorf("target %s: host %q, sessions %q; want %q, %d", tg.IQN, shownT.Row["host"].Text, shownT.Row["sessions"].Text, tg.Host, tg.Sessions)
		}
		size(tg.IQN+" read", shownT.Row["read"], int64(tg.ReadBytes))
		size(tg.IQN+" written", shownT.Row["written"], int64(tg.WrittenBytes))
		if len(shownT.LUNs) != len(tg.LUNs) {
			errorf("target %s: %d LUNs shown, %d in /status.json", tg.IQN, len(shownT.LUNs), len(tg.LUNs))
			continue
		}
		for i, l := range tg.LUNs {
			c := shownT.LUNs[i]
			if fmt.Sprint(c.Values) != fmt.Sprint([]string{strconv.FormatInt(l.Size, 10), strconv.FormatInt(l.Allocated, 10)}) ||
				!strings.HasPrefix(c.Text, fmt.Sprintf("LUN %d: %s, %s allocated", l.Number, inventory.FormatSize(l.Size), inventory.FormatSize(l.Allocated))) ||
				!strings.Contains(c.Text, l.Backing) {
				errorf("target %s LUN %d: %q %v, want %+v", tg.IQN, l.Number, c.Text, c.Values, l)
			}
		}
	}
	if len(page.Images) != len(st.Images) {
		errorf("%d images shown, %d in /status.json", len(page.Images), len(st.Images))
		return
	}
	for i, img := range st.Images {
		row := page.Images[i]
		if row["image"].Text != img.Name || row["kind"].Text != img.Kind || row["host"].Text != img.Host || row["backing"].Text != img.Backing {
			errorf("image %d: %v, want %+v", i, row, img)
		}
		size(fmt.Sprintf("image %d size", i), row["size"], img.Size)
		size(fmt.Sprintf("image %d allocated", i), row["allocated"], img.Allocated)
	}
}
