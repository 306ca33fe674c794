package scsi

import (
	"encoding/binary"
	"testing"
)

// xcopyList builds an EXTENDED COPY(LID1) parameter list: one
// identification target descriptor per designator, then block-to-block
// segments.
func xcopyList(listID, usage byte, targets [][]byte, segs [][4]uint64) []byte {
	p := make([]byte, 16)
	p[0], p[1] = listID, usage<<3
	for _, id := range targets {
		d := make([]byte, 32)
		d[0] = 0xe4
		d[4], d[5], d[7] = 0x01, 0x03, byte(len(id))
		copy(d[8:], id)
		binary.BigEndian.PutUint32(d[28:], blockSize)
		p = append(p, d...)
	}
	binary.BigEndian.PutUint16(p[2:], uint16(32*len(targets)))
	for _, s := range segs { // src index, dst index (as s[0]<<16|s[1]), blocks, src lba, dst lba
		d := make([]byte, 28)
		d[0] = 0x02
		binary.BigEndian.PutUint16(d[2:], 24)
		binary.BigEndian.PutUint16(d[4:], uint16(s[0]>>16))
		binary.BigEndian.PutUint16(d[6:], uint16(s[0]))
		binary.BigEndian.PutUint16(d[10:], uint16(s[1]))
		binary.BigEndian.PutUint64(d[12:], s[2])
		binary.BigEndian.PutUint64(d[20:], s[3])
		p = append(p, d...)
	}
	binary.BigEndian.PutUint32(p[8:], uint32(len(p)-16-32*len(targets)))
	return p
}

func xcopyCDB(n int) []byte {
	c := cdb(0x83)
	binary.BigEndian.PutUint32(c[10:], uint32(n))
	return c
}

func TestExtendedCopy(t *testing.T) {
	lu := newTestLU(t)
	self := lu.naa()
	good := xcopyList(1, 0, [][]byte{self}, [][4]uint64{{0, 8, 0, 100}})
	other := xcopyList(1, 0, [][]byte{{0x30, 1, 2, 3, 4, 5, 6, 7}}, [][4]uint64{{0, 8, 0, 100}})
	toIndex1 := xcopyList(1, 0, [][]byte{self}, [][4]uint64{{1, 8, 0, 100}})
	beyond := xcopyList(1, 0, [][]byte{self}, [][4]uint64{{0, 8, 0, testBlocks - 4}})
	tooMany := xcopyList(1, 0, [][]byte{self, self, self}, [][4]uint64{{0, 8, 0, 100}})
	badType := append([]byte{}, good...)
	badType[16] = 0xe0
	badSeg := append([]byte{}, good...)
	badSeg[48] = 0x03
	rcr := func(sa, list byte) []byte { c := cdb(0x84, sa, list); c[13] = 0xff; return c }
	copyAborted := want{StatusCheckCondition, keyCopyAborted, 0x0d, 0x02}
	runSteps(t, lu, []step{
		{name: "source data", cdb: rw10(0x2a, 0, 0, 8), out: fill(8*blockSize, 0x5c), want: ok},
		{name: "no status yet", cdb: rcr(0, 1), want: invalidCDB},
		{name: "copy", cdb: xcopyCDB(len(good)), out: good, want: ok},
		{name: "copied", cdb: rw10(0x28, 0, 100, 8), want: ok, data: fill(8*blockSize, 0x5c)},
		{name: "copy status", cdb: rcr(0, 1), want: ok, check: func(d []byte) bool {
			return d[4] == 1 && binary.BigEndian.Uint16(d[5:]) == 1 && d[7] == 0xf1 && binary.BigEndian.Uint32(d[8:]) == 4
		}},
		{name: "status reported once", cdb: rcr(0, 1), want: invalidCDB},
		{name: "operating parameters", cdb: rcr(3, 0), want: ok, check: func(d []byte) bool {
			return binary.BigEndian.Uint16(d[8:]) == xcopyMaxTargets && binary.BigEndian.Uint16(d[10:]) == xcopyMaxSegments && d[43] == 2
		}},
		{name: "empty list", cdb: xcopyCDB(0), want: ok},
		{name: "truncated", cdb: xcopyCDB(len(good) - 1), out: good[:len(good)-1], want: paramLen},
		{name: "another LU", cdb: xcopyCDB(len(other)), out: other, want: copyAborted},
		{name: "missing target index", cdb: xcopyCDB(len(toIndex1)), out: toIndex1, want: copyAborted},
		{name: "beyond the end", cdb: xcopyCDB(len(beyond)), out: beyond, want: want{StatusCheckCondition, keyCopyAborted, 0, 0}},
		{name: "too many targets", cdb: xcopyCDB(len(tooMany)), out: tooMany, want: want{StatusCheckCondition, keyIllegalRequest, 0x26, 6}},
		{name: "target type", cdb: xcopyCDB(len(badType)), out: badType, want: want{StatusCheckCondition, keyIllegalRequest, 0x26, 7}},
		{name: "segment type", cdb: xcopyCDB(len(badSeg)), out: badSeg, want: want{StatusCheckCondition, keyIllegalRequest, 0x26, 9}},
		{name: "third-party copy VPD", cdb: cdb(0x12, 1, 0x8f, 0, 0xff), want: ok, data: []byte{0, 0x8f, 0, 12, 0, 1, 0, 8, 7, 0x83, 1, 0, 0x84, 2, 0, 3}},
	})
}
