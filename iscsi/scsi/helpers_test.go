package scsi

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/netsan/netsan/iscsi/backstore"
)

const testBlocks = 2048 // 1 MiB LUs

var (
	nexusA = Nexus{InitiatorName: "iqn.2026-11.test:a", ISID: [6]byte{0x80, 0, 0, 0, 0, 1}, TargetName: "iqn.2026-11.test:t", TPGT: 1}
	nexusB = Nexus{InitiatorName: "iqn.2026-11.test:b", ISID: [6]byte{0x80, 0, 0, 0, 0, 2}, TargetName: "iqn.2026-11.test:t", TPGT: 1}
	nexusC = Nexus{InitiatorName: "iqn.2026-11.test:c", ISID: [6]byte{0x80, 0, 0, 0, 0, 3}, TargetName: "iqn.2026-11.test:t", TPGT: 1}
)

type luOpt func(*LUConfig)

func newTestLU(t testing.TB, opts ...luOpt) *LogicalUnit {
	t.Helper()
	dir := t.TempDir()
	s, err := backstore.Open(filepath.Join(dir, "lu.img"), testBlocks*blockSize, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := LUConfig{Store: s, SerialNumber: "beefcafe", DeviceID: 0x1234}
	for _, o := range opts {
		o(&cfg)
	}
	lu, err := NewLogicalUnit(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lu.Close() })
	// Consume the power-on unit attentions.
	for _, n := range []Nexus{nexusA, nexusB, nexusC} {
		r := lu.Execute(&Command{CDB: cdb(0x00), Nexus: n})
		if r.Status != StatusCheckCondition || r.Sense[2] != keyUnitAttention || r.Sense[12] != 0x29 {
			t.Fatalf("first command of %s: status %#x sense %x, want power-on UA", n.InitiatorName, r.Status, r.Sense)
		}
	}
	return lu
}

// cdb builds a 16-byte CDB from its leading bytes, as iSCSI carries it.
func cdb(b ...byte) []byte {
	c := make([]byte, 16)
	copy(c, b)
	return c
}

func rw10(op byte, flags byte, lba uint32, n uint16) []byte {
	c := cdb(op, flags)
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func rw16(op byte, flags byte, lba uint64, n uint32) []byte {
	c := cdb(op, flags)
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// want describes an expected outcome: status and, for CHECK CONDITION,
// sense key, ASC and ASCQ.
type want struct {
	status         byte
	key, asc, ascq byte
}

var (
	ok          = want{status: StatusGood}
	conflict    = want{status: StatusReservationConflict}
	invalidCDB  = want{StatusCheckCondition, keyIllegalRequest, 0x24, 0}
	invalidOp   = want{StatusCheckCondition, keyIllegalRequest, 0x20, 0}
	oob         = want{StatusCheckCondition, keyIllegalRequest, 0x21, 0}
	invalidPar  = want{StatusCheckCondition, keyIllegalRequest, 0x26, 0}
	paramLen    = want{StatusCheckCondition, keyIllegalRequest, 0x1a, 0}
	writeProt   = want{StatusCheckCondition, keyDataProtect, 0x27, 0}
	miscompare  = want{StatusCheckCondition, keyMiscompare, 0x1d, 0}
	condMet     = want{status: StatusConditionMet}
	noSaving    = want{StatusCheckCondition, keyIllegalRequest, 0x39, 0}
	badRelease  = want{StatusCheckCondition, keyIllegalRequest, 0x26, 4}
	uaPreempted = want{StatusCheckCondition, keyUnitAttention, 0x2a, 5}
)

func check(t *testing.T, what string, r Response, w want) {
	t.Helper()
	if r.Status != w.status {
		t.Fatalf("%s: status %#x, want %#x (sense %x)", what, r.Status, w.status, r.Sense)
	}
	if w.status != StatusCheckCondition {
		return
	}
	k, asc, ascq := senseFields(t, r.Sense)
	if k != w.key || asc != w.asc || ascq != w.ascq {
		t.Fatalf("%s: sense %x/%02x/%02x, want %x/%02x/%02x", what, k, asc, ascq, w.key, w.asc, w.ascq)
	}
}

func senseFields(t *testing.T, s []byte) (key, asc, ascq byte) {
	t.Helper()
	switch {
	case len(s) >= 18 && s[0]&0x7f == 0x70:
		return s[2] & 0x0f, s[12], s[13]
	case len(s) >= 8 && s[0] == 0x72:
		return s[1], s[2], s[3]
	}
	t.Fatalf("malformed sense %x", s)
	return
}

func run(lu *LogicalUnit, n Nexus, c []byte, out []byte) Response {
	return lu.Execute(&Command{CDB: c, Nexus: n, DataOut: out, ExpectedDataTransferLength: uint32(len(out))})
}
