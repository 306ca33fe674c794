package scsi

import (
	"sync/atomic"
	"testing"
)

// BenchmarkRead4K measures the command path of a 4 KiB READ(10) from the
// page cache: dispatch, admission, ReadAt into a pooled buffer, release.
func BenchmarkRead4K(b *testing.B) {
	lu := newTestLU(b)
	var lba atomic.Uint32
	b.ReportAllocs()
	b.SetBytes(4096)
	b.RunParallel(func(pb *testing.PB) {
		cmd := &Command{CDB: rw10(0x28, 0, 0, 8), Nexus: nexusA}
		for pb.Next() {
			l := lba.Add(8) % (testBlocks - 8)
			cmd.CDB[2], cmd.CDB[3], cmd.CDB[4], cmd.CDB[5] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
			r := lu.Execute(cmd)
			if r.Status != StatusGood {
				b.Fatalf("status %#x", r.Status)
			}
			r.Release()
		}
	})
}
