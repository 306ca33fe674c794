package pdu

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestDigestVectors(t *testing.T) {
	// RFC 3720 Appendix B.4 CRC examples.
	zeros := make([]byte, 32)
	ones := bytes.Repeat([]byte{0xff}, 32)
	inc := make([]byte, 32)
	for i := range inc {
		inc[i] = byte(i)
	}
	for _, tc := range []struct {
		in   []byte
		want uint32
	}{{zeros, 0x8a9136aa}, {ones, 0x62a8ab43}, {inc, 0x46dd794e}} {
		if got := Digest(tc.in); got != tc.want {
			t.Errorf("Digest(% x…) = %#x, want %#x", tc.in[:4], got, tc.want)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	full := Header{
		Immediate: true, Flags: 0x81, Byte2: 2, Byte3: 3, DataSegmentLength: 0x123456,
		LUN: 0x0001000000000000, ISID: [6]byte{0x80, 1, 2, 3, 4, 5}, TSIH: 7,
		InitiatorTaskTag: 0x11111111, TargetTransferTag: 0x22222222, CID: 9, CmdSN: 0x33, ExpStatSN: 0x44,
		StatSN: 0x55, ExpCmdSN: 0x66, MaxCmdSN: 0x77, ExpectedDataTransferLength: 0x88,
		CDB: [16]byte{0x28, 1, 2, 3}, ReferencedTaskTag: 0x99, RefCmdSN: 0xaa, ExpDataSN: 0xbb, DataSN: 0xcc,
		BufferOffset: 0xdd, DesiredDataTransferLength: 0xee, ResidualCount: 0xff, BidiReadResidualCount: 0x101,
		SNACKTag: 0x102, BegRun: 0x103, RunLength: 0x104, StatusClass: 2, StatusDetail: 1, Time2Wait: 2,
		Time2Retain: 20, AsyncEvent: 1, AsyncVCode: 2, Parameter1: 3, Parameter2: 4, Parameter3: 5,
	}
	for op, fields := range layouts {
		h := full
		h.Opcode = op
		var b [BHSLength]byte
		h.Encode(b[:])
		var got Header
		if err := got.Decode(b[:]); err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		// Every field the layout names must survive; others decode as zero.
		want := Header{Opcode: op, Immediate: true, Flags: 0x81, DataSegmentLength: 0x123456, InitiatorTaskTag: 0x11111111}
		for _, f := range fields {
			switch p := f.ptr(&want).(type) {
			case *byte:
				*p = *f.ptr(&full).(*byte)
			case *uint16:
				*p = *f.ptr(&full).(*uint16)
			case *uint32:
				*p = *f.ptr(&full).(*uint32)
			case *uint64:
				*p = *f.ptr(&full).(*uint64)
			case *[6]byte:
				*p = *f.ptr(&full).(*[6]byte)
			case *[16]byte:
				*p = *f.ptr(&full).(*[16]byte)
			}
		}
		if got != want {
			t.Errorf("%v: round trip\n got %+v\nwant %+v", op, got, want)
		}
	}
}

func TestLayoutsDoNotOverlap(t *testing.T) {
	for op, fields := range layouts {
		var used [BHSLength]bool
		for i := range 8 {
			used[i] = i < 2 || i >= 4 // bytes 0,1 and 4-7 are common
		}
		for i := 16; i < 20; i++ {
			used[i] = true
		}
		used[2], used[3] = false, false
		for _, f := range fields {
			for i := f.off; i < f.off+f.width; i++ {
				if used[i] {
					t.Errorf("%v: byte %d used twice", op, i)
				}
				used[i] = true
			}
		}
	}
}

func TestKnownBytes(t *testing.T) {
	// A SCSI Command as libiscsi sends READ(10) of 8 blocks at LBA 0x10, LUN 1.
	raw := make([]byte, BHSLength)
	raw[0] = 0x01
	raw[1] = 0xc1
	raw[9] = 0x01
	copy(raw[16:], []byte{0, 0, 0, 5, 0, 0, 0x10, 0, 0, 0, 0, 7, 0, 0, 0, 3})
	raw[32] = 0x28
	raw[37] = 0x10
	raw[40] = 8
	var h Header
	if err := h.Decode(raw); err != nil {
		t.Fatal(err)
	}
	if h.Opcode != OpSCSICommand || h.LUN != 1<<48 || h.InitiatorTaskTag != 5 || h.ExpectedDataTransferLength != 4096 ||
		h.CmdSN != 7 || h.ExpStatSN != 3 || h.CDB[0] != 0x28 || h.Flags&FlagRead == 0 || !h.Final() {
		t.Fatalf("decoded %+v", h)
	}
	var back [BHSLength]byte
	h.Encode(back[:])
	if !bytes.Equal(back[:], raw) {
		t.Fatalf("re-encoded\n% x\nwant\n% x", back, raw)
	}
}

func TestReadWrite(t *testing.T) {
	pool := new(Pool)
	for _, digests := range []bool{false, true} {
		for _, n := range []int{0, 1, 3, 4, 4097} {
			var buf bytes.Buffer
			w := Writer{W: &buf, HeaderDigest: digests, DataDigest: digests}
			data := bytes.Repeat([]byte{0xa5}, n)
			h := Header{Opcode: OpSCSIDataIn, Flags: FlagFinal | FlagStatus, InitiatorTaskTag: 42, DataSN: 1}
			if err := w.Write(&h, data); err != nil {
				t.Fatal(err)
			}
			want := BHSLength + n + int(Pad(uint32(n)))
			if digests {
				want += 4
				if n > 0 {
					want += 4
				}
			}
			if buf.Len() != want {
				t.Errorf("digests=%v n=%d: wrote %d bytes, want %d", digests, n, buf.Len(), want)
			}
			// Read it twice: into a pooled buffer, and placed 7 bytes into
			// a caller's buffer (where an iSCSI write's data is used).
			wire := bytes.Clone(buf.Bytes())
			dst := make([]byte, n+16)
			for _, place := range []bool{false, true} {
				r := Reader{R: bytes.NewReader(wire), Pool: pool, HeaderDigest: digests, DataDigest: digests, MaxRecvDataSegmentLength: 8192}
				if place {
					r.Place = func(h *Header) ([]byte, bool) { return dst[7 : 7+h.DataSegmentLength], false }
				}
				var p PDU
				if err := r.Read(&p); err != nil {
					t.Fatalf("digests=%v n=%d place=%v: %v", digests, n, place, err)
				}
				if p.InitiatorTaskTag != 42 || p.DataSN != 1 || !bytes.Equal(p.Data, data) {
					t.Errorf("digests=%v n=%d place=%v: read back %+v", digests, n, place, p.Header)
				}
				if place && n > 0 && (&p.Data[0] != &dst[7] || !bytes.Equal(dst[7:7+n], data) || dst[7+n] != 0) {
					t.Errorf("n=%d: data not read into the placed buffer exactly", n)
				}
				p.Release()
				if r.Buffered() != 0 {
					t.Errorf("%d bytes left unread", r.Buffered())
				}
			}
		}
	}
}

func TestReadErrors(t *testing.T) {
	pool := new(Pool)
	encode := func(digests bool, h Header, data []byte) []byte {
		var buf bytes.Buffer
		w := Writer{W: &buf, HeaderDigest: digests, DataDigest: digests}
		if err := w.Write(&h, data); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := encode(true, Header{Opcode: OpNOPOut, Flags: FlagFinal}, []byte("ping"))

	badHdr := bytes.Clone(good)
	badHdr[20] ^= 1
	badData := bytes.Clone(good)
	badData[BHSLength+4] ^= 1
	tooLong := encode(false, Header{Opcode: OpNOPOut, Flags: FlagFinal}, make([]byte, 600))
	unknown := encode(false, Header{Opcode: 0x1c}, nil)

	for _, tc := range []struct {
		name    string
		in      []byte
		digests bool
		want    error
	}{
		{"truncated BHS", good[:20], true, io.ErrUnexpectedEOF},
		{"truncated data", good[:BHSLength+4+2], true, io.ErrUnexpectedEOF},
		{"header digest", badHdr, true, ErrHeaderDigest},
		{"data digest", badData, true, ErrDataDigest},
		{"data digest, placed", badData, true, ErrDataDigest},
		{"too long", tooLong, false, ErrDataTooLong},
		{"unknown opcode", unknown, false, ErrUnknownOpcode},
	} {
		r := Reader{R: bytes.NewReader(tc.in), Pool: pool, HeaderDigest: tc.digests, DataDigest: tc.digests, MaxRecvDataSegmentLength: 512}
		if strings.HasSuffix(tc.name, "placed") {
			r.Place = func(h *Header) ([]byte, bool) { return make([]byte, h.DataSegmentLength), false }
		}
		var p PDU
		err := r.Read(&p)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		p.Release()
	}
	// After a too-long segment the stream stays framed: the next PDU reads.
	stream := append(bytes.Clone(tooLong), encode(false, Header{Opcode: OpNOPOut, InitiatorTaskTag: 9}, nil)...)
	r := Reader{R: bytes.NewReader(stream), Pool: pool, MaxRecvDataSegmentLength: 512}
	var p PDU
	if err := r.Read(&p); !errors.Is(err, ErrDataTooLong) {
		t.Fatalf("first read: %v", err)
	}
	if err := r.Read(&p); err != nil || p.InitiatorTaskTag != 9 {
		t.Fatalf("second read: %v %+v", err, p.Header)
	}
}

// TestSetBufferSizeKeepsPipelined: an initiator may send commands right
// behind its last Login Request, so they sit in the small login buffer
// when the connection switches to the full-feature one (and turns digests
// on). Every byte of them must come out of the new buffer, whether it is
// larger or smaller than what is buffered.
func TestSetBufferSizeKeepsPipelined(t *testing.T) {
	var stream bytes.Buffer
	login := Writer{W: &stream}
	text := bytes.Repeat([]byte("InitiatorName=iqn.2026-11.test:x\x00"), 20)
	if err := login.Write(&Header{Opcode: OpLoginRequest, Immediate: true, InitiatorTaskTag: 1}, text); err != nil {
		t.Fatal(err)
	}
	// Commands with immediate data of assorted sizes: some smaller than the
	// login buffer, one larger (it bypasses the buffer), one unaligned.
	sizes := []int{0, 512, 100, 5000, 0, 7, 2048, 0, 1, 600}
	ffp := Writer{W: &stream, HeaderDigest: true, DataDigest: true}
	for i, n := range sizes {
		data := bytes.Repeat([]byte{byte(i + 1)}, n)
		if err := ffp.Write(&Header{Opcode: OpSCSICommand, Flags: FlagFinal | FlagWrite, InitiatorTaskTag: uint32(i + 2), CmdSN: uint32(i)}, data); err != nil {
			t.Fatal(err)
		}
	}
	all := stream.Bytes()

	for _, after := range []int{DefaultBufferSize, 1} {
		r := Reader{R: bytes.NewReader(all), Pool: new(Pool), MaxRecvDataSegmentLength: 8192}
		r.SetBufferSize(4096)
		var p PDU
		if err := r.Read(&p); err != nil || p.Opcode != OpLoginRequest || !bytes.Equal(p.Data, text) {
			t.Fatalf("login request: %v %+v", err, p.Header)
		}
		p.Release()
		// The test means something only if commands were buffered.
		if r.Buffered() == 0 {
			t.Fatalf("nothing pipelined behind the login request")
		}
		r.SetBufferSize(after)
		r.HeaderDigest, r.DataDigest = true, true
		for i, n := range sizes {
			if err := r.Read(&p); err != nil {
				t.Fatalf("buffer %d, command %d: %v", after, i, err)
			}
			if p.Opcode != OpSCSICommand || p.InitiatorTaskTag != uint32(i+2) || p.CmdSN != uint32(i) ||
				!bytes.Equal(p.Data, bytes.Repeat([]byte{byte(i + 1)}, n)) {
				t.Fatalf("buffer %d, command %d: read %+v with %d bytes of data", after, i, p.Header, len(p.Data))
			}
			p.Release()
		}
		if err := r.Read(&p); err != io.EOF {
			t.Fatalf("buffer %d: after the last command: %v, want EOF", after, err)
		}
	}
}

func TestPool(t *testing.T) {
	var p Pool
	b := p.Get(4096)
	if len(b) != 4096 || cap(b) != 4096 {
		t.Fatalf("len %d cap %d", len(b), cap(b))
	}
	p.Put(b)
	if c := p.Get(3000); cap(c) != 4096 || len(c) != 3000 {
		t.Fatalf("len %d cap %d", len(c), cap(c))
	}
	if big := p.Get(64 << 20); len(big) != 64<<20 {
		t.Fatal("large buffer")
	}
}

func FuzzDecode(f *testing.F) {
	for op := range layouts {
		var b [BHSLength]byte
		h := Header{Opcode: op, Flags: FlagFinal, DataSegmentLength: 8}
		h.Encode(b[:])
		f.Add(append(b[:], "12345678"...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var p PDU
		r := Reader{R: bytes.NewReader(in), Pool: new(Pool), MaxRecvDataSegmentLength: 1 << 16}
		err := r.Read(&p)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same known fields.
		var b [BHSLength]byte
		p.Header.Encode(b[:])
		var again Header
		if err := again.Decode(b[:]); err != nil || again != p.Header {
			t.Fatalf("re-decode: %v\n%+v\n%+v", err, again, p.Header)
		}
		p.Release()
	})
}

// TestFieldAccessors checks the RFC names of bytes 1-3 land on the wire
// where RFC 7143 puts them, through Encode and Decode.
func TestFieldAccessors(t *testing.T) {
	wire := func(h Header) (Header, [BHSLength]byte) {
		var b [BHSLength]byte
		h.Encode(b[:])
		var got Header
		if err := got.Decode(b[:]); err != nil {
			t.Fatal(err)
		}
		return got, b
	}

	login := Header{Opcode: OpLoginRequest}
	login.SetStages(StageOperational, StageFullFeature, true)
	got, b := wire(login)
	if b[1] != 0x87 || got.CSG() != StageOperational || got.NSG() != StageFullFeature || !got.Transit() || got.Continue() {
		t.Errorf("login flags %#x: CSG %d NSG %d T %v C %v", b[1], got.CSG(), got.NSG(), got.Transit(), got.Continue())
	}
	login.SetStages(StageSecurity, StageFullFeature, false)
	if login.Flags != 0 || login.NSG() != 0 {
		t.Errorf("no transit: flags %#x", login.Flags)
	}
	if got, b := wire(Header{Opcode: OpLoginResponse, Byte2: 3, Byte3: 1}); got.VersionMax() != 3 || got.VersionActive() != 1 || b[2] != 3 || b[3] != 1 {
		t.Errorf("login versions %d/%d, bytes %d/%d", got.VersionMax(), got.VersionActive(), b[2], b[3])
	}

	resp := Header{Opcode: OpSCSIResponse}
	resp.SetResponse(0x01)
	resp.SetStatus(0x02)
	if got, b := wire(resp); b[2] != 0x01 || b[3] != 0x02 || got.Response() != 0x01 || got.Status() != 0x02 {
		t.Errorf("SCSI Response bytes 2-3 % x: response %#x status %#x", b[2:4], got.Response(), got.Status())
	}
	rej := Header{Opcode: OpReject}
	rej.SetReason(RejectInvalidPDUField)
	if got, b := wire(rej); b[2] != 0x09 || got.Reason() != RejectInvalidPDUField {
		t.Errorf("Reject byte 2 %#x, reason %#x", b[2], got.Reason())
	}

	tmf := Header{Opcode: OpTaskMgmtRequest, Flags: FlagFinal}
	tmf.SetFunction(TMFTargetColdReset)
	if got, b := wire(tmf); b[1] != 0x87 || got.Function() != TMFTargetColdReset || got.Function().String() != "TARGET COLD RESET" {
		t.Errorf("TMF flags %#x: function %v", b[1], got.Function())
	}
	tr := Header{Opcode: OpTaskMgmtResponse}
	tr.SetTMFResponse(TMFLUNNotExist)
	if got, b := wire(tr); b[2] != 2 || got.TMFResponse() != TMFLUNNotExist || got.TMFResponse().String() != "LUN does not exist" {
		t.Errorf("TMF response byte 2 %#x: %v", b[2], got.TMFResponse())
	}
	if s := TMFResponse(9).String(); s != "TMFResponse(9)" {
		t.Errorf("unknown response: %q", s)
	}
	if got, _ := wire(Header{Opcode: OpLogoutRequest, Flags: FlagFinal | 2}); got.ReasonCode() != 2 {
		t.Errorf("logout reason %d", got.ReasonCode())
	}
	if got, _ := wire(Header{Opcode: OpSCSICommand, Flags: FlagFinal | FlagRead | 2}); got.Attr() != 2 {
		t.Errorf("attr %d", got.Attr())
	}
}

// TestTMFCodes pins the typed codes to RFC 7143's numbers.
func TestTMFCodes(t *testing.T) {
	if TMFAbortTask != 1 || TMFLUNReset != 5 || TMFTargetColdReset != 7 || TMFTaskReassign != 8 {
		t.Errorf("functions: %d %d %d %d", TMFAbortTask, TMFLUNReset, TMFTargetColdReset, TMFTaskReassign)
	}
	if TMFComplete != 0 || TMFLUNNotExist != 2 || TMFNotSupported != 5 || TMFAuthorizationFailed != 6 || TMFRejected != 255 {
		t.Errorf("responses: %d %d %d %d %d", TMFComplete, TMFLUNNotExist, TMFNotSupported, TMFAuthorizationFailed, TMFRejected)
	}
}

// arrivals is a socket's side of a stream: each Read returns at most what
// one arrival brought.
type arrivals [][]byte

func (a *arrivals) Read(p []byte) (int, error) {
	if len(*a) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*a)[0])
	if (*a)[0] = (*a)[0][n:]; len((*a)[0]) == 0 {
		*a = (*a)[1:]
	}
	return n, nil
}

// TestReaderLendsBufferWhileBusy: a Reader with a Pool, asked for
// DefaultBufferSize, keeps IdleBufferSize of its own while its peer sends a
// command at a time, borrows the large buffer once a read fills the small
// one (a burst of pipelined commands), and gives it back once reads come
// small again. Every PDU reads whole throughout.
func TestReaderLendsBufferWhileBusy(t *testing.T) {
	var a arrivals
	pdu := func(itt int) []byte {
		var b bytes.Buffer
		w := Writer{W: &b}
		if err := w.Write(&Header{Opcode: OpSCSICommand, Flags: FlagFinal | FlagRead, InitiatorTaskTag: uint32(itt)}, nil); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	itt := 0
	for range 3 { // one at a time
		itt++
		a = append(a, pdu(itt))
	}
	var burst []byte
	for range 200 { // 9,600 bytes in one arrival
		itt++
		burst = append(burst, pdu(itt)...)
	}
	a = append(a, burst)
	for range 3 {
		itt++
		a = append(a, pdu(itt))
	}
	r := Reader{R: &a, Pool: new(Pool)}
	r.SetBufferSize(DefaultBufferSize)
	for i := 1; i <= itt; i++ {
		var p PDU
		if err := r.Read(&p); err != nil || p.InitiatorTaskTag != uint32(i) {
			t.Fatalf("PDU %d: %v, ITT %d", i, err, p.InitiatorTaskTag)
		}
		var want int // the buffer the next read from the socket fills
		switch {
		case i <= 3, i > 3+200:
			want = IdleBufferSize
		case i == 3+200:
			want = DefaultBufferSize
		default:
			continue
		}
		if r.br.choose(); len(r.br.buf) != want {
			t.Errorf("after PDU %d: a %d-byte buffer, want %d", i, len(r.br.buf), want)
		}
	}
}
