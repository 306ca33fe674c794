package iscsi

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// connSeed builds a byte stream an initiator could send: PDUs one after
// the other.
func connSeed(pdus ...func(w *pdu.Writer)) []byte {
	var b bytes.Buffer
	w := &pdu.Writer{W: &b}
	for _, p := range pdus {
		p(w)
	}
	return b.Bytes()
}

func loginPDU(kvs ...login.KV) func(w *pdu.Writer) {
	return func(w *pdu.Writer) {
		w.Write(&pdu.Header{Opcode: pdu.OpLoginRequest, Immediate: true, Flags: pdu.LoginFlags(pdu.StageOperational, pdu.StageFullFeature, true),
			ISID: testISID, InitiatorTaskTag: 1, CmdSN: 1}, login.EncodeText(nil, kvs))
	}
}

func cmdPDU(cdb []byte, flags byte, edtl uint32, data []byte) func(w *pdu.Writer) {
	return func(w *pdu.Writer) {
		h := pdu.Header{Opcode: pdu.OpSCSICommand, Flags: pdu.FlagFinal | flags, InitiatorTaskTag: 2,
			ExpectedDataTransferLength: edtl, CmdSN: 1}
		copy(h.CDB[:], cdb)
		w.Write(&h, data)
	}
}

// FuzzConn feeds arbitrary bytes to a connection, as a hostile initiator
// would: the target must neither panic nor hang.
func FuzzConn(f *testing.F) {
	normal := loginPDU(iscsitest.NormalKeys(testInitiator, testTarget)...)
	f.Add(connSeed(normal, cmdPDU(iscsitest.TUR(), 0, 0, nil)))
	f.Add(connSeed(normal, cmdPDU(iscsitest.Read10(0, 1), pdu.FlagRead, 512, nil)))
	f.Add(connSeed(normal, cmdPDU(iscsitest.Write10(0, 2), pdu.FlagWrite, 1024, make([]byte, 512)), func(w *pdu.Writer) {
		w.Write(&pdu.Header{Opcode: pdu.OpSCSIDataOut, Flags: pdu.FlagFinal, InitiatorTaskTag: 2, TargetTransferTag: reservedTag,
			DataSN: 0, BufferOffset: 512}, make([]byte, 512))
	}))
	f.Add(connSeed(normal, func(w *pdu.Writer) {
		w.Write(&pdu.Header{Opcode: pdu.OpTaskMgmtRequest, Immediate: true, Flags: pdu.FlagFinal | byte(pdu.TMFLUNReset), InitiatorTaskTag: 3}, nil)
	}))
	f.Add(connSeed(loginPDU(login.KV{Key: "InitiatorName", Value: testInitiator}, login.KV{Key: "SessionType", Value: "Discovery"}),
		func(w *pdu.Writer) {
			w.Write(&pdu.Header{Opcode: pdu.OpTextRequest, Immediate: true, Flags: pdu.FlagFinal, InitiatorTaskTag: 2,
				TargetTransferTag: reservedTag}, []byte("SendTargets=All\x00"))
		}))
	f.Add([]byte("garbage"))

	core, logs := observer.New(zap.WarnLevel)
	cfg := oneDisk(1 << 20)
	cfg.Targets[0].LUNs[0].Path = f.TempDir() + "/fuzz.img"
	srv, err := New(cfg, zap.New(core))
	if err != nil {
		f.Fatal(err)
	}
	srv.LoginTimeout = time.Second
	f.Cleanup(srv.targets.close)

	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		c := srv.newConn(a)
		go c.serve()
		go io.Copy(io.Discard, b)
		b.SetWriteDeadline(time.Now().Add(2 * time.Second))
		b.Write(in)
		b.Close()
		select {
		case <-c.finished:
		case <-time.After(10 * time.Second):
			t.Fatal("connection still being served 10 s after the initiator hung up")
		}
		if n := logs.FilterMessageSnippet("panicked").Len(); n > 0 {
			t.Fatalf("%d panics: %v", n, logs.FilterMessageSnippet("panicked").All()[0].ContextMap())
		}
	})
}
