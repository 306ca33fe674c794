package httpd

import (
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// The status page is for a person who keeps it open, on a desk or on a
// phone in the server room: plain HTML and CSS, nothing fetched from
// elsewhere (the appliance has no internet), a refresh every 10 s. Below
// 700 px the tables turn into cards, each cell under its label. Every
// value shown is also in /status.json; times carry their instant in
// <time datetime>, sizes their bytes in <data value>.

// clock shows t as the time of day (and the date when not today), in the
// server's zone; the zero time as a dash.
func clock(t time.Time) template.HTML {
	if t.IsZero() {
		return "—"
	}
	layout := "15:04:05"
	if now := time.Now(); t.Local().YearDay() != now.YearDay() || t.Year() != now.Year() {
		layout = "Jan 2 15:04:05"
	}
	return template.HTML(fmt.Sprintf(`<time datetime="%s">%s</time>`, t.Format(time.RFC3339Nano), t.Local().Format(layout)))
}

// size shows n bytes as inventory.FormatSize does, with the exact figure in <data value>;
// a negative n (unknown) as a dash.
func size(n int64) template.HTML {
	if n < 0 {
		return "—"
	}
	return template.HTML(fmt.Sprintf(`<data value="%d">%s</data>`, n, inventory.FormatSize(n)))
}

// stepNames are the steps of a boot as the page names them; the hosts
// table has a column for each of summarySteps.
var (
	stepNames = map[timeline.Step]string{
		timeline.Discover: "DHCP discover", timeline.Ack: "DHCP ack", timeline.Nak: "DHCP nak",
		timeline.Loader: "loader", timeline.Script: "script", timeline.File: "file", timeline.Login: "iSCSI login",
	}
	summarySteps = []timeline.Step{timeline.Discover, timeline.Ack, timeline.Loader, timeline.Script, timeline.Login}
)

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"clock":  clock,
	"bytes":  size,
	"ubytes": func(n uint64) template.HTML { return size(int64(n)) },
	"steps":  func() []timeline.Step { return summarySteps },
	"since":  func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"until":  func(t time.Time) string { return time.Until(t).Round(time.Second).String() },
	"zone":   func(t time.Time) string { return t.Local().Format("MST") },
	"step":   func(s timeline.Step) string { return stepNames[s] },
	"sorted": func(ss []Session) []Session {
		return slices.SortedFunc(slices.Values(ss), func(a, b Session) int { return strings.Compare(a.Target, b.Target) })
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>netsan {{.Server}}</title>
<style>
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0 auto;max-width:1500px;padding:0 12px 24px}
h1{font-size:1.4em;margin:12px 0 0}h2{font-size:1.15em;margin:24px 0 6px}
header p,nav{margin:4px 0;color:#555}
a{color:#0b57d0}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}
td{overflow-wrap:break-word}
small{display:block;color:#666}
pre{white-space:pre-wrap;margin:0;font-size:.9em}
ul.luns{list-style:none;margin:0;padding:0}
tr.story td{border-bottom:2px solid #ccc}
details ol{margin:4px 0;padding-left:1.5em}
.none{color:#888}
.warn{color:#b3261e;font-weight:600}
@media (max-width:700px){
 table.cards thead{display:none}
 table.cards tr{display:block;border:1px solid #ccc;border-radius:6px;margin:8px 0;padding:4px 0}
 table.cards tr.story{margin-top:-9px;border-top:0;border-radius:0 0 6px 6px}
 table.cards td{display:block;border:0;padding:2px 8px;overflow-wrap:anywhere}
 table.cards td[data-label]::before{content:attr(data-label);display:inline-block;min-width:8em;color:#666}
 table.cards td[data-label] small{margin-left:8em}
}
</style>
</head><body>
<header><h1>netsan {{.Server}}</h1>
<p>{{clock .Time}} {{zone .Time}} · refreshed every 10 s · <a href="/status.json">JSON</a> · <a href="/metrics">metrics</a></p>
<nav>{{if .Cluster}}<a href="#gateways">gateways</a> · {{end}}<a href="#hosts">hosts</a> · {{if .Seen}}<a href="#seen">seen</a> · {{end}}<a href="#targets">targets</a> · <a href="#images">images</a> · <a href="#leases">leases</a> · <a href="#sessions">sessions</a></nav>
</header>
{{with .Cluster}}<section id="gateways"><h2>Gateways</h2>
<p>{{.Leader}} leads since {{.Since.Format "2006-01-02 15:04:05 MST"}} · this page from {{.Gateway}} · {{.Takeovers}} takeovers · {{.Renewals}} lease renewals</p>
<table class="cards"><thead><tr><th>gateway</th><th>role</th><th>Ceph client</th><th>last seen</th><th>inventory</th></tr></thead><tbody>
{{range .Gateways}}<tr><td data-label="gateway">{{.Name}}</td><td data-label="role">{{if .Leader}}leader{{else}}standby{{end}}</td><td data-label="Ceph client">{{.Client}}</td><td data-label="last seen">{{since .Seen}} ago</td><td data-label="inventory">{{if .Differs}}<b class="warn">differs</b>{{else}}same{{end}}</td></tr>
{{end}}</tbody></table></section>
{{end}}<section id="hosts"><h2>Hosts</h2>
{{if .Hosts}}<table class="cards"><thead><tr><th>host</th><th>MAC</th><th>IP</th><th>boot</th><th>lease</th><th>DHCP discover</th><th>DHCP ack</th><th>loader</th><th>script</th><th>iSCSI login</th><th>read</th><th>written</th><th>session now</th></tr></thead><tbody>
{{range $h := .Hosts}}<tr id="host-{{.Name}}"><td data-label="host">{{.Name}}</td><td data-label="MAC">{{.MAC}}</td><td data-label="IP">{{.IP}}</td><td data-label="boot">{{.Boot}}</td>
<td data-label="lease">{{with .Lease}}{{.IP}}<small>{{until .Expires}} left</small>{{else}}<span class="none">none</span>{{end}}</td>
{{- $b := .LastBoot}}
{{- range $step := steps}}
<td data-label="{{step $step}}">{{with $b}}{{with .First $step}}{{clock .At}}{{if .Detail}}<small>{{.Detail}}</small>{{end}}{{else}}—{{end}}{{else}}—{{end}}</td>
{{- end}}
<td data-label="read">{{if .Target}}{{ubytes .ReadBytes}}{{else}}—{{end}}</td><td data-label="written">{{if .Target}}{{ubytes .WrittenBytes}}{{else}}—{{end}}</td>
<td data-label="session now">{{range .Sessions}}{{.Remote}}<small>since {{clock .Since}}</small>{{else}}<span class="none">none</span>{{end}}</td></tr>
{{with .LastBoot}}<tr class="story" id="story-{{$h.Name}}"><td colspan="13"><details><summary>last boot: {{len .Events}} steps from {{clock .Start}}</summary><ol>
{{range .Events}}<li>{{clock .At}} {{step .Step}}{{if .Detail}}: {{.Detail}}{{end}}{{if gt .Count 1}} ×{{.Count}}, the last at {{clock .Last}}{{end}}</li>
{{end}}</ol></details></td></tr>
{{end}}{{end}}</tbody></table>
{{else}}<p class="none">No [[host]] in the inventory.</p>
{{end}}</section>
{{with .Seen}}<section id="seen"><h2>Machines seen, not in the inventory</h2>
<table class="cards"><thead><tr><th>MAC</th><th>kind</th><th>arch</th><th>vendor class</th><th>first seen</th><th>last seen</th><th>IP</th><th>to let it boot, add</th></tr></thead><tbody>
{{range .}}<tr><td data-label="MAC">{{.MAC}}</td><td data-label="kind">{{.Kind}}</td><td data-label="arch">{{.Arch}}</td><td data-label="vendor class">{{.VendorClass}}</td><td data-label="first seen">{{since .FirstSeen}} ago</td><td data-label="last seen">{{since .LastSeen}} ago</td><td data-label="IP">{{.IP}}</td><td><pre>{{.Stanza}}</pre></td></tr>
{{end}}</tbody></table></section>
{{end}}<section id="targets"><h2>iSCSI targets</h2>
{{if .Targets}}<table class="cards"><thead><tr><th>target</th><th>host</th><th>LUNs</th><th>sessions</th><th>read</th><th>written</th></tr></thead><tbody>
{{range .Targets}}<tr id="target-{{.IQN}}"><td data-label="target">{{.IQN}}</td><td data-label="host">{{.Host}}</td>
<td data-label="LUNs"><ul class="luns">{{range .LUNs}}<li data-lun="{{.Number}}">LUN {{.Number}}: {{bytes .Size}}, {{bytes .Allocated}} allocated{{if .ReadOnly}}, read-only{{end}}<small>{{.Backing}}</small></li>{{end}}</ul></td>
<td data-label="sessions">{{.Sessions}}</td><td data-label="read">{{ubytes .ReadBytes}}</td><td data-label="written">{{ubytes .WrittenBytes}}</td></tr>
{{end}}</tbody></table>
{{else}}<p class="none">No targets.</p>
{{end}}</section>
<section id="images"><h2>Images</h2>
{{if .Images}}<table class="cards"><thead><tr><th>image</th><th>kind</th><th>host</th><th>size</th><th>allocated</th><th>backing</th></tr></thead><tbody>
{{range .Images}}<tr><td data-label="image">{{.Name}}</td><td data-label="kind">{{.Kind}}</td><td data-label="host">{{.Host}}</td><td data-label="size">{{bytes .Size}}</td><td data-label="allocated">{{bytes .Allocated}}</td><td data-label="backing">{{.Backing}}</td></tr>
{{end}}</tbody></table>
{{else}}<p class="none">No golden images or root images.</p>
{{end}}</section>
<section id="leases"><h2>Leases</h2>
{{if .Leases}}<table class="cards"><thead><tr><th>MAC</th><th>IP</th><th>host</th><th>expires in</th></tr></thead><tbody>
{{range .Leases}}<tr><td data-label="MAC">{{.MAC}}</td><td data-label="IP">{{.IP}}</td><td data-label="host">{{.Host}}</td><td data-label="expires in">{{until .Expires}}</td></tr>
{{end}}</tbody></table>
{{else}}<p class="none">No leases.</p>
{{end}}</section>
<section id="sessions"><h2>iSCSI sessions</h2>
{{if .Sessions}}<table class="cards"><thead><tr><th>initiator</th><th>target</th><th>from</th><th>since</th><th>read</th><th>written</th></tr></thead><tbody>
{{range sorted .Sessions}}<tr><td data-label="initiator">{{.Initiator}}</td><td data-label="target">{{.Target}}</td><td data-label="from">{{.Remote}}</td><td data-label="since">{{clock .Since}}</td><td data-label="read">{{ubytes .ReadBytes}}</td><td data-label="written">{{ubytes .WrittenBytes}}</td></tr>
{{end}}</tbody></table>
{{else}}<p class="none">No sessions.</p>
{{end}}</section>
</body></html>
`))
