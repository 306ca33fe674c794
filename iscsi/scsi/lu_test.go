package scsi

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// step is one command of a table test, run in order on one LU.
type step struct {
	name  string
	from  Nexus // zero: nexusA
	ro    bool  // write-protected nexus
	cdb   []byte
	out   []byte
	want  want
	data  []byte            // exact data expected, when set
	check func([]byte) bool // more data checks
}

func runSteps(t *testing.T, lu *LogicalUnit, steps []step) {
	t.Helper()
	for _, s := range steps {
		n := s.from
		if n == (Nexus{}) {
			n = nexusA
		}
		r := lu.Execute(&Command{CDB: s.cdb, Nexus: n, ReadOnly: s.ro, DataOut: s.out, ExpectedDataTransferLength: uint32(len(s.out))})
		check(t, s.name, r, s.want)
		if s.data != nil && !bytes.Equal(r.Data, s.data) {
			t.Fatalf("%s: data %x, want %x", s.name, r.Data, s.data)
		}
		if s.check != nil && !s.check(r.Data) {
			t.Fatalf("%s: data check failed on %x", s.name, r.Data)
		}
		r.Release()
	}
}

func TestBlockCommands(t *testing.T) {
	lu := newTestLU(t)
	block := fill(blockSize, 0x5a)
	two := append(fill(blockSize, 0x11), fill(blockSize, 0x22)...)
	cawData := append(append([]byte{}, two...), fill(2*blockSize, 0x33)...)
	badCAW := append(fill(2*blockSize, 0x44), fill(2*blockSize, 0x55)...)
	caw := rw16(0x89, 0, 10, 0) // COMPARE AND WRITE of 2 blocks at 10
	caw[13] = 2
	runSteps(t, lu, []step{
		{name: "WRITE(10)", cdb: rw10(0x2a, 0, 10, 2), out: two, want: ok},
		{name: "READ(10)", cdb: rw10(0x28, 0, 10, 2), want: ok, data: two},
		{name: "READ(6)", cdb: cdb(0x08, 0, 0, 10, 1), want: ok, data: fill(blockSize, 0x11)},
		{name: "WRITE(6) 0 = 256 blocks, short data", cdb: cdb(0x0a, 0, 0, 100, 0), out: block, want: ok},
		{name: "READ(12)", cdb: cdb(0xa8, 0, 0, 0, 0, 100, 0, 0, 0, 1), want: ok, data: block},
		{name: "WRITE(16) FUA", cdb: rw16(0x8a, 0x08, testBlocks-1, 1), out: block, want: ok},
		{name: "READ(16) last block", cdb: rw16(0x88, 0x10, testBlocks-1, 1), want: ok, data: block},
		{name: "READ(16) beyond end", cdb: rw16(0x88, 0, testBlocks-1, 2), want: oob},
		{name: "READ(16) LBA 2^63", cdb: rw16(0x88, 0, 1<<63, 1), want: oob},
		{name: "READ(10) 0 blocks past end", cdb: rw10(0x28, 0, testBlocks+1, 0), want: oob},
		{name: "READ(10) 0 blocks", cdb: rw10(0x28, 0, 0, 0), want: ok, data: []byte{}},
		{name: "READ(10) RDPROTECT", cdb: rw10(0x28, 0x20, 0, 1), want: invalidCDB},
		{name: "WRITE(10) WRPROTECT", cdb: rw10(0x2a, 0x40, 0, 1), out: block, want: invalidCDB},
		{name: "READ(10) reserved bit", cdb: rw10(0x28, 0x04, 0, 1), want: invalidCDB, check: nil},
		{name: "READ(10) NACA", cdb: func() []byte { c := rw10(0x28, 0, 0, 1); c[9] = 0x04; return c }(), want: invalidCDB},
		{name: "READ(10) over max transfer", cdb: rw10(0x28, 0, 0, 0xffff), want: oob},
		{name: "WRITE AND VERIFY(10)", cdb: rw10(0x2e, 0x02, 20, 1), out: block, want: ok},
		{name: "VERIFY(10) BYTCHK=1 equal", cdb: rw10(0x2f, 0x02, 20, 1), out: block, want: ok},
		{name: "VERIFY(10) BYTCHK=1 differs", cdb: rw10(0x2f, 0x02, 10, 2), out: append(fill(blockSize, 0x11), fill(blockSize, 0x23)...), want: miscompare},
		{name: "VERIFY(10) BYTCHK=0", cdb: rw10(0x2f, 0, 10, 2), out: nil, want: ok},
		{name: "VERIFY(16) BYTCHK=3", cdb: rw16(0x8f, 0x06, 20, 1), out: block, want: ok},
		{name: "VERIFY(16) beyond end", cdb: rw16(0x8f, 0, testBlocks, 1), want: oob},
		{name: "COMPARE AND WRITE", cdb: caw, out: cawData, want: ok},
		{name: "after COMPARE AND WRITE", cdb: rw10(0x28, 0, 10, 2), want: ok, data: fill(2*blockSize, 0x33)},
		{name: "COMPARE AND WRITE miscompare", cdb: caw, out: badCAW, want: miscompare},
		{name: "COMPARE AND WRITE of 0 (256) blocks with data", cdb: rw16(0x89, 0, 0, 0), out: cawData, want: invalidCDB},
		{name: "COMPARE AND WRITE short data", cdb: caw, out: two, want: invalidCDB},
		{name: "unchanged after miscompare", cdb: rw10(0x28, 0, 10, 2), want: ok, data: fill(2*blockSize, 0x33)},
		{name: "ORWRITE", cdb: rw16(0x8b, 0, 10, 1), out: fill(blockSize, 0x44), want: ok},
		{name: "after ORWRITE", cdb: rw10(0x28, 0, 10, 1), want: ok, data: fill(blockSize, 0x77)},
		{name: "WRITE ATOMIC(16)", cdb: func() []byte {
			c := cdb(0x9c)
			binary.BigEndian.PutUint64(c[2:], 30)
			binary.BigEndian.PutUint16(c[12:], 1)
			return c
		}(), out: block, want: ok},
		{name: "SYNCHRONIZE CACHE(10)", cdb: rw10(0x35, 0, 0, 0), want: ok},
		{name: "SYNCHRONIZE CACHE(16) beyond end", cdb: rw16(0x91, 0, testBlocks, 1), want: oob},
		{name: "PRE-FETCH(10)", cdb: rw10(0x34, 0, 0, 8), want: condMet},
		{name: "PRE-FETCH(16) beyond end", cdb: rw16(0x90, 0, testBlocks, 1), want: oob},
		{name: "READ CAPACITY(10)", cdb: cdb(0x25), want: ok, data: []byte{0, 0, 0x07, 0xff, 0, 0, 2, 0}},
		{name: "READ CAPACITY(10) LBA without PMI", cdb: cdb(0x25, 0, 0, 0, 0, 1), want: invalidCDB},
		{name: "READ CAPACITY(16)", cdb: rw16(0x9e, 0x10, 0, 32), want: ok, check: func(d []byte) bool {
			return len(d) == 32 && binary.BigEndian.Uint64(d) == testBlocks-1 && binary.BigEndian.Uint32(d[8:]) == blockSize && d[13] == physExponent && d[14] == 0xc0
		}},
		{name: "READ CAPACITY(16) alloc 8", cdb: rw16(0x9e, 0x10, 0, 8), want: ok, check: func(d []byte) bool { return len(d) == 8 }},
		{name: "unknown opcode", cdb: cdb(0xff), want: invalidOp},
		{name: "unknown service action", cdb: cdb(0x9e, 0x1f), want: invalidCDB},
		{name: "empty CDB", cdb: nil, want: invalidOp},
		{name: "READ DEFECT DATA(10)", cdb: cdb(0x37, 0, 0x18, 0, 0, 0, 0, 0, 4), want: ok, data: []byte{0, 0x18, 0, 0}},
	})
}

func TestProvisioning(t *testing.T) {
	lu := newTestLU(t)
	zero := make([]byte, blockSize)
	lbaStatus := func(lba uint64) []byte { return rw16(0x9e, 0x12, lba, 1024) }
	desc := func(d []byte, i int) (uint64, uint32, byte) {
		o := 8 + 16*i
		return binary.BigEndian.Uint64(d[o:]), binary.BigEndian.Uint32(d[o+8:]), d[o+12]
	}
	unmapList := func(lba uint64, n uint32) []byte {
		p := make([]byte, 24)
		binary.BigEndian.PutUint16(p, 22)
		binary.BigEndian.PutUint16(p[2:], 16)
		binary.BigEndian.PutUint64(p[8:], lba)
		binary.BigEndian.PutUint32(p[16:], n)
		return p
	}
	runSteps(t, lu, []step{
		{name: "GET LBA STATUS of an empty LU", cdb: lbaStatus(0), want: ok, check: func(d []byte) bool {
			lba, n, st := desc(d, 0)
			return lba == 0 && n == testBlocks && st == 1
		}},
		{name: "WRITE SAME(10) without UNMAP writes", cdb: rw10(0x41, 0, 64, 64), out: fill(blockSize, 0xab), want: ok},
		{name: "read WRITE SAME result", cdb: rw10(0x28, 0, 64, 64), want: ok, data: fill(64*blockSize, 0xab)},
		{name: "GET LBA STATUS mapped extent", cdb: lbaStatus(64), want: ok, check: func(d []byte) bool {
			lba, n, st := desc(d, 0)
			return lba == 64 && n == 64 && st == 0
		}},
		{name: "WRITE SAME(16) UNMAP", cdb: rw16(0x93, 0x08, 64, 32), out: zero, want: ok},
		{name: "GET LBA STATUS after unmap", cdb: lbaStatus(64), want: ok, check: func(d []byte) bool {
			lba, n, st := desc(d, 0)
			lba2, n2, st2 := desc(d, 1)
			return lba == 64 && n == 32 && st == 1 && lba2 == 96 && n2 == 32 && st2 == 0
		}},
		{name: "read unmapped zeros", cdb: rw10(0x28, 0, 64, 32), want: ok, data: make([]byte, 32*blockSize)},
		{name: "UNMAP", cdb: cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24), out: unmapList(96, 32), want: ok},
		{name: "read after UNMAP", cdb: rw10(0x28, 0, 96, 32), want: ok, data: make([]byte, 32*blockSize)},
		{name: "UNMAP beyond end", cdb: cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24), out: unmapList(testBlocks-1, 2), want: oob},
		{name: "UNMAP short parameter list", cdb: cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 4), out: make([]byte, 4), want: paramLen},
		{name: "UNMAP empty", cdb: cdb(0x42), want: ok},
		{name: "UNMAP ANCHOR", cdb: cdb(0x42, 1, 0, 0, 0, 0, 0, 0, 24), out: unmapList(0, 1), want: invalidCDB},
		{name: "WRITE SAME(10) UNMAP with non-zero data", cdb: rw10(0x41, 0x08, 200, 4), out: fill(blockSize, 0xff), want: ok},
		{name: "reads zeros", cdb: rw10(0x28, 0, 200, 4), want: ok, data: make([]byte, 4*blockSize)},
		{name: "WRITE SAME(16) NDOB UNMAP until end", cdb: rw16(0x93, 0x09, testBlocks-8, 0), want: ok},
		{name: "WRITE SAME(10) data size", cdb: rw10(0x41, 0x08, 0, 1), out: fill(2*blockSize, 0), want: invalidCDB},
		{name: "WRITE SAME(10) beyond end", cdb: rw10(0x41, 0, testBlocks-1, 2), out: zero, want: oob},
		{name: "WRITE SAME(10) ANCHOR", cdb: rw10(0x41, 0x18, 0, 1), out: zero, want: invalidCDB},
		{name: "GET LBA STATUS beyond end", cdb: lbaStatus(testBlocks), want: oob},
	})
}

func TestInquiry(t *testing.T) {
	lu := newTestLU(t)
	vpd := func(page byte) []byte { return cdb(0x12, 1, page, 1, 0) }
	runSteps(t, lu, []step{
		{name: "standard", cdb: cdb(0x12, 0, 0, 0, 96), want: ok, check: func(d []byte) bool {
			return len(d) == 96 && d[0] == 0 && d[2] == 6 && d[3]&0x0f == 2 && strings.HasPrefix(string(d[8:16]), "NETSAN")
		}},
		{name: "alloc 5", cdb: cdb(0x12, 0, 0, 0, 5), want: ok, check: func(d []byte) bool { return len(d) == 5 && d[4] == 91 }},
		{name: "page without EVPD", cdb: cdb(0x12, 0, 0x80, 0, 96), want: invalidCDB},
		{name: "supported pages", cdb: vpd(0), want: ok, data: []byte{0, 0, 0, 7, 0, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2}},
		{name: "serial", cdb: vpd(0x80), want: ok, data: append([]byte{0, 0x80, 0, 8}, "beefcafe"...)},
		{name: "device identification", cdb: vpd(0x83), want: ok, check: func(d []byte) bool {
			// First designator: NAA, binary, LU association, 8 bytes.
			return d[1] == 0x83 && d[4] == 0x01 && d[5] == 0x03 && d[7] == 8 && d[8]>>4 == 3 &&
				binary.BigEndian.Uint64(d[8:])&0xffff == 0x1234 && bytes.Contains(d, []byte("iqn.2026-11.test:t,t,0x0001"))
		}},
		{name: "block limits", cdb: vpd(0xb0), want: ok, check: func(d []byte) bool {
			return len(d) == 64 && d[5] == maxCAWBlocks && binary.BigEndian.Uint32(d[8:]) == maxTransfer &&
				binary.BigEndian.Uint32(d[20:]) == maxUnmapBlocks && binary.BigEndian.Uint64(d[36:]) == maxWriteSame
		}},
		{name: "block device characteristics", cdb: vpd(0xb1), want: ok, check: func(d []byte) bool { return binary.BigEndian.Uint16(d[4:]) == 1 }},
		{name: "logical block provisioning", cdb: vpd(0xb2), want: ok, check: func(d []byte) bool { return d[5] == 0xe4 && d[6]&7 == 2 }},
		{name: "unknown page", cdb: vpd(0x99), want: invalidCDB},
	})
}

func TestModePages(t *testing.T) {
	lu := newTestLU(t)
	var current []byte
	runSteps(t, lu, []step{
		{name: "MODE SENSE(6) all pages", cdb: cdb(0x1a, 0, 0x3f, 0, 0xff), want: ok, check: func(d []byte) bool {
			current = append([]byte{}, d...)
			// header 4 + block descriptor 8 + caching 20 + control 12 + IE 12
			return len(d) == 56 && int(d[0]) == len(d)-1 && d[3] == 8 && d[12] == 0x08 && d[14]&0x04 != 0 && d[32] == 0x0a
		}},
		{name: "MODE SENSE(10) caching LLBAA", cdb: cdb(0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 0xff), want: ok, check: func(d []byte) bool {
			return len(d) == 8+16+20 && d[4] == 1 && binary.BigEndian.Uint64(d[8:]) == testBlocks
		}},
		{name: "MODE SENSE changeable control", cdb: cdb(0x1a, 0x08, 0x4a, 0, 0xff), want: ok, check: func(d []byte) bool {
			return len(d) == 16 && d[6] == 0x04 && d[8] == 0x08
		}},
		{name: "MODE SENSE saved", cdb: cdb(0x1a, 0, 0xc8, 0, 0xff), want: noSaving},
		{name: "MODE SENSE unknown page", cdb: cdb(0x1a, 0, 0x05, 0, 0xff), want: invalidCDB},
		{name: "MODE SENSE write-protected nexus", ro: true, cdb: cdb(0x1a, 0x08, 0x08, 0, 0xff), want: ok, check: func(d []byte) bool { return d[2]&0x80 != 0 }},
		{name: "MODE SELECT(6) WCE off", cdb: cdb(0x15, 0x10, 0, 0, 24), out: []byte{0, 0, 0, 0, 0x08, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, want: ok},
		{name: "caching page shows WCE off", cdb: cdb(0x1a, 0x08, 0x08, 0, 0xff), want: ok, check: func(d []byte) bool { return d[6]&0x04 == 0 }},
		{name: "MODE SELECT(6) unchangeable bit", cdb: cdb(0x15, 0x10, 0, 0, 24), out: []byte{0, 0, 0, 0, 0x08, 0x12, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, want: invalidPar},
		{name: "MODE SELECT(6) bad page length", cdb: cdb(0x15, 0x10, 0, 0, 8), out: []byte{0, 0, 0, 0, 0x08, 0x02, 0, 0}, want: invalidPar},
		{name: "MODE SELECT(6) truncated", cdb: cdb(0x15, 0x10, 0, 0, 24), out: []byte{0, 0, 0, 0}, want: paramLen},
		{name: "MODE SELECT SP", cdb: cdb(0x15, 0x11, 0, 0, 0), want: invalidCDB},
		{name: "nexus B sees mode change UA", from: nexusB, cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x2a, 0x01}},
		{name: "nexus A has no UA", cdb: cdb(0x00), want: ok},
	})
	// Software write protect via the control page, then D_SENSE.
	ctl := append([]byte{0, 0, 0, 0}, current[32:44]...)
	ctl[4+4] |= 0x08
	runSteps(t, lu, []step{
		{name: "MODE SELECT SWP", cdb: cdb(0x15, 0x10, 0, 0, byte(len(ctl))), out: ctl, want: ok},
		{name: "write with SWP", cdb: rw10(0x2a, 0, 0, 1), out: fill(blockSize, 1), want: want{StatusCheckCondition, keyDataProtect, 0x27, 2}},
	})
	ctl[4+4] &^= 0x08
	ctl[4+2] |= 0x04
	runSteps(t, lu, []step{
		{name: "MODE SELECT D_SENSE", cdb: cdb(0x15, 0x10, 0, 0, byte(len(ctl))), out: ctl, want: ok},
		{name: "descriptor sense", cdb: rw10(0x28, 0, testBlocks, 1), want: oob, check: nil},
	})
	r := run(lu, nexusA, rw10(0x28, 0, testBlocks, 1), nil)
	if r.Sense[0] != 0x72 {
		t.Fatalf("D_SENSE=1 gave sense format %#x", r.Sense[0])
	}
}

func TestWriteProtection(t *testing.T) {
	lu := newTestLU(t)
	runSteps(t, lu, []step{
		{name: "write from write-protected nexus", ro: true, cdb: rw10(0x2a, 0, 0, 1), out: fill(blockSize, 1), want: writeProt},
		{name: "unmap from write-protected nexus", ro: true, cdb: cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24), want: writeProt},
		{name: "read from write-protected nexus", ro: true, cdb: rw10(0x28, 0, 0, 1), want: ok},
		{name: "same write from a writable nexus", cdb: rw10(0x2a, 0, 0, 1), out: fill(blockSize, 1), want: ok},
	})
	ro := newTestLU(t, func(c *LUConfig) { c.ReadOnly = true })
	runSteps(t, ro, []step{
		{name: "write to read-only LU", cdb: rw16(0x8a, 0, 0, 1), out: fill(blockSize, 1), want: writeProt},
		{name: "WRITE SAME to read-only LU", cdb: rw16(0x93, 0x08, 0, 1), out: fill(blockSize, 0), want: writeProt},
		{name: "COMPARE AND WRITE to read-only LU", cdb: rw16(0x89, 0, 0, 0), want: writeProt},
	})
}

func TestUnitAttentionsAndReset(t *testing.T) {
	lu := newTestLU(t)
	lu.Reset(nexusA)
	runSteps(t, lu, []step{
		{name: "resetting nexus: reset UA", cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x29, 0x03}},
		{name: "INQUIRY passes a UA", from: nexusB, cdb: cdb(0x12, 0, 0, 0, 36), want: ok},
		{name: "REQUEST SENSE returns the UA", from: nexusB, cdb: cdb(0x03, 0, 0, 0, 18), want: ok, check: func(d []byte) bool {
			return d[0] == 0x70 && d[2] == keyUnitAttention && d[12] == 0x29 && d[13] == 0x03
		}},
		{name: "UA consumed", from: nexusB, cdb: cdb(0x00), want: ok},
		{name: "other nexus: reset UA", from: nexusC, cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x29, 0x03}},
		{name: "REQUEST SENSE without UA", from: nexusC, cdb: cdb(0x03, 1, 0, 0, 8), want: ok, data: []byte{0x72, 0, 0, 0, 0, 0, 0, 0}},
	})
	lu.ReportedLUNsChanged()
	runSteps(t, lu, []step{
		{name: "REPORT LUNS passes the UA", cdb: cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0), want: ok},
		{name: "LUNs changed UA", cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x3f, 0x0e}},
		{name: "reported once", cdb: cdb(0x00), want: ok},
	})
	lu.NexusLost(nexusC)
	runSteps(t, lu, []step{
		{name: "new nexus after loss: power on UA", from: nexusC, cdb: cdb(0x00), want: want{StatusCheckCondition, keyUnitAttention, 0x29, 0}},
	})
}

func TestReserve6(t *testing.T) {
	lu := newTestLU(t)
	runSteps(t, lu, []step{
		{name: "RESERVE(6)", cdb: cdb(0x16), want: ok},
		{name: "holder reads", cdb: rw10(0x28, 0, 0, 1), want: ok},
		{name: "other reads", from: nexusB, cdb: rw10(0x28, 0, 0, 1), want: conflict},
		{name: "other INQUIRY", from: nexusB, cdb: cdb(0x12, 0, 0, 0, 36), want: ok},
		{name: "other RESERVE", from: nexusB, cdb: cdb(0x16), want: conflict},
		{name: "other RELEASE is a no-op", from: nexusB, cdb: cdb(0x17), want: ok},
		{name: "still reserved", from: nexusB, cdb: rw10(0x28, 0, 0, 1), want: conflict},
		{name: "RELEASE(6)", cdb: cdb(0x17), want: ok},
		{name: "other reads after release", from: nexusB, cdb: rw10(0x28, 0, 0, 1), want: ok},
		{name: "RESERVE(6) again", from: nexusB, cdb: cdb(0x16), want: ok},
	})
	lu.Reset(nexusA)
	runSteps(t, lu, []step{
		{name: "reset UA", cdb: rw10(0x28, 0, 0, 1), want: want{StatusCheckCondition, keyUnitAttention, 0x29, 0x03}},
		{name: "reset released B's reservation", cdb: rw10(0x28, 0, 0, 1), want: ok},
	})
}

func TestReportSupportedOpcodes(t *testing.T) {
	lu := newTestLU(t)
	rsoc := func(opts, op byte, sa uint16) []byte {
		c := cdb(0xa3, 0x0c, opts, op, byte(sa>>8), byte(sa), 0, 0, 0x10, 0)
		return c
	}
	runSteps(t, lu, []step{
		{name: "all", cdb: rsoc(0, 0, 0), want: ok, check: func(d []byte) bool {
			n := int(binary.BigEndian.Uint32(d))
			if n != len(d)-4 || n%8 != 0 {
				return false
			}
			found := 0
			for o := 4; o < len(d); o += 8 {
				if d[o] == 0x28 && binary.BigEndian.Uint16(d[o+6:]) == 10 {
					found++
				}
				if d[o] == 0x9e && binary.BigEndian.Uint16(d[o+2:]) == 0x10 && d[o+5]&1 == 1 {
					found++
				}
			}
			return found == 2
		}},
		{name: "all with timeouts", cdb: rsoc(0x80, 0, 0), want: ok, check: func(d []byte) bool { return (len(d)-4)%20 == 0 && d[4+5]&0x02 != 0 }},
		{name: "one: READ(10)", cdb: rsoc(1, 0x28, 0), want: ok, data: append([]byte{0, 3, 0, 10}, commands.find(0x28, []byte{0x28}).usage...)},
		{name: "one: unsupported", cdb: rsoc(1, 0xff, 0), want: ok, data: []byte{0, 1, 0, 0}},
		{name: "one: opcode with service actions", cdb: rsoc(1, 0x9e, 0), want: invalidCDB},
		{name: "service action: GET LBA STATUS", cdb: rsoc(2, 0x9e, 0x12), want: ok, check: func(d []byte) bool { return d[1] == 3 && d[4] == 0x9e && d[5] == 0x1f }},
		{name: "service action of a plain opcode", cdb: rsoc(2, 0x28, 0), want: invalidCDB},
		{name: "TMFs", cdb: cdb(0xa3, 0x0d, 0, 0, 0, 0, 0, 0, 0, 4), want: ok, data: []byte{0xca, 0, 0, 0}},
	})
	// Every usage map starts with its opcode and is as long as its CDB.
	for _, c := range commands {
		want := map[byte]int{0: 6, 1: 10, 2: 10, 4: 16, 5: 12}[c.op>>5]
		if c.usage[0] != c.op || len(c.usage) != want {
			t.Errorf("%s: usage map %x", c.name, c.usage)
		}
	}
}

func TestDataOutLength(t *testing.T) {
	for _, tc := range []struct {
		cdb  []byte
		want uint64
	}{
		{rw10(0x2a, 0, 0, 2), 1024},
		{cdb(0x0a, 0, 0, 0, 0), 256 * blockSize},
		{rw16(0x8a, 0, 0, 1<<31), 1 << 40},
		{func() []byte { c := rw16(0x89, 0, 0, 0); c[13] = 3; return c }(), 3 * 1024},
		{rw16(0x93, 0x08, 0, 100), blockSize},
		{rw16(0x93, 0x09, 0, 100), 0},
		{rw10(0x2f, 0x02, 0, 4), 4 * blockSize},
		{rw10(0x2f, 0x06, 0, 4), blockSize},
		{rw10(0x2f, 0, 0, 4), 0},
		{cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24), 24},
		{cdb(0x15, 0x10, 0, 0, 28), 28},
		{cdb(0x5f, 0, 0, 0, 0, 0, 0, 0, 24), 24},
		{xcopyCDB(60), 60},
		{rw10(0x28, 0, 0, 8), 0},
		{[]byte{0x2a, 0, 0}, 0},
		{nil, 0},
	} {
		if got := DataOutLength(tc.cdb); got != tc.want {
			t.Errorf("DataOutLength(%x) = %d, want %d", tc.cdb, got, tc.want)
		}
	}
}

func TestNoSuchLUNAndReportLUNs(t *testing.T) {
	r := NoSuchLUN(&Command{CDB: cdb(0x12, 0, 0, 0, 36)})
	check(t, "INQUIRY to no LUN", r, ok)
	if r.Data[0] != 0x7f || len(r.Data) != 36 {
		t.Fatalf("INQUIRY to no LUN: %x", r.Data)
	}
	r = NoSuchLUN(&Command{CDB: cdb(0x03, 0, 0, 0, 18)})
	check(t, "REQUEST SENSE to no LUN", r, ok)
	if r.Data[2] != keyIllegalRequest || r.Data[12] != 0x25 {
		t.Fatalf("REQUEST SENSE to no LUN: %x", r.Data)
	}
	check(t, "READ to no LUN", NoSuchLUN(&Command{CDB: rw10(0x28, 0, 0, 1)}), want{StatusCheckCondition, keyIllegalRequest, 0x25, 0})

	r = ReportLUNs(&Command{CDB: cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0)}, []uint64{0, 3, 300})
	check(t, "REPORT LUNS", r, ok)
	wantData := []byte{0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(r.Data, wantData) {
		t.Fatalf("REPORT LUNS data %x, want %x", r.Data, wantData)
	}
	check(t, "REPORT LUNS alloc < 16", ReportLUNs(&Command{CDB: cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8)}, []uint64{0}), invalidCDB)
	check(t, "REPORT LUNS select 7", ReportLUNs(&Command{CDB: cdb(0xa0, 0, 7, 0, 0, 0, 0, 0, 1, 0)}, []uint64{0}), invalidCDB)
	for _, l := range []uint64{0, 1, 255, 256, 16383} {
		var b [8]byte
		copy(b[:], EncodeLUN(l))
		if got, ok := DecodeLUN(b); !ok || got != l {
			t.Errorf("LUN %d round trip: %d %v", l, got, ok)
		}
	}
}
