package iscsi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// registrationsPreempted reports a CHECK CONDITION with UNIT ATTENTION,
// REGISTRATIONS PREEMPTED (2Ah/05h, fixed format).
func registrationsPreempted(status byte, sense []byte) bool {
	return status == 0x02 && len(sense) >= 14 && sense[2]&0x0f == 0x06 && sense[12] == 0x2a && sense[13] == 0x05
}

// prOut sends PERSISTENT RESERVE OUT with service action sa, type typ and
// the basic parameter list (no APTPL), and fails the test unless it is GOOD.
func (ri *rawInit) prOut(sa, typ byte, key, saKey uint64) {
	ri.t.Helper()
	if res := ri.command(0, iscsitest.PROut(sa, typ), iscsitest.PROutParams(key, saKey, false), 0); res.Status != 0 {
		ri.t.Fatalf("PERSISTENT RESERVE OUT %#x type %#x key %#x service action key %#x: status %#x sense %x", sa, typ, key, saKey, res.Status, res.Sense)
	}
}

// TestPreemptAndAbort: session B holds a Write Exclusive reservation and
// has a 64 KiB WRITE waiting for its Data-Out (R2T outstanding) when A
// preempts B's key. With PREEMPT AND ABORT (SPC-4 5.13.11.2.6) B's WRITE
// is aborted: no SCSI Response (TAS is 0), its late Data-Out writes
// nothing, and B's next command reports REGISTRATIONS PREEMPTED. With
// plain PREEMPT (5.13.11.2.4) the WRITE lives on: once its data is in it
// reaches the LU and reports the unit attention instead, writing nothing.
// Either way B's next WRITE meets A's reservation.
func TestPreemptAndAbort(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sa    byte
		abort bool
	}{
		{"PreemptAndAbort", iscsitest.PROutPreemptAndAbort, true},
		{"Preempt", iscsitest.PROutPreempt, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, oneDisk(8<<20, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit}))
			a, b := dial(t, ts.addr), dial(t, ts.addr)
			for _, s := range []struct {
				ri  *rawInit
				iqn string
			}{{a, testInitiator}, {b, otherInit}} {
				p := s.ri.login(testISID, 0, iscsitest.NormalKeys(s.iqn, testTarget,
					login.KV{Key: "InitialR2T", Value: "Yes"}, login.KV{Key: "ImmediateData", Value: "Yes"})...)
				if p.StatusClass != 0 || p.TSIH == 0 {
					t.Fatalf("%s: login status %d/%d", s.iqn, p.StatusClass, p.StatusDetail)
				}
				s.ri.turGood()
			}
			const keyA, keyB = 0xa, 0xb
			const lba, n = 64, 64 << 10
			orig := bytes.Repeat([]byte("A-data.."), n/8)
			if res := a.command(0, iscsitest.Write10(lba, n/512), orig, 0); res.Status != 0 {
				t.Fatalf("A's first write: status %#x sense %x", res.Status, res.Sense)
			}
			a.prOut(iscsitest.PROutRegister, 0, 0, keyA)
			b.prOut(iscsitest.PROutRegister, 0, 0, keyB)
			b.prOut(iscsitest.PROutReserve, iscsitest.PRWriteExclusive, keyB, 0)

			// B's WRITE, no immediate data: the target asks for it with an R2T.
			w := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite, InitiatorTaskTag: b.NextITT(),
				ExpectedDataTransferLength: n, CmdSN: b.CmdSN, ExpStatSN: b.ExpStatSN}
			b.CmdSN++
			copy(w.CDB[:], iscsitest.Write10(lba, n/512))
			b.send(w, nil)
			r2t := b.mustRecv(pdu.OpR2T)
			if r2t.InitiatorTaskTag != w.InitiatorTaskTag || r2t.BufferOffset != 0 || r2t.DesiredDataTransferLength != n {
				t.Fatalf("R2T %+v", r2t.Header)
			}

			if res := a.command(0, iscsitest.PROut(tc.sa, iscsitest.PRWriteExclusive), iscsitest.PROutParams(keyA, keyB, false), 0); res.Status != 0 {
				t.Fatalf("A's service action %#x: status %#x sense %x", tc.sa, res.Status, res.Sense)
			}

			// B's Data-Out, late: dropped if the WRITE was aborted.
			evil := bytes.Repeat([]byte("B-data.."), n/8)
			const chunk = 8192
			for off := uint32(0); off < n; off += chunk {
				d := pdu.Header{Opcode: pdu.OpSCSIDataOut, InitiatorTaskTag: w.InitiatorTaskTag, TargetTransferTag: r2t.TargetTransferTag,
					DataSN: off / chunk, BufferOffset: off, ExpStatSN: b.ExpStatSN}
				if off+chunk == n {
					d.Flags = pdu.FlagFinal
				}
				b.send(d, evil[off:off+chunk])
			}
			if tc.abort {
				// No response to the WRITE (tagged would fail on it); B's
				// next command reports the preemption.
				if res := b.command(0, iscsitest.TUR(), nil, 0); !registrationsPreempted(res.Status, res.Sense) {
					t.Fatalf("B's next command: status %#x sense %x, want UNIT ATTENTION 2Ah/05h", res.Status, res.Sense)
				}
			} else {
				// The WRITE runs once its data is in and, being B's next
				// command to reach the LU, reports the unit attention.
				p := b.mustRecv(pdu.OpSCSIResponse)
				if p.InitiatorTaskTag != w.InitiatorTaskTag || !registrationsPreempted(p.Status(), iscsitest.Sense(p)) {
					t.Fatalf("B's WRITE after PREEMPT: ITT %d status %#x sense %x, want ITT %d UNIT ATTENTION 2Ah/05h",
						p.InitiatorTaskTag, p.Status(), iscsitest.Sense(p), w.InitiatorTaskTag)
				}
			}
			if res := b.command(0, iscsitest.TUR(), nil, 0); res.Status != 0 {
				t.Fatalf("B's TEST UNIT READY after the unit attention: status %#x sense %x", res.Status, res.Sense)
			}
			// A holds Write Exclusive and B is no registrant any more.
			if res := b.command(0, iscsitest.Write10(lba, 1), evil[:512], 0); res.Status != 0x18 {
				t.Fatalf("B's WRITE: status %#x sense %x, want RESERVATION CONFLICT", res.Status, res.Sense)
			}

			res := a.command(0, iscsitest.Read10(lba, n/512), nil, n)
			if res.Status != 0 || !bytes.Equal(res.Data, orig) {
				t.Fatalf("read back: status %#x sense %x, unchanged %v", res.Status, res.Sense, bytes.Equal(res.Data, orig))
			}
			// READ RESERVATION: A holds a Write Exclusive reservation now.
			res = a.command(0, iscsitest.PRIn(iscsitest.PRInReadReservation, 64), nil, 64)
			if data := res.Data; res.Status != 0 || len(data) < 24 || binary.BigEndian.Uint32(data[4:]) != 16 ||
				binary.BigEndian.Uint64(data[8:]) != keyA || data[21]&0x0f != iscsitest.PRWriteExclusive {
				t.Fatalf("READ RESERVATION: status %#x sense %x data %x", res.Status, res.Sense, data)
			}
		})
	}
}
