//go:build ceph

package ceph

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rados"

	"github.com/netsan/netsan/iscsi/scsi"
)

// Records is the omap of one RADOS object: records by key, each written
// on its own, so that a change costs one small key however many there are.
// dhcpd keeps its leases in one (dhcpd.LeaseRecords).
type Records struct {
	c   *Cluster
	oid string
}

// Records returns the records of the object ObjectPrefix+name in the
// [ceph] pool (netsan.leases for "leases"); the object is made on the
// first Save.
func (c *Cluster) Records(name string) (*Records, error) {
	if _, err := c.poolIOContext(); err != nil {
		return nil, err
	}
	return &Records{c: c, oid: ObjectPrefix + name}, nil
}

// Load reads every record; an object not yet made holds none.
func (r *Records) Load() (map[string][]byte, error) { return r.c.Omap(r.oid) }

// Save sets the records given, in one write that the OSDs have applied
// and acknowledged when it returns (within OpTimeout).
func (r *Records) Save(recs map[string][]byte) error {
	if len(recs) == 0 {
		return nil
	}
	return r.c.SetOmap(r.oid, recs)
}

// reservations keeps each LU's persistent reservation state in an object
// of its own, ObjectPrefix+"pr."+name, replaced whole on every change.
type reservations struct {
	io *rados.IOContext
}

// ReservationStore returns the store of persistent reservations in the
// [ceph] pool, shared by the gateways that take over a target from one
// another. Unlike scsi.ReservationFiles it keeps the state whether or not
// APTPL was set: SPC-4's APTPL governs a power loss of the target, and a
// failover is not one; the logical target goes on, on another gateway, and
// the initiators' registrations and reservations must be there. (They then
// also outlive a power loss of every gateway: a cold start cannot be told
// from a takeover.) PTPL_C and PTPL_A are still reported as the initiator
// set APTPL.
func (c *Cluster) ReservationStore() (scsi.ReservationStore, error) {
	io, err := c.poolIOContext()
	if err != nil {
		return nil, err
	}
	return reservations{io: io}, nil
}

func reservationObject(name string) string { return ObjectPrefix + "pr." + name }

func (s reservations) Load(name string) (scsi.PRState, bool, error) {
	oid := reservationObject(name)
	st, err := s.io.Stat(oid)
	if errors.Is(err, rados.ErrNotFound) {
		return scsi.PRState{}, false, nil
	}
	if err != nil {
		return scsi.PRState{}, false, fmt.Errorf("ceph: %s: %w", oid, err)
	}
	b := make([]byte, st.Size)
	n, err := s.io.Read(oid, b, 0)
	if err != nil {
		return scsi.PRState{}, false, fmt.Errorf("ceph: %s: reading: %w", oid, err)
	}
	var p scsi.PRState
	if err := json.Unmarshal(b[:n], &p); err != nil {
		return scsi.PRState{}, false, fmt.Errorf("ceph: %s: %w", oid, err)
	}
	return p, true, nil
}

// Save replaces the object whole (a RADOS write_full is atomic): a reader
// sees the old state or the new.
func (s reservations) Save(name string, p scsi.PRState) error {
	oid := reservationObject(name)
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.io.WriteFull(oid, b); err != nil {
		return fmt.Errorf("ceph: %s: writing: %w", oid, err)
	}
	return nil
}
