package iscsi

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// Persistent reservation pieces (SPC-4 6.15, 6.16).
const (
	prRegister        = 0x0
	prReserve         = 0x1
	prPreempt         = 0x4
	prPreemptAndAbort = 0x5
	prTypeWE          = 0x1 // write exclusive
)

// prOutCDB is PERSISTENT RESERVE OUT with a 24-byte parameter list.
func prOutCDB(sa, typ byte) []byte {
	c := make([]byte, 10)
	c[0], c[1], c[2] = 0x5f, sa, typ
	binary.BigEndian.PutUint32(c[5:], 24)
	return c
}

func prOutParams(key, saKey uint64) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p, key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	return p
}

// responseSense is the sense data of a SCSI Response (RFC 7143 §11.4.7).
func responseSense(p *pdu.PDU) []byte {
	if len(p.Data) > 2 {
		return p.Data[2:]
	}
	return nil
}

// registrationsPreempted reports a CHECK CONDITION with UNIT ATTENTION,
// REGISTRATIONS PREEMPTED (2Ah/05h, fixed format).
func registrationsPreempted(status byte, sense []byte) bool {
	return status == 0x02 && len(sense) >= 14 && sense[2]&0x0f == 0x06 && sense[12] == 0x2a && sense[13] == 0x05
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
		{"PreemptAndAbort", prPreemptAndAbort, true},
		{"Preempt", prPreempt, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, oneDisk(8<<20, ACL{Initiator: testInitiator}, ACL{Initiator: otherInit}))
			a, b := dial(t, ts.addr), dial(t, ts.addr)
			for _, s := range []struct {
				ri  *rawInit
				iqn string
			}{{a, testInitiator}, {b, otherInit}} {
				p := s.ri.login(testISID, 0, normalKeys(s.iqn, testTarget,
					login.KV{Key: "InitialR2T", Value: "Yes"}, login.KV{Key: "ImmediateData", Value: "Yes"})...)
				if p.StatusClass != 0 || p.TSIH == 0 {
					t.Fatalf("%s: login status %d/%d", s.iqn, p.StatusClass, p.StatusDetail)
				}
				s.ri.turGood()
			}
			const keyA, keyB = 0xa, 0xb
			const lba, n = 64, 64 << 10
			orig := bytes.Repeat([]byte("A-data.."), n/8)
			if st, _, sense := a.commandLUN(0, write10(lba, n/512), n, false, orig); st != 0 {
				t.Fatalf("A's first write: status %#x sense %x", st, sense)
			}
			for _, s := range []struct {
				ri  *rawInit
				key uint64
			}{{a, keyA}, {b, keyB}} {
				if st, _, sense := s.ri.commandLUN(0, prOutCDB(prRegister, 0), 24, false, prOutParams(0, s.key)); st != 0 {
					t.Fatalf("REGISTER %#x: status %#x sense %x", s.key, st, sense)
				}
			}
			if st, _, sense := b.commandLUN(0, prOutCDB(prReserve, prTypeWE), 24, false, prOutParams(keyB, 0)); st != 0 {
				t.Fatalf("B's RESERVE: status %#x sense %x", st, sense)
			}

			// B's WRITE, no immediate data: the target asks for it with an R2T.
			w := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | pdu.FlagWrite, InitiatorTaskTag: b.nextITT(),
				ExpectedDataTransferLength: n, CmdSN: b.cmdSN, ExpStatSN: b.expStatSN}
			b.cmdSN++
			copy(w.CDB[:], write10(lba, n/512))
			b.send(w, nil)
			r2t := b.mustRecv(pdu.OpR2T)
			if r2t.InitiatorTaskTag != w.InitiatorTaskTag || r2t.BufferOffset != 0 || r2t.DesiredDataTransferLength != n {
				t.Fatalf("R2T %+v", r2t.Header)
			}

			if st, _, sense := a.commandLUN(0, prOutCDB(tc.sa, prTypeWE), 24, false, prOutParams(keyA, keyB)); st != 0 {
				t.Fatalf("A's service action %#x: status %#x sense %x", tc.sa, st, sense)
			}

			// B's Data-Out, late: dropped if the WRITE was aborted.
			evil := bytes.Repeat([]byte("B-data.."), n/8)
			const chunk = 8192
			for off := uint32(0); off < n; off += chunk {
				d := pdu.Header{Opcode: pdu.OpSCSIDataOut, InitiatorTaskTag: w.InitiatorTaskTag, TargetTransferTag: r2t.TargetTransferTag,
					DataSN: off / chunk, BufferOffset: off, ExpStatSN: b.expStatSN}
				if off+chunk == n {
					d.Flags = pdu.FlagFinal
				}
				b.send(d, evil[off:off+chunk])
			}
			if tc.abort {
				// No response to the WRITE (tagged would fail on it); B's
				// next command reports the preemption.
				if st, _, sense := b.commandLUN(0, tur(), 0, false, nil); !registrationsPreempted(st, sense) {
					t.Fatalf("B's next command: status %#x sense %x, want UNIT ATTENTION 2Ah/05h", st, sense)
				}
			} else {
				// The WRITE runs once its data is in and, being B's next
				// command to reach the LU, reports the unit attention.
				p := b.mustRecv(pdu.OpSCSIResponse)
				b.expStatSN = p.StatSN + 1
				if p.InitiatorTaskTag != w.InitiatorTaskTag || !registrationsPreempted(p.Status(), responseSense(p)) {
					t.Fatalf("B's WRITE after PREEMPT: ITT %d status %#x sense %x, want ITT %d UNIT ATTENTION 2Ah/05h",
						p.InitiatorTaskTag, p.Status(), responseSense(p), w.InitiatorTaskTag)
				}
			}
			if st, _, sense := b.commandLUN(0, tur(), 0, false, nil); st != 0 {
				t.Fatalf("B's TEST UNIT READY after the unit attention: status %#x sense %x", st, sense)
			}
			// A holds Write Exclusive and B is no registrant any more.
			if st, _, sense := b.commandLUN(0, write10(lba, 1), 512, false, evil[:512]); st != 0x18 {
				t.Fatalf("B's WRITE: status %#x sense %x, want RESERVATION CONFLICT", st, sense)
			}

			st, data, sense := a.commandLUN(0, read10(lba, n/512), n, true, nil)
			if st != 0 || !bytes.Equal(data, orig) {
				t.Fatalf("read back: status %#x sense %x, unchanged %v", st, sense, bytes.Equal(data, orig))
			}
			// READ RESERVATION: A holds a Write Exclusive reservation now.
			rr := make([]byte, 10)
			rr[0], rr[1] = 0x5e, 0x01
			binary.BigEndian.PutUint16(rr[7:], 64)
			st, data, sense = a.commandLUN(0, rr, 64, true, nil)
			if st != 0 || len(data) < 24 || binary.BigEndian.Uint32(data[4:]) != 16 ||
				binary.BigEndian.Uint64(data[8:]) != keyA || data[21]&0x0f != prTypeWE {
				t.Fatalf("READ RESERVATION: status %#x sense %x data %x", st, sense, data)
			}
		})
	}
}
