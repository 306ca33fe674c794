package scsi

import (
	"bytes"
	"testing"
)

// FuzzExecute feeds arbitrary CDBs and Data-Out to a LU: nothing may
// panic (Execute would turn a panic into INTERNAL TARGET FAILURE, which
// fails here), every CHECK CONDITION carries sense data, and GOOD data is
// never longer than the CDB could ask for.
func FuzzExecute(f *testing.F) {
	for _, c := range [][]byte{
		cdb(0x12, 1, 0x83, 0, 0xff), cdb(0x1a, 0, 0x3f, 0, 0xff), rw10(0x2a, 0, 0, 1), rw16(0x89, 0, 0, 0),
		rw16(0x93, 0x08, 0, 0), cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24), cdb(0x5f, 0, 1, 0, 0, 0, 0, 0, 24),
		cdb(0x5e, 3, 0, 0, 0, 0, 0, 0x10, 0), cdb(0xa3, 0x0c, 0x82, 0x9e, 0, 0x12, 0, 0, 1, 0),
		cdb(0x55, 0x10, 0, 0, 0, 0, 0, 0, 28), rw16(0x9e, 0x12, 0, 64), cdb(0x03, 1, 0, 0, 0xff),
		cdb(0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff),
	} {
		f.Add(c, bytes.Repeat([]byte{0}, 24))
	}
	lu0 := newTestLU(f)
	x := xcopyList(1, 0, [][]byte{lu0.naa()}, [][4]uint64{{0, 8, 0, 100}})
	f.Add(xcopyCDB(len(x)), x)
	tid := transportID(nexusB)
	ram := append(make([]byte, 24), tid...)
	ram[19], ram[23] = 1, byte(len(tid))
	f.Add(cdb(0x5f, 0x07, 0, 0, 0, 0, 0, 0, byte(len(ram)), 0), ram)
	lu := newTestLU(f)
	f.Fuzz(func(t *testing.T, c, out []byte) {
		if len(c) > 16 {
			c = c[:16]
		}
		r := lu.Execute(&Command{CDB: c, Nexus: nexusA, DataOut: out, ExpectedDataTransferLength: uint32(len(out))})
		defer r.Release()
		switch r.Status {
		case StatusCheckCondition:
			if len(r.Sense) < 8 {
				t.Fatalf("CHECK CONDITION without sense for %x", c)
			}
			k, asc, _ := senseFields(t, r.Sense)
			if k == keyHardwareError && asc == 0x44 {
				t.Fatalf("internal failure (a recovered panic) for CDB %x", c)
			}
		case StatusGood, StatusConditionMet, StatusReservationConflict:
		default:
			t.Fatalf("status %#x for %x", r.Status, c)
		}
		if len(r.Data) > maxTransfer*blockSize {
			t.Fatalf("%d bytes of data for %x", len(r.Data), c)
		}
	})
}
