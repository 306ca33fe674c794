// Package timeline keeps, in memory, what each machine did lately on its way
// to a running system: DHCP discover and ack, loader and script fetched,
// iSCSI login. The services record events as they happen (one call each);
// /status reads a machine's last boot back. It is bounded in machines and in
// events per machine, and forgets everything at a restart: it is a view for
// a person, not a log.
package timeline

import (
	"slices"
	"sync"
	"time"
)

// Step is one kind of event on the way to a booted machine.
type Step string

// Steps, in the order a boot goes through them.
const (
	Discover Step = "dhcp_discover" // a DHCPDISCOVER, answered or not
	Ack      Step = "dhcp_ack"      // an address (or, in proxy mode, boot information) given
	Nak      Step = "dhcp_nak"      // a REQUEST refused
	Loader   Step = "loader"        // an iPXE loader sent
	Script   Step = "script"        // the iPXE script, or a Pi's cmdline.txt, sent
	File     Step = "file"          // another file sent (a kernel, an initramfs, a Pi's firmware)
	Login    Step = "iscsi_login"   // a login to a target (not a discovery session)
)

// Event is one step of a machine's boot.
type Event struct {
	Step Step      `json:"step"`
	At   time.Time `json:"at"`
	// Detail says what: the file and how it went, the address leased, the
	// target logged in to.
	Detail string `json:"detail,omitempty"`
	// Count is how many times in a row this step happened (a Pi fetching
	// its firmware file after file, a client repeating its discover), each
	// within NewBootGap of the one before; At and Detail are the first's,
	// Last the last one's time.
	Count int       `json:"count"`
	Last  time.Time `json:"last"`
}

// Defaults of New.
const (
	DefaultMachines = 1024 // keys kept; the least recently active goes first
	DefaultEvents   = 48   // events kept per key; the oldest goes first
)

// Recorder holds the recent events of each machine, by key: a MAC for
// DHCP, TFTP and HTTP, an initiator IQN for iSCSI (the target knows no
// MACs). A nil *Recorder records nothing, so a service built without one
// needs no check at its call. It is safe for concurrent use.
type Recorder struct {
	maxKeys, maxEvents int

	mu   sync.Mutex
	byID map[string]*history
	tick uint64 // orders keys by last activity, for eviction
}

type history struct {
	list []Event
	tick uint64
}

// New returns a Recorder that keeps up to machines keys and events events
// per key (the defaults when 0).
func New(machines, events int) *Recorder {
	if machines <= 0 {
		machines = DefaultMachines
	}
	if events <= 0 {
		events = DefaultEvents
	}
	return &Recorder{maxKeys: machines, maxEvents: events, byID: map[string]*history{}}
}

// Record notes that key went through step now. An empty key (a request no
// machine could be named for) is not recorded.
func (r *Recorder) Record(key string, step Step, detail string) {
	if r == nil || key == "" {
		return
	}
	r.record(key, Event{Step: step, At: time.Now(), Detail: detail})
}

func (r *Recorder) record(key string, e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	es := r.byID[key]
	if es == nil {
		if len(r.byID) >= r.maxKeys {
			r.evict()
		}
		es = &history{}
		r.byID[key] = es
	}
	es.tick = r.tick
	if n := len(es.list); n > 0 && es.list[n-1].Step == e.Step && e.At.Sub(es.list[n-1].Last) < NewBootGap {
		last := &es.list[n-1]
		last.Count++
		last.Last = e.At
		return
	}
	e.Count, e.Last = 1, e.At
	if len(es.list) >= r.maxEvents {
		es.list = slices.Delete(es.list, 0, len(es.list)-r.maxEvents+1)
	}
	es.list = append(es.list, e)
}

// evict forgets the key recorded least recently. Called with mu held.
func (r *Recorder) evict() {
	var (
		oldest string
		tick   uint64
	)
	for k, es := range r.byID {
		if oldest == "" || es.tick < tick {
			oldest, tick = k, es.tick
		}
	}
	delete(r.byID, oldest)
}

// Events returns the events of keys (a machine's MAC and its initiator
// IQN, say) merged in the order they happened.
func (r *Recorder) Events(keys ...string) []Event {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	var out []Event
	for _, k := range keys {
		if es := r.byID[k]; es != nil && k != "" {
			out = append(out, es.list...)
		}
	}
	r.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Event) int { return a.At.Compare(b.At) })
	return out
}

// Boot is a machine's last boot: the events since it began, and the time of
// the first event of each step in it.
type Boot struct {
	Start  time.Time          `json:"start"`
	Steps  map[Step]time.Time `json:"steps"`
	Events []Event            `json:"events"`
}

// At is when step first happened in b; the zero time if it did not.
func (b *Boot) At(step Step) time.Time { return b.Steps[step] }

// First is the first event of step in b; nil if there is none.
func (b *Boot) First(step Step) *Event {
	for i := range b.Events {
		if b.Events[i].Step == step {
			return &b.Events[i]
		}
	}
	return nil
}

// NewBootGap is the quiet time after which a DHCP discover starts a new
// boot even when the last one never reached an iSCSI login (a machine that
// boots from its own disk, or one that failed and was reset).
const NewBootGap = 2 * time.Minute

// LastBoot picks the last boot out of es (in order): it begins at the last
// DHCP discover that follows an iSCSI login, or a quiet time of NewBootGap,
// or at the first event. A PXE ROM's discover and the discover of the iPXE
// it loads, or of the initramfs it boots, are one boot. Nil when es is
// empty.
func LastBoot(es []Event) *Boot {
	if len(es) == 0 {
		return nil
	}
	start := 0
	for i := 1; i < len(es); i++ {
		if es[i].Step != Discover {
			continue
		}
		prev := es[i-1]
		if es[i].At.Sub(prev.Last) >= NewBootGap || slices.ContainsFunc(es[start:i], func(e Event) bool { return e.Step == Login }) {
			start = i
		}
	}
	b := &Boot{Start: es[start].At, Steps: map[Step]time.Time{}, Events: slices.Clone(es[start:])}
	for _, e := range b.Events {
		if _, ok := b.Steps[e.Step]; !ok {
			b.Steps[e.Step] = e.At
		}
	}
	return b
}
