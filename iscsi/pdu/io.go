package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Digest is the CRC32C used for HeaderDigest and DataDigest (RFC 7143 §13.1).
func Digest(b ...[]byte) uint32 {
	var c uint32
	for _, s := range b {
		c = crc32.Update(c, castagnoli, s)
	}
	return c
}

// Digests travel least significant byte first (RFC 7143 §11.1 and the
// reference CRC of RFC 3385).
func getDigest(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// Pad returns the number of padding bytes after a data segment of n bytes.
func Pad(n uint32) uint32 { return -n & 3 }

// Errors of Reader.Read. ErrHeaderDigest and a short read leave the stream
// unframed: the connection must be dropped. ErrDataDigest and ErrDataTooLong
// leave it framed: the caller may Reject the PDU and go on.
var (
	ErrHeaderDigest = errors.New("header digest mismatch")
	ErrDataDigest   = errors.New("data digest mismatch")
	ErrDataTooLong  = errors.New("DataSegmentLength beyond MaxRecvDataSegmentLength")
)

// PDU is one received PDU. Data is borrowed from a Pool: call Release once
// done with it (after which Data must not be used).
type PDU struct {
	Header
	// Raw is the BHS as received, for a Reject's data segment.
	Raw  [BHSLength]byte
	Data []byte
	pool *Pool
}

// Release returns Data to its pool.
func (p *PDU) Release() {
	if p.pool != nil && p.Data != nil {
		p.pool.Put(p.Data)
	}
	p.Data = nil
}

// Pool hands out data buffers in power-of-two size classes, so that a 4 KiB
// read and a 1 MiB write each reuse a buffer of their size.
type Pool struct {
	classes [maxClass + 1]sync.Pool
}

const (
	minClass = 9  // 512 bytes
	maxClass = 24 // 16 MiB; larger buffers are not pooled
)

func class(n int) int {
	c := minClass
	for c <= maxClass && 1<<c < n {
		c++
	}
	return c
}

// Get returns a buffer of length n.
func (p *Pool) Get(n int) []byte {
	c := class(n)
	if c > maxClass {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

// Put returns a buffer obtained from Get.
func (p *Pool) Put(b []byte) {
	c := class(cap(b))
	if c > maxClass || 1<<c != cap(b) {
		return
	}
	b = b[:cap(b)]
	p.classes[c].Put(&b)
}

// Reader reads PDUs from one connection. It is not safe for concurrent use:
// a connection has one reader goroutine.
type Reader struct {
	R io.Reader
	// Pool lends the data segments' buffers, and the large read buffer
	// while the peer is busy (SetBufferSize).
	Pool         *Pool
	HeaderDigest bool
	DataDigest   bool
	// MaxRecvDataSegmentLength bounds DataSegmentLength; 0 means 8192
	// (the RFC 7143 default).
	MaxRecvDataSegmentLength uint32
	// Place, when set, chooses where a data segment is read once its
	// header is known, so that write data lands where it is used instead
	// of being copied there: it returns DataSegmentLength bytes to read
	// the segment into and whether the PDU owns them (Release then hands
	// their array to Pool, so it must come from Pool), or nil for a pooled
	// buffer of the segment's size. It is not called for a segment Read
	// skips (ErrDataTooLong).
	Place func(h *Header) (buf []byte, owned bool)

	hdr [BHSLength + 1020 + 4]byte // BHS, AHS (at most 255 words), digest
	dig [4]byte
	pad [3]byte
	br  readBuffer
}

// DefaultBufferSize is the read buffer of a Reader not given another size
// with SetBufferSize: one system call brings in the headers of many small
// PDUs; data segments at least as large bypass it.
const DefaultBufferSize = 64 << 10

// IdleBufferSize is the buffer a Reader with a Pool keeps of its own when
// SetBufferSize asks for more: enough for the command PDUs of a peer that
// sends one at a time, or a handful.
const IdleBufferSize = 4 << 10

// SetBufferSize makes the read buffer n bytes. Bytes already read from R
// and not yet consumed stay buffered (the buffer is never made smaller than
// them), so the size may change between two PDUs without losing what the
// peer pipelined behind the first.
//
// With a Pool and n above IdleBufferSize, the Reader keeps only an
// IdleBufferSize buffer and borrows one of n bytes from Pool while the peer
// keeps it busy: a read that fills the small buffer borrows the large one
// for the next, and a read that brings less than the small one holds gives
// it back. A connection whose peer sends a command at a time, or none,
// then holds 4 KiB instead of n, and a busy one gets n's batching.
func (r *Reader) SetBufferSize(n int) {
	b := &r.br
	b.src, b.pool, b.large = r.R, r.Pool, 0
	if r.Pool != nil && n > IdleBufferSize {
		n, b.large = IdleBufferSize, n
	}
	n = max(n, b.end-b.start, 1)
	if len(b.own) == n && !b.lent {
		return
	}
	own := make([]byte, n)
	b.end = copy(own, b.buf[b.start:b.end])
	b.start = 0
	if b.lent {
		b.pool.Put(b.buf)
		b.lent = false
	}
	b.buf, b.own = own, own
}

// Buffered reports how many bytes were read from R and not yet consumed.
func (r *Reader) Buffered() int { return r.br.end - r.br.start }

// Read reads one PDU: the BHS, AHS (skipped), the header digest, the data
// segment with its padding and the data digest. Reads go through a buffer,
// so the headers of many pipelined PDUs arrive in one system call.
func (r *Reader) Read(p *PDU) error {
	*p = PDU{pool: r.Pool}
	if r.br.buf == nil {
		r.SetBufferSize(DefaultBufferSize)
	}
	if _, err := io.ReadFull(&r.br, r.hdr[:BHSLength]); err != nil {
		return err
	}
	copy(p.Raw[:], r.hdr[:BHSLength])
	herr := p.Header.Decode(r.hdr[:BHSLength])
	n := BHSLength + 4*int(p.TotalAHSLength)
	if p.TotalAHSLength > 0 {
		if _, err := io.ReadFull(&r.br, r.hdr[BHSLength:n]); err != nil {
			return fmt.Errorf("ahs: %w", err)
		}
	}
	if r.HeaderDigest {
		if _, err := io.ReadFull(&r.br, r.dig[:]); err != nil {
			return fmt.Errorf("header digest: %w", err)
		}
		if getDigest(r.dig[:]) != Digest(r.hdr[:n]) {
			return ErrHeaderDigest
		}
	}
	max := r.MaxRecvDataSegmentLength
	if max == 0 {
		max = 8192
	}
	dl := p.DataSegmentLength
	if dl > max {
		// Still framed: skip the segment so the connection can go on.
		skip := int64(dl + Pad(dl))
		if r.DataDigest {
			skip += 4
		}
		if _, err := io.CopyN(io.Discard, &r.br, skip); err != nil {
			return fmt.Errorf("data segment: %w", err)
		}
		return fmt.Errorf("%d > %d: %w", dl, max, ErrDataTooLong)
	}
	if dl > 0 {
		return r.readData(p, dl, herr)
	}
	return herr
}

// readData reads p's data segment of dl bytes, its padding and its digest,
// into a buffer Place chooses or a pooled one.
func (r *Reader) readData(p *PDU, dl uint32, herr error) error {
	var buf []byte
	owned := true
	if r.Place != nil && herr == nil {
		buf, owned = r.Place(&p.Header)
		if buf != nil && len(buf) != int(dl) {
			return fmt.Errorf("data segment: Place gave %d bytes for %d", len(buf), dl)
		}
	}
	if buf == nil {
		buf, owned = r.Pool.Get(int(dl + Pad(dl)))[:dl], true
	}
	if !owned {
		p.pool = nil
	}
	p.Data = buf
	pad := r.pad[:Pad(dl)]
	if _, err := io.ReadFull(&r.br, buf); err != nil {
		p.Release()
		return fmt.Errorf("data segment: %w", err)
	}
	if _, err := io.ReadFull(&r.br, pad); err != nil {
		p.Release()
		return fmt.Errorf("data segment padding: %w", err)
	}
	if r.DataDigest {
		if _, err := io.ReadFull(&r.br, r.dig[:]); err != nil {
			p.Release()
			return fmt.Errorf("data digest: %w", err)
		}
		if getDigest(r.dig[:]) != Digest(buf, pad) {
			p.Release()
			return ErrDataDigest
		}
	}
	return herr
}

// readBuffer is a bufio.Reader that can change size (see SetBufferSize):
// buf[start:end] is read from src and not yet consumed. buf is own, or
// while the peer is busy a buffer of large bytes lent by pool.
type readBuffer struct {
	src        io.Reader
	buf        []byte
	start, end int
	err        error // from src, returned once the buffer is empty

	own   []byte
	pool  *Pool
	large int  // 0: buf is always own
	lent  bool // buf is from pool
}

func (b *readBuffer) Read(p []byte) (int, error) {
	if b.start == b.end {
		if b.err != nil {
			err := b.err
			b.err = nil
			return 0, err
		}
		b.choose()
		if len(p) >= len(b.buf) {
			// A large data segment goes straight to its buffer: no copy.
			return b.src.Read(p)
		}
		n, err := b.src.Read(b.buf)
		if n == 0 {
			return 0, err
		}
		b.start, b.end, b.err = 0, n, err
	}
	n := copy(p, b.buf[b.start:b.end])
	b.start += n
	return n, nil
}

// choose picks, with the buffer drained, the one the next read fills, by
// how much the last read brought (end): all that own holds, so more may be
// waiting, borrows the large buffer; less than own holds gives it back.
func (b *readBuffer) choose() {
	switch {
	case b.large == 0:
	case !b.lent && b.end == len(b.own):
		b.buf, b.lent = b.pool.Get(b.large), true
	case b.lent && b.end < len(b.own):
		b.pool.Put(b.buf)
		b.buf, b.lent = b.own, false
	}
}

// Writer writes PDUs to one connection. Queue gathers PDUs — header,
// data, padding and digests — and Flush sends them all in one vectored
// write, so a busy connection sends many responses per system call. It is
// not safe for concurrent use: a connection has one writer goroutine.
type Writer struct {
	W            io.Writer
	HeaderDigest bool
	DataDigest   bool

	bufs  net.Buffers
	arena []byte // headers and tails of the queued PDUs
	spans []span // where each queued piece lies: in arena or in data
}

// span is one piece of the next write: arena[off:off+n] or a data slice.
type span struct {
	off, n int
	data   []byte
}

// Queue adds h with data to the next Flush; h.DataSegmentLength is set
// from len(data). data must stay untouched until Flush returns.
func (w *Writer) Queue(h *Header, data []byte) {
	h.DataSegmentLength = uint32(len(data))
	h.TotalAHSLength = 0
	off := len(w.arena)
	w.arena = append(w.arena, make([]byte, BHSLength)...)
	h.Encode(w.arena[off:])
	if w.HeaderDigest {
		w.arena = binary.LittleEndian.AppendUint32(w.arena, Digest(w.arena[off:off+BHSLength]))
	}
	w.spans = append(w.spans, span{off: off, n: len(w.arena) - off})
	if len(data) == 0 {
		return
	}
	w.spans = append(w.spans, span{data: data})
	pad := Pad(uint32(len(data)))
	toff := len(w.arena)
	w.arena = append(w.arena, make([]byte, pad)...)
	if w.DataDigest {
		w.arena = binary.LittleEndian.AppendUint32(w.arena, Digest(data, w.arena[toff:toff+int(pad)]))
	}
	if len(w.arena) > toff {
		w.spans = append(w.spans, span{off: toff, n: len(w.arena) - toff})
	}
}

// Queued reports how many bytes of headers and data wait for Flush.
func (w *Writer) Queued() int {
	n := 0
	for _, s := range w.spans {
		n += s.n + len(s.data)
	}
	return n
}

// Flush writes what Queue gathered in one vectored write.
func (w *Writer) Flush() error {
	if len(w.spans) == 0 {
		return nil
	}
	// The arena may have moved while growing: slice it only now.
	bufs := w.bufs[:0]
	for _, s := range w.spans {
		if s.data != nil {
			bufs = append(bufs, s.data)
		} else {
			bufs = append(bufs, w.arena[s.off:s.off+s.n])
		}
	}
	w.bufs = bufs
	_, err := bufs.WriteTo(w.W)
	clear(w.spans)
	w.spans = w.spans[:0]
	w.arena = w.arena[:0]
	clear(w.bufs[:cap(w.bufs)])
	return err
}

// Write sends one PDU at once.
func (w *Writer) Write(h *Header, data []byte) error {
	w.Queue(h, data)
	return w.Flush()
}
