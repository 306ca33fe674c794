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
func putDigest(b []byte, c uint32) { binary.LittleEndian.PutUint32(b, c) }
func getDigest(b []byte) uint32    { return binary.LittleEndian.Uint32(b) }

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
	R            io.Reader
	Pool         *Pool
	HeaderDigest bool
	DataDigest   bool
	// MaxRecvDataSegmentLength bounds DataSegmentLength; 0 means 8192
	// (the RFC 7143 default).
	MaxRecvDataSegmentLength uint32

	hdr [BHSLength + 1020 + 4]byte // BHS, AHS (at most 255 words), digest
	dig [4]byte
}

// Read reads one PDU: the BHS in one read, then AHS (skipped), the header
// digest, the data segment with its padding and the data digest.
func (r *Reader) Read(p *PDU) error {
	*p = PDU{pool: r.Pool}
	if _, err := io.ReadFull(r.R, r.hdr[:BHSLength]); err != nil {
		return err
	}
	copy(p.Raw[:], r.hdr[:BHSLength])
	herr := p.Header.Decode(r.hdr[:BHSLength])
	n := BHSLength + 4*int(p.TotalAHSLength)
	if p.TotalAHSLength > 0 {
		if _, err := io.ReadFull(r.R, r.hdr[BHSLength:n]); err != nil {
			return fmt.Errorf("ahs: %w", err)
		}
	}
	if r.HeaderDigest {
		if _, err := io.ReadFull(r.R, r.dig[:]); err != nil {
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
		if _, err := io.CopyN(io.Discard, r.R, skip); err != nil {
			return fmt.Errorf("data segment: %w", err)
		}
		return fmt.Errorf("%d > %d: %w", dl, max, ErrDataTooLong)
	}
	if dl > 0 {
		total := dl + Pad(dl)
		buf := r.Pool.Get(int(total))
		if _, err := io.ReadFull(r.R, buf); err != nil {
			r.Pool.Put(buf)
			return fmt.Errorf("data segment: %w", err)
		}
		p.Data = buf[:dl]
		if r.DataDigest {
			if _, err := io.ReadFull(r.R, r.dig[:]); err != nil {
				p.Release()
				return fmt.Errorf("data digest: %w", err)
			}
			if getDigest(r.dig[:]) != Digest(buf[:total]) {
				p.Release()
				return ErrDataDigest
			}
		}
	}
	return herr
}

// Writer writes PDUs to one connection: header, data, padding and digests
// leave in one vectored write. It is not safe for concurrent use: a
// connection has one writer goroutine.
type Writer struct {
	W            io.Writer
	HeaderDigest bool
	DataDigest   bool

	hdr  [BHSLength + 4]byte
	tail [8]byte // padding (up to 3) and data digest
	bufs [3][]byte
}

// Write sends h with data; h.DataSegmentLength is set from len(data).
func (w *Writer) Write(h *Header, data []byte) error {
	h.DataSegmentLength = uint32(len(data))
	h.TotalAHSLength = 0
	h.Encode(w.hdr[:])
	hl := BHSLength
	if w.HeaderDigest {
		putDigest(w.hdr[BHSLength:], Digest(w.hdr[:BHSLength]))
		hl += 4
	}
	bufs := append(w.bufs[:0], w.hdr[:hl])
	if len(data) > 0 {
		pad := Pad(uint32(len(data)))
		clear(w.tail[:pad])
		tl := int(pad)
		if w.DataDigest {
			putDigest(w.tail[pad:], Digest(data, w.tail[:pad]))
			tl += 4
		}
		bufs = append(bufs, data)
		if tl > 0 {
			bufs = append(bufs, w.tail[:tl])
		}
	}
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(w.W)
	return err
}
