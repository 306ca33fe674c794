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
	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/netsantest"
)

// statusConflict is the SAM status RESERVATION CONFLICT.
const statusConflict = 0x18

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
	connect := func(name string, isid [6]byte) *iscsitest.Initiator {
		t.Helper()
		var in *iscsitest.Initiator
		netsantest.WaitFor(t, "login of "+name, 20*time.Second, func() bool {
			var err error
			if in, err = iscsitest.Dial(portal); err != nil {
				return false
			}
			if _, err = in.Login(isid, 0, normalLogin(name, target)...); err != nil {
				in.Close()
				return false
			}
			return true
		})
		t.Cleanup(func() { in.Close() })
		return in
	}
	do := func(in *iscsitest.Initiator, what string, cdb, out []byte, readLen uint32) iscsitest.Result {
		t.Helper()
		res, err := in.CommandPastUA(0, cdb, out, readLen)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	mustGood := func(in *iscsitest.Initiator, what string, cdb, out []byte) {
		t.Helper()
		if res := do(in, what, cdb, out, 0); res.Status != 0 {
			t.Fatalf("%s: status %#x sense % x", what, res.Status, res.Sense)
		}
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	keyB := uint64(0xbbbb_0000_0000_0001)
	keyA := uint64(0xaaaa_0000_0000_0000)
	a, b := connect(initA, isidA), connect(initB, isidB)
	// All with APTPL: the reservation must survive power loss, and kill -9.
	register, reserve := iscsitest.PROut(iscsitest.PROutRegister, 0), iscsitest.PROut(iscsitest.PROutReserve, iscsitest.PRWriteExclusive)
	mustGood(a, "A REGISTER", register, iscsitest.PROutParams(0, keyA, true))
	mustGood(b, "B REGISTER", register, iscsitest.PROutParams(0, keyB, true))
	mustGood(a, "A RESERVE", reserve, iscsitest.PROutParams(keyA, 0, true))

	for r := range rounds {
		next := keyA + uint64(r+1)<<16 + rng.Uint64N(1<<16)
		mustGood(a, fmt.Sprintf("round %d: A REGISTER %#x→%#x", r, keyA, next), register, iscsitest.PROutParams(keyA, next, true))
		keyA = next // acknowledged: must survive what follows
		n.restart() // SIGKILL, then a fresh process
		a, b = connect(initA, isidA), connect(initB, isidB)

		res := do(a, "READ KEYS", iscsitest.PRIn(iscsitest.PRInReadKeys, 1024), nil, 1024)
		if res.Status != 0 || len(res.Data) < 8 {
			t.Fatalf("round %d: READ KEYS status %#x, %d bytes", r, res.Status, len(res.Data))
		}
		var keys []uint64
		for k := res.Data[8:min(len(res.Data), 8+int(binary.BigEndian.Uint32(res.Data[4:])))]; len(k) >= 8; k = k[8:] {
			keys = append(keys, binary.BigEndian.Uint64(k))
		}
		slices.Sort(keys)
		if want := []uint64{keyA, keyB}; !slices.Equal(keys, want) {
			t.Fatalf("round %d: after kill -9 the keys are %#x, want %#x", r, keys, want)
		}
		res = do(a, "READ RESERVATION", iscsitest.PRIn(iscsitest.PRInReadReservation, 1024), nil, 1024)
		if res.Status != 0 || len(res.Data) < 24 || binary.BigEndian.Uint32(res.Data[4:]) != 16 {
			t.Fatalf("round %d: READ RESERVATION status %#x data % x", r, res.Status, res.Data)
		}
		if k, typ := binary.BigEndian.Uint64(res.Data[8:]), res.Data[21]&0x0f; k != keyA || typ != iscsitest.PRWriteExclusive {
			t.Fatalf("round %d: reservation key %#x type %d, want %#x type %d", r, k, typ, keyA, iscsitest.PRWriteExclusive)
		}
		res = do(b, "B WRITE(10)", iscsitest.Write10(0, 1), bytes.Repeat([]byte{0xbb}, 512), 0)
		if res.Status != statusConflict {
			t.Fatalf("round %d: B's write under A's Write Exclusive: status %#x, want RESERVATION CONFLICT", r, res.Status)
		}
	}
	if !n.alive() {
		t.Fatal("netsan exited")
	}
	t.Logf("%d kill -9 restarts: every acknowledged key change and the reservation survived", rounds)
}
