package scsi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentCommands runs writers, readers and COMPARE AND WRITE
// incrementers on one LU at once (run it with -race). Each writer owns a
// disjoint range; the incrementers share one counter block, so lost
// updates would show as a wrong final count.
func TestConcurrentCommands(t *testing.T) {
	lu := newTestLU(t)
	const (
		writers = 4
		rounds  = 50
		incs    = 4
		perInc  = 25
	)
	counter := uint64(testBlocks - 1)
	var wg sync.WaitGroup
	errs := make(chan error, writers+incs)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := Nexus{InitiatorName: fmt.Sprintf("iqn.2026-11.test:w%d", w)}
			run(lu, n, cdb(0x00), nil) // power-on UA
			lba := uint32(w * 64)
			for i := 0; i < rounds; i++ {
				data := fill(8*blockSize, byte(i+w))
				if r := run(lu, n, rw10(0x2a, 0, lba, 8), data); r.Status != StatusGood {
					errs <- fmt.Errorf("writer %d: write status %#x", w, r.Status)
					return
				}
				r := run(lu, n, rw10(0x28, 0, lba, 8), nil)
				same := bytes.Equal(r.Data, data)
				r.Release()
				if !same {
					errs <- fmt.Errorf("writer %d round %d: read back differs", w, i)
					return
				}
			}
		}(w)
	}
	for c := 0; c < incs; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			n := Nexus{InitiatorName: fmt.Sprintf("iqn.2026-11.test:c%d", c)}
			run(lu, n, cdb(0x00), nil)
			for done, tries := 0, 0; done < perInc; tries++ {
				if tries > 100000 {
					errs <- fmt.Errorf("incrementer %d: no progress", c)
					return
				}
				r := run(lu, n, rw16(0x88, 0, counter, 1), nil)
				old := append([]byte{}, r.Data...)
				r.Release()
				next := make([]byte, blockSize)
				binary.BigEndian.PutUint64(next, binary.BigEndian.Uint64(old)+1)
				caw := rw16(0x89, 0, counter, 0)
				caw[13] = 1
				r = run(lu, n, caw, append(old, next...))
				switch r.Status {
				case StatusGood:
					done++
				case StatusCheckCondition:
					if r.Sense[2] != keyMiscompare {
						errs <- fmt.Errorf("incrementer %d: sense %x", c, r.Sense)
						return
					}
				default:
					errs <- fmt.Errorf("incrementer %d: status %#x", c, r.Status)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r := run(lu, nexusA, rw16(0x88, 0, counter, 1), nil)
	defer r.Release()
	if got := binary.BigEndian.Uint64(r.Data); got != incs*perInc {
		t.Fatalf("counter %d after %d COMPARE AND WRITE increments", got, incs*perInc)
	}
}
