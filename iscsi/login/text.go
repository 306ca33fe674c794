// Package login implements the text side of iSCSI login and negotiation
// (RFC 7143 §6, §12, §13): key=value text, the operational key table with its
// negotiation rules, and CHAP security negotiation. It knows nothing of PDUs
// or sessions.
package login

import (
	"bytes"
	"fmt"
)

// KV is one key=value pair, in the order it appeared.
type KV struct {
	Key, Value string
}

// Limits of RFC 7143 §6.1: key names up to 63 bytes, values up to 255 bytes
// except binary values (CHAP), which we bound at 8192.
const (
	MaxKeyLength   = 63
	MaxValueLength = 8192
	MaxTextLength  = 64 << 10 // a whole text exchange
	MaxPairs       = 512
)

// ParseText splits NUL-terminated key=value pairs. A missing final NUL is
// tolerated; an empty pair, a pair without '=', a bad key name or an
// over-long key or value is an error.
func ParseText(b []byte) ([]KV, error) {
	if len(b) > MaxTextLength {
		return nil, fmt.Errorf("text: %d bytes exceeds %d", len(b), MaxTextLength)
	}
	var kvs []KV
	for len(b) > 0 {
		var pair []byte
		if i := bytes.IndexByte(b, 0); i >= 0 {
			pair, b = b[:i], b[i+1:]
		} else {
			pair, b = b, nil
		}
		if len(pair) == 0 {
			// Padding NULs at the end of a segment.
			if allZero(b) {
				break
			}
			return nil, fmt.Errorf("text: empty key=value pair")
		}
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 {
			return nil, fmt.Errorf("text: %q: no '='", truncate(pair))
		}
		k, v := pair[:eq], pair[eq+1:]
		if err := checkKey(k); err != nil {
			return nil, err
		}
		if len(v) > MaxValueLength {
			return nil, fmt.Errorf("text: key %s: value of %d bytes exceeds %d", k, len(v), MaxValueLength)
		}
		if len(kvs) == MaxPairs {
			return nil, fmt.Errorf("text: more than %d pairs", MaxPairs)
		}
		kvs = append(kvs, KV{string(k), string(v)})
	}
	return kvs, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// checkKey enforces RFC 7143 §6.1's key-name characters: letters, digits,
// '.', '-', '+', '@', '_'; at most 63 bytes.
func checkKey(k []byte) error {
	if len(k) == 0 {
		return fmt.Errorf("text: empty key")
	}
	if len(k) > MaxKeyLength {
		return fmt.Errorf("text: key %q… longer than %d bytes", k[:16], MaxKeyLength)
	}
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '+', c == '@', c == '_':
		default:
			return fmt.Errorf("text: key %q: invalid character %q", truncate(k), c)
		}
	}
	return nil
}

// EncodeText appends kvs as NUL-terminated key=value pairs to b.
func EncodeText(b []byte, kvs []KV) []byte {
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}
