package faults

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// Persistent reservation service actions and types (SPC-4 6.15, 6.16).
const (
	prinReadKeys        = 0x00
	prinReadReservation = 0x01
	proutRegister       = 0x00
	proutReserve        = 0x01
	prWriteExclusive    = 0x01
	statusConflict      = 0x18
)

func proutCDB(sa, typ byte) []byte {
	c := make([]byte, 10)
	c[0], c[1], c[2] = 0x5f, sa, typ
	binary.BigEndian.PutUint32(c[5:], 24)
	return c
}

// proutParams is the basic 24-byte parameter list with APTPL set.
func proutParams(key, saKey uint64) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p, key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	p[20] = 0x01 // APTPL: keep it across power loss
	return p
}

func prinCDB(sa byte) []byte {
	c := make([]byte, 10)
	c[0], c[1] = 0x5e, sa
	binary.BigEndian.PutUint16(c[7:], 1024)
	return c
}

// TestPersistentReservationsSurviveKill9: initiator A registers and takes a
// Write Exclusive reservation, B registers, all with APTPL; then, round
// after round, A changes its key and netsan is killed with SIGKILL the
// moment the change is acknowledged. After each restart READ KEYS and READ
// RESERVATION show exactly the last acknowledged state, and B's WRITE is
// still refused with RESERVATION CONFLICT.
func TestPersistentReservationsSurviveKill9(t *testing.T) {
	const rounds = 20
	dir := t.TempDir()
	port := netsantest.FreePort(t, "tcp")
	initA, initB := testBase+":a", testBase+":b"
	target := testBase + ":shared"
	path := writeInventory(t, dir, inventorytest.Loopback("data", 0, port, testBase)+fmt.Sprintf(`[[target]]
name = "shared"
luns = [ { lun = 0, image = "shared.img", size = "8MiB" } ]
[[target.acl]]
initiator = %q
[[target.acl]]
initiator = %q
`, initA, initB))
	portal := fmt.Sprintf("127.0.0.1:%d", port)
	n := startNetsan(t, path, "", "")
	isidA, isidB := [6]byte{0x80, 0, 0, 0, 0xa, 1}, [6]byte{0x80, 0, 0, 0, 0xb, 1}

	// connect logs in, retrying while the restarted target opens its port.
	connect := func(name string, isid [6]byte) *initiator {
		t.Helper()
		var in *initiator
		netsantest.WaitFor(t, "login of "+name, 20*time.Second, func() bool {
			var err error
			if in, err = dialInitiator(portal); err != nil {
				return false
			}
			if err = in.login(name, target, isid); err != nil {
				in.Close()
				return false
			}
			return true
		})
		t.Cleanup(func() { in.Close() })
		return in
	}
	do := func(in *initiator, what string, cdb, out []byte, readLen uint32) result {
		t.Helper()
		res, err := in.commandPastUA(0, cdb, out, readLen)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	mustGood := func(in *initiator, what string, cdb, out []byte) {
		t.Helper()
		if res := do(in, what, cdb, out, 0); res.status != 0 {
			t.Fatalf("%s: status %#x sense % x", what, res.status, res.sense)
		}
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	keyB := uint64(0xbbbb_0000_0000_0001)
	keyA := uint64(0xaaaa_0000_0000_0000)
	a, b := connect(initA, isidA), connect(initB, isidB)
	mustGood(a, "A REGISTER", proutCDB(proutRegister, 0), proutParams(0, keyA))
	mustGood(b, "B REGISTER", proutCDB(proutRegister, 0), proutParams(0, keyB))
	mustGood(a, "A RESERVE", proutCDB(proutReserve, prWriteExclusive), proutParams(keyA, 0))

	for r := range rounds {
		next := keyA + uint64(r+1)<<16 + rng.Uint64N(1<<16)
		mustGood(a, fmt.Sprintf("round %d: A REGISTER %#x→%#x", r, keyA, next), proutCDB(proutRegister, 0), proutParams(keyA, next))
		keyA = next // acknowledged: must survive what follows
		n.restart() // SIGKILL, then a fresh process
		a, b = connect(initA, isidA), connect(initB, isidB)

		res := do(a, "READ KEYS", prinCDB(prinReadKeys), nil, 1024)
		if res.status != 0 || len(res.data) < 8 {
			t.Fatalf("round %d: READ KEYS status %#x, %d bytes", r, res.status, len(res.data))
		}
		var keys []uint64
		for k := res.data[8:min(len(res.data), 8+int(binary.BigEndian.Uint32(res.data[4:])))]; len(k) >= 8; k = k[8:] {
			keys = append(keys, binary.BigEndian.Uint64(k))
		}
		slices.Sort(keys)
		if want := []uint64{keyA, keyB}; !slices.Equal(keys, want) {
			t.Fatalf("round %d: after kill -9 the keys are %#x, want %#x", r, keys, want)
		}
		res = do(a, "READ RESERVATION", prinCDB(prinReadReservation), nil, 1024)
		if res.status != 0 || len(res.data) < 24 || binary.BigEndian.Uint32(res.data[4:]) != 16 {
			t.Fatalf("round %d: READ RESERVATION status %#x data % x", r, res.status, res.data)
		}
		if k, typ := binary.BigEndian.Uint64(res.data[8:]), res.data[21]&0x0f; k != keyA || typ != prWriteExclusive {
			t.Fatalf("round %d: reservation key %#x type %d, want %#x type %d", r, k, typ, keyA, prWriteExclusive)
		}
		res = do(b, "B WRITE(10)", []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, bytes.Repeat([]byte{0xbb}, 512), 0)
		if res.status != statusConflict {
			t.Fatalf("round %d: B's write under A's Write Exclusive: status %#x, want RESERVATION CONFLICT", r, res.status)
		}
	}
	if !n.alive() {
		t.Fatal("netsan exited")
	}
	t.Logf("%d kill -9 restarts: every acknowledged key change and the reservation survived", rounds)
}
