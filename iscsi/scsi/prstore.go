package scsi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/netsan/netsan/atomicfile"
)

// Registration is one registered I_T nexus and its reservation key.
type Registration struct {
	Nexus Nexus
	Key   uint64
}

// PRState is the persistent reservation state of a LU (SPC-4 5.13), as a
// ReservationStore keeps it.
type PRState struct {
	Generation uint32
	Regs       []Registration
	// Type is the reservation type, 0 when there is no reservation.
	Type byte
	// Holder is the reservation holder; for all-registrants types every
	// registrant holds it and Holder is unused.
	Holder Nexus
	// APTPL is the last APTPL bit an initiator registered with.
	APTPL bool
}

// ReservationStore keeps the persistent reservation state of logical
// units, each under a name its user derives from the LU (iscsi: target IQN
// and LUN), so that a LU opened again under the same name continues it.
type ReservationStore interface {
	// Load returns the state saved under name; ok is false when there is none.
	Load(name string) (s PRState, ok bool, err error)
	// Save records s as the state of name, durably, before it returns: the
	// status of the command that changed it is sent after. The LU calls it
	// on every change, APTPL set or not; the store decides what outlives
	// what (ReservationFiles keeps only what APTPL asks for).
	Save(name string, s PRState) error
}

// ReservationFiles is a ReservationStore of one machine: a file per LU in
// Dir, "pr-<name>", present only while APTPL is set. SPC-4 5.13.5: the
// state persists through a power loss only when the initiator asked for it.
type ReservationFiles struct {
	Dir string
}

func (f ReservationFiles) path(name string) string {
	return filepath.Join(f.Dir, "pr-"+strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, name))
}

// Load reads the state Save wrote; a missing file is no state.
func (f ReservationFiles) Load(name string) (PRState, bool, error) {
	file := f.path(name)
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return PRState{}, false, nil
	}
	if err != nil {
		return PRState{}, false, err
	}
	var s PRState
	if err := json.Unmarshal(b, &s); err != nil {
		return PRState{}, false, fmt.Errorf("%s: %w", file, err)
	}
	return s, true, nil
}

// Save writes the state to its file, replacing it atomically, when APTPL
// asks for persistence, and removes the file otherwise.
func (f ReservationFiles) Save(name string, s PRState) error {
	file := f.path(name)
	if !s.APTPL {
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(file, b, 0o600)
}
