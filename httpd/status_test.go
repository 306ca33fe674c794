package httpd

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// TestStatusBoot: a host's script fetched over HTTP is a step of its boot,
// beside those the other services record (by MAC, and by initiator for
// the target); /status.json has the last boot with the first time of each
// step and the root target's bytes, the page shows each in its column, and
// the targets and images the sources give, sizes in bytes underneath.
func TestStatusBoot(t *testing.T) {
	events := timeline.New(0, 0)
	fx := start(t, zap.NewNop(), func(s *Server) {
		s.Events = events
		s.Status.Targets = func(inv *inventory.Inventory) []Target {
			return []Target{
				{IQN: "iqn.2026-11.example.lab:node1", Host: "node1", Sessions: 1, ReadBytes: 3 << 20, WrittenBytes: 12345,
					LUNs: []LUN{{Number: 0, Backing: inv.Hosts[0].Root.Image, Size: 1 << 30, Allocated: 5 << 20}}},
				{IQN: "iqn.2026-11.example.lab:data", LUNs: []LUN{{Number: 3, Backing: "rbd:rbd/gone", Size: -1, Allocated: -1, ReadOnly: true}}},
			}
		}
		s.Status.Images = func(*inventory.Inventory) []Image {
			return []Image{{Name: "debian12", Kind: "golden", Backing: "/srv/golden/debian12.img", Size: 8 << 30, Allocated: 1536 << 20}}
		}
	})
	const mac, initiator = "52:54:00:00:00:01", "iqn.2026-11.example.lab:node1"
	events.Record(mac, timeline.Discover, "pxe, Intel x86PC")
	events.Record(mac, timeline.Ack, "198.18.0.11, undionly.kpxe")
	if _, err := curl(t, "--fail", "-o", "/dev/null", fx.base+"/boot/52-54-00-00-00-01.ipxe"); err != nil {
		t.Fatal(err)
	}
	events.Record(initiator, timeline.Login, initiator+" from 198.18.0.11:40000")
	events.Record("52:54:00:00:00:03", timeline.Discover, "other") // desk1's

	st := fx.status(t)
	node1, desk1 := st.Hosts[0], st.Hosts[1]
	b := node1.LastBoot
	if b == nil || len(b.Events) != 4 {
		t.Fatalf("node1's last boot: %+v", b)
	}
	if e := b.First(timeline.Script); e == nil || e.Detail != "http boot/52-54-00-00-00-01.ipxe" {
		t.Errorf("node1's script step: %+v", e)
	}
	for i, step := range []timeline.Step{timeline.Discover, timeline.Ack, timeline.Script, timeline.Login} {
		if b.Events[i].Step != step || !b.At(step).Equal(b.Events[i].At) {
			t.Errorf("event %d: %+v, want %s (steps %v)", i, b.Events[i], step, b.Steps)
		}
	}
	if !b.At(timeline.Loader).IsZero() {
		t.Errorf("a loader step nobody recorded: %v", b.Steps)
	}
	if node1.ReadBytes != 3<<20 || node1.WrittenBytes != 12345 {
		t.Errorf("node1's bytes %d/%d, want its target's", node1.ReadBytes, node1.WrittenBytes)
	}
	if desk1.LastBoot == nil || len(desk1.LastBoot.Events) != 1 || desk1.ReadBytes != 0 {
		t.Errorf("desk1: %+v", desk1)
	}
	if len(st.Targets) != 2 || st.Targets[1].LUNs[0].Size != -1 || len(st.Images) != 1 || st.Images[0].Allocated != 1536<<20 {
		t.Errorf("targets %+v, images %+v", st.Targets, st.Images)
	}

	page, err := curl(t, "--fail", "-H", "Accept: text/html", fx.base+"/status")
	if err != nil {
		t.Fatal(err)
	}
	clock := func(ts time.Time) string {
		return ts.Format(time.RFC3339Nano) + `">` + ts.Local().Format("15:04:05") + "</time>"
	}
	for _, want := range []string{
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<td data-label="DHCP discover"><time datetime="` + clock(b.At(timeline.Discover)) + `<small>pxe, Intel x86PC</small></td>`,
		`<td data-label="DHCP ack"><time datetime="` + clock(b.At(timeline.Ack)) + `<small>198.18.0.11, undionly.kpxe</small></td>`,
		`<td data-label="loader">—</td>`,
		`<td data-label="script"><time datetime="` + clock(b.At(timeline.Script)) + `<small>http boot/52-54-00-00-00-01.ipxe</small></td>`,
		`<td data-label="iSCSI login"><time datetime="` + clock(b.At(timeline.Login)),
		`<td data-label="read"><data value="3145728">3.0MiB</data></td><td data-label="written"><data value="12345">12.1KiB</data></td>`,
		`<summary>last boot: 4 steps from <time datetime="` + clock(b.Start),
		`<li data-lun="0">LUN 0: <data value="1073741824">1.0GiB</data>, <data value="5242880">5.0MiB</data> allocated<small>`,
		`<li data-lun="3">LUN 3: —, — allocated, read-only<small>rbd:rbd/gone</small></li>`,
		`<td data-label="image">debian12</td><td data-label="kind">golden</td><td data-label="host"></td><td data-label="size"><data value="8589934592">8.0GiB</data></td><td data-label="allocated"><data value="1610612736">1.5GiB</data></td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %s", want)
		}
	}
	// The appliance has no internet: nothing is fetched from elsewhere.
	for _, bad := range []string{"src=", `href="http`, `href="//`, "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page loads something (%s)", bad)
		}
	}
}
