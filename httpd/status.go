package httpd

import (
	"encoding/json"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
)

// StatusSource is where /status reads the state of the other services.
// cmd/netsan fills it from dhcpd and iscsi, which httpd does not import.
type StatusSource struct {
	Leases   func() []Lease
	Sessions func() []Session
	// Cluster is nil on a single box.
	Cluster func() *Cluster
	// Seen lists the machines that asked to boot and are not in the
	// inventory; /status adds the [[host]] for each.
	Seen func() []Seen
}

// Seen is a machine that asked to boot but is not in the inventory, as
// /status shows it, with the [[host]] that would let it boot.
type Seen struct {
	MAC         string    `json:"mac"`
	Kind        string    `json:"kind"` // pxe, ipxe or pi
	Arch        string    `json:"arch"`
	VendorClass string    `json:"vendor_class"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	IP          string    `json:"ip"` // the address leased to it; "" when none
	// Host is the [[host]] that check accepts for it, with those of every
	// other machine seen added too (bootmenu's Suggest); Stanza is its TOML.
	Host   inventory.HostStanza `json:"host"`
	Stanza string               `json:"stanza"`
}

// Cluster is the gateways of a [cluster] as /status shows them.
type Cluster struct {
	Gateway     string    `json:"gateway"` // the one answering
	Leader      string    `json:"leader"`
	LeaderSince time.Time `json:"leader_since"`
	Renewals    uint64    `json:"lease_renewals"`
	Takeovers   uint64    `json:"takeovers"`
	Gateways    []Gateway `json:"gateways"`
}

// Gateway is one gateway of a [cluster].
type Gateway struct {
	Name     string    `json:"name"`
	Leader   bool      `json:"leader"`
	Client   string    `json:"ceph_client"` // its Ceph client address, which fencing blocklists
	LastSeen time.Time `json:"last_seen"`
	// InventoryDiffers: its inventory file is not the one this gateway
	// serves; after a failover it would serve another.
	InventoryDiffers bool `json:"inventory_differs"`
}

// Lease is one DHCP lease as /status shows it.
type Lease struct {
	MAC     string    `json:"mac"`
	IP      string    `json:"ip"`
	Host    string    `json:"host,omitempty"` // inventory host name, if it is one
	Expires time.Time `json:"expires"`
}

// Session is one iSCSI session as /status shows it and /status.json
// serves it: the one description of a live session outside the target
// (cmd/netsan fills it from iscsi.SessionInfo; ControlClient reads it back).
type Session struct {
	Initiator    string    `json:"initiator"` // initiator IQN
	Target       string    `json:"target"`    // target IQN
	Remote       string    `json:"remote"`    // initiator address:port
	Since        time.Time `json:"since"`
	ReadBytes    uint64    `json:"read_bytes"`
	WrittenBytes uint64    `json:"written_bytes"`
}

// String names the initiator and where it connects from.
func (s Session) String() string {
	if s.Remote == "" {
		return s.Initiator
	}
	return s.Initiator + " from " + s.Remote
}

// HostStatus is an inventory host with what the services know of it.
type HostStatus struct {
	Name      string    `json:"name"`
	MAC       string    `json:"mac"`
	IP        string    `json:"ip"`
	Boot      string    `json:"boot"`
	Target    string    `json:"target,omitempty"` // its root's target; "" without a root
	Initiator string    `json:"initiator"`
	Root      string    `json:"root,omitempty"`
	Lease     *Lease    `json:"lease,omitempty"`
	Sessions  []Session `json:"sessions"`
}

// Status is the /status document.
type Status struct {
	Server   string       `json:"server"`
	Time     time.Time    `json:"time"`
	Cluster  *Cluster     `json:"cluster,omitempty"`
	Hosts    []HostStatus `json:"hosts"`
	Leases   []Lease      `json:"leases"`
	Sessions []Session    `json:"sessions"`
	Seen     []Seen       `json:"seen"`
}

func (s *Server) snapshot() Status {
	inv := s.resolver.Inventory()
	st := Status{Server: inv.Server.Address.String(), Time: time.Now().UTC(),
		Hosts: []HostStatus{}, Leases: []Lease{}, Sessions: []Session{}, Seen: []Seen{}}
	if s.Status.Leases != nil {
		st.Leases = append(st.Leases, s.Status.Leases()...)
	}
	if s.Status.Sessions != nil {
		st.Sessions = append(st.Sessions, s.Status.Sessions()...)
	}
	if s.Status.Cluster != nil {
		st.Cluster = s.Status.Cluster()
	}
	if s.Status.Seen != nil {
		st.Seen = s.seen(s.Status.Seen())
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		hs := HostStatus{
			Name: h.Name, MAC: h.MAC.String(), IP: h.IP.String(), Boot: h.Boot,
			Initiator: inv.InitiatorIQN(h), Sessions: []Session{},
		}
		// Only a root makes a target (cmd/netsan's iscsiConfig): a host
		// without one has nothing to log in to.
		if h.Root != nil {
			hs.Root, hs.Target = h.Root.Path(), inv.TargetIQN(h)
		}
		for j := range st.Leases {
			if strings.EqualFold(st.Leases[j].MAC, hs.MAC) {
				hs.Lease = &st.Leases[j]
			}
		}
		for _, ss := range st.Sessions {
			if hs.Target != "" && ss.Target == hs.Target || ss.Initiator == hs.Initiator {
				hs.Sessions = append(hs.Sessions, ss)
			}
		}
		st.Hosts = append(st.Hosts, hs)
	}
	return st
}

// seen gives each machine seen its [[host]].
func (s *Server) seen(ms []Seen) []Seen {
	out := make([]Seen, 0, len(ms))
	var macs []net.HardwareAddr
	for _, m := range ms {
		if mac, err := net.ParseMAC(m.MAC); err == nil {
			out = append(out, m)
			macs = append(macs, mac)
		}
	}
	for i, h := range s.resolver.Suggest(macs) {
		out[i].Host, out[i].Stanza = h, h.String()
	}
	return out
}

// wantsJSON: ?format=json, /status.json, or an Accept that prefers JSON to HTML.
func wantsJSON(r *http.Request) bool {
	if r.URL.Path == "/status.json" || r.URL.Query().Get("format") == "json" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.snapshot()
	w.Header().Set("Cache-Control", "no-store")
	var err error
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(st)
	} else {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err = statusPage.Execute(w, st)
	}
	if err != nil {
		s.log.Warn("status", zap.Error(err))
	}
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"until": func(t time.Time) string { return time.Until(t).Round(time.Second).String() },
	"sorted": func(ss []Session) []Session {
		return slices.SortedFunc(slices.Values(ss), func(a, b Session) int { return strings.Compare(a.Target, b.Target) })
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>netsan {{.Server}}</title>
<meta http-equiv="refresh" content="10">
<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style>
</head><body>
<h1>netsan {{.Server}}</h1>
<p>{{.Time.Format "2006-01-02 15:04:05 MST"}} · <a href="/status?format=json">JSON</a> · <a href="/metrics">metrics</a></p>
{{with .Cluster}}<h2>Gateways</h2>
<p>{{.Leader}} leads since {{.LeaderSince.Format "2006-01-02 15:04:05 MST"}} · this page from {{.Gateway}} · {{.Takeovers}} takeovers · {{.Renewals}} lease renewals</p>
<table><tr><th>gateway</th><th>role</th><th>Ceph client</th><th>last seen</th><th>inventory</th></tr>
{{range .Gateways}}<tr><td>{{.Name}}</td><td>{{if .Leader}}leader{{else}}standby{{end}}</td><td>{{.Client}}</td><td>{{since .LastSeen}} ago</td><td>{{if .InventoryDiffers}}<b>differs</b>{{else}}same{{end}}</td></tr>
{{end}}</table>
{{end}}<h2>Hosts</h2>
<table><tr><th>name</th><th>MAC</th><th>IP</th><th>boot</th><th>target</th><th>lease</th><th>sessions</th></tr>
{{range .Hosts}}<tr><td>{{.Name}}</td><td>{{.MAC}}</td><td>{{.IP}}</td><td>{{.Boot}}</td><td>{{.Target}}</td>
<td>{{with .Lease}}{{.IP}}, {{until .Expires}} left{{end}}</td><td>{{len .Sessions}}</td></tr>
{{end}}</table>
{{with .Seen}}<h2>Machines seen, not in the inventory</h2>
<table><tr><th>MAC</th><th>kind</th><th>arch</th><th>vendor class</th><th>first seen</th><th>last seen</th><th>IP</th><th>to let it boot, add</th></tr>
{{range .}}<tr><td>{{.MAC}}</td><td>{{.Kind}}</td><td>{{.Arch}}</td><td>{{.VendorClass}}</td><td>{{since .FirstSeen}} ago</td><td>{{since .LastSeen}} ago</td><td>{{.IP}}</td><td><pre>{{.Stanza}}</pre></td></tr>
{{end}}</table>
{{end}}<h2>Leases</h2>
<table><tr><th>MAC</th><th>IP</th><th>host</th><th>expires in</th></tr>
{{range .Leases}}<tr><td>{{.MAC}}</td><td>{{.IP}}</td><td>{{.Host}}</td><td>{{until .Expires}}</td></tr>
{{end}}</table>
<h2>iSCSI sessions</h2>
<table><tr><th>initiator</th><th>target</th><th>from</th><th>up</th><th>read</th><th>written</th></tr>
{{range sorted .Sessions}}<tr><td>{{.Initiator}}</td><td>{{.Target}}</td><td>{{.Remote}}</td><td>{{since .Since}}</td><td>{{.ReadBytes}}</td><td>{{.WrittenBytes}}</td></tr>
{{end}}</table>
</body></html>
`))
