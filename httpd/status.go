package httpd

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// StatusSource is where /status reads the state of the other services.
// cmd/netsan fills it from dhcpd, iscsi and images, which httpd does not
// import. Any func may be nil.
type StatusSource struct {
	Leases   func() []Lease
	Sessions func() []Session
	// Cluster is nil on a single box.
	Cluster func() *cluster.Status
	// Seen lists the machines that asked to boot and are not in the
	// inventory; /status adds the [[host]] for each.
	Seen func() []Seen
	// Targets lists the iSCSI targets of inv with their LUNs and traffic.
	Targets func(inv *inventory.Inventory) []Target
	// Images lists the golden images and host roots of inv with their sizes.
	Images func(inv *inventory.Inventory) []Image
}

// Target is an iSCSI target as /status shows it.
type Target struct {
	IQN  string `json:"iqn"`
	Host string `json:"host,omitempty"` // the host whose root it is; "" for a [[target]]
	LUNs []LUN  `json:"luns"`
	// Sessions is how many are logged in now; the bytes count every
	// session's data since this netsan started serving.
	Sessions     int    `json:"sessions"`
	ReadBytes    uint64 `json:"read_bytes"`
	WrittenBytes uint64 `json:"written_bytes"`
}

// LUN is one logical unit of a target.
type LUN struct {
	Number   uint64 `json:"lun"`
	Backing  string `json:"backing"` // the file, device or rbd:pool/image
	ReadOnly bool   `json:"read_only"`
	// Size is the provisioned size and Allocated what the storage holds
	// for it; both -1 when the backing cannot be read (missing, or its
	// cluster does not answer).
	Size      int64 `json:"size"`
	Allocated int64 `json:"allocated"`
}

// Image is a golden image or a host's root image.
type Image struct {
	Name      string `json:"name"` // for a root: the golden image it comes from, if any
	Kind      string `json:"kind"` // golden or root
	Host      string `json:"host,omitempty"`
	Backing   string `json:"backing"`
	Size      int64  `json:"size"`
	Allocated int64  `json:"allocated"`
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
	Sessions  []Session `json:"sessions"` // logged in now
	// LastBoot is its last boot as the services saw it since this netsan
	// started; nil when none did.
	LastBoot *timeline.Boot `json:"last_boot"`
	// ReadBytes and WrittenBytes are its root target's traffic since this
	// netsan started serving.
	ReadBytes    uint64 `json:"read_bytes"`
	WrittenBytes uint64 `json:"written_bytes"`
}

// Status is the /status document.
type Status struct {
	Server   string          `json:"server"`
	Time     time.Time       `json:"time"`
	Cluster  *cluster.Status `json:"cluster,omitempty"`
	Hosts    []HostStatus    `json:"hosts"`
	Leases   []Lease         `json:"leases"`
	Sessions []Session       `json:"sessions"`
	Seen     []Seen          `json:"seen"`
	Targets  []Target        `json:"targets"`
	Images   []Image         `json:"images"`
}

func (s *Server) snapshot() Status {
	inv := s.Resolver.Inventory()
	st := Status{Server: inv.Server.Address.String(), Time: time.Now().UTC(),
		Hosts: []HostStatus{}, Leases: []Lease{}, Sessions: []Session{}, Seen: []Seen{}, Targets: []Target{}, Images: []Image{}}
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
	if s.Status.Targets != nil {
		st.Targets = append(st.Targets, s.Status.Targets(inv)...)
	}
	if s.Status.Images != nil {
		st.Images = append(st.Images, s.Status.Images(inv)...)
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
		for _, t := range st.Targets {
			if hs.Target != "" && t.IQN == hs.Target {
				hs.ReadBytes, hs.WrittenBytes = t.ReadBytes, t.WrittenBytes
			}
		}
		// DHCP, TFTP and HTTP know the machine by its MAC, the target by
		// its initiator name.
		hs.LastBoot = timeline.LastBoot(s.Events.Events(hs.MAC, hs.Initiator))
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
	for i, h := range s.Resolver.Suggest(macs) {
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
		s.Log.Warn("status", zap.Error(err))
	}
}
