package iscsi

import (
	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/iscsi/scsi"
)

// Config is the iSCSI target's whole view of the inventory: portals, targets,
// LUNs, ACLs and CHAP. The iscsi package knows nothing of hosts or MACs;
// cmd/netsan translates the inventory into this.
type Config struct {
	// Listen is the list of portals, host:port.
	Listen []string
	// DiscoveryCHAP, when set, is required of discovery sessions.
	DiscoveryCHAP *CHAP
	// MaxSessions bounds concurrent sessions over all targets (0 = 256).
	MaxSessions int
	// StateDir holds state that must survive a restart (persistent
	// reservations), one file per LUN, unless Reservations is set.
	StateDir string
	// Reservations keeps the LUs' persistent reservations, each under
	// "<target IQN>-lun<N>"; nil keeps them in files in StateDir (while
	// APTPL is set), or in memory only without StateDir. Gateways that take
	// over from one another share a store in Ceph.
	Reservations scsi.ReservationStore
	Targets      []Target
	// OpenStore opens the backing store of a LUN; nil opens its Path as a
	// file or block device (backstore.Open). cmd/netsan sets it to open
	// "rbd:pool/image" paths in Ceph. A LUN whose configuration a reload
	// leaves unchanged keeps the store it has.
	OpenStore func(LUN) (backstore.Store, error)
}

// Target is one iSCSI target node.
type Target struct {
	IQN  string
	LUNs []LUN
	// ACL lists the initiators admitted. An empty ACL admits every initiator.
	ACL []ACL
}

// LUN is one logical unit of a target.
type LUN struct {
	Number uint64
	// Path is a regular file (a sparse image, created at Size if missing), a
	// block device, or whatever Config.OpenStore knows how to open.
	Path string
	// Size is the size to create a missing image at; 0 for an existing file
	// or a device.
	Size int64
	// ReadOnly exports the LUN write-protected to every initiator.
	ReadOnly bool
}

// ACL admits one initiator to a target.
type ACL struct {
	Initiator string
	// Map is initiator LUN → target LUN. Nil maps every LUN to its own number.
	Map map[uint64]uint64
	// WriteProtect makes every LUN read-only for this initiator.
	WriteProtect bool
	// CHAP, when set, must be passed by this initiator.
	CHAP *CHAP
}

// CHAP is one CHAP credential, optionally mutual.
type CHAP struct {
	User   string
	Secret string
	// MutualUser is the name the target gives in mutual CHAP (default: the target IQN).
	MutualUser   string
	MutualSecret string
}
