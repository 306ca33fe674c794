package login

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Credential is what a CHAP peer must know. MutualUser and MutualSecret
// are the target's own name and secret for mutual CHAP.
type Credential struct {
	User, Secret             string
	MutualUser, MutualSecret string
}

// ErrAuth is wrapped by every authentication failure.
var ErrAuth = errors.New("authentication failed")

// chapMD5 is CHAP_A=5 (RFC 1994), the only algorithm we accept.
const chapMD5 = "5"

// challengeLength follows RFC 7143 §12.1.3: at least as long as the hash.
const challengeLength = 16

type chapState int

const (
	chapWaitA chapState = iota
	chapWaitResponse
	chapDone
)

// CHAP runs the target side of CHAP (RFC 7143 §12.1.3, RFC 1994) with MD5:
// CHAP_A from the initiator, our CHAP_A/CHAP_I/CHAP_C, then CHAP_N/CHAP_R
// (and CHAP_I/CHAP_C for mutual CHAP), answered with our CHAP_N/CHAP_R.
type CHAP struct {
	// Lookup returns the credential for the name the initiator gives in
	// CHAP_N, or nil for an unknown name.
	Lookup func(user string) *Credential
	// User is the authenticated name once Step reports done.
	User string

	state     chapState
	id        byte
	challenge []byte
}

// Done reports whether the initiator has authenticated.
func (c *CHAP) Done() bool { return c.state == chapDone }

// Step consumes the CHAP keys of one Login Request and returns the keys to
// answer. Errors wrap ErrAuth (failed) or are protocol errors.
func (c *CHAP) Step(kvs []KV) ([]KV, error) {
	get := func(k string) (string, bool) {
		for _, kv := range kvs {
			if kv.Key == k {
				return kv.Value, true
			}
		}
		return "", false
	}
	switch c.state {
	case chapWaitA:
		a, ok := get("CHAP_A")
		if !ok {
			// AuthMethod answered in this same PDU; CHAP_A comes next.
			return nil, nil
		}
		if !containsValue(a, chapMD5) {
			return []KV{{"CHAP_A", Reject}}, fmt.Errorf("CHAP_A=%s: only MD5 (5) is supported: %w", a, ErrAuth)
		}
		var b [1 + challengeLength]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("chap challenge: %w", err)
		}
		c.id, c.challenge = b[0], b[1:]
		c.state = chapWaitResponse
		return []KV{
			{"CHAP_A", chapMD5},
			{"CHAP_I", strconv.Itoa(int(c.id))},
			{"CHAP_C", "0x" + hex.EncodeToString(c.challenge)},
		}, nil
	case chapWaitResponse:
		name, okN := get("CHAP_N")
		resp, okR := get("CHAP_R")
		if !okN || !okR {
			return nil, fmt.Errorf("CHAP_N and CHAP_R expected: %w", ErrAuth)
		}
		cred := c.Lookup(name)
		if cred == nil {
			return nil, fmt.Errorf("CHAP_N=%q unknown: %w", name, ErrAuth)
		}
		r, err := DecodeBinary(resp)
		if err != nil {
			return nil, fmt.Errorf("CHAP_R: %v: %w", err, ErrAuth)
		}
		want := chapResponse(c.id, cred.Secret, c.challenge)
		if subtle.ConstantTimeCompare(r, want) != 1 {
			return nil, fmt.Errorf("CHAP_N=%q: wrong response: %w", name, ErrAuth)
		}
		c.User = name
		var out []KV
		iv, okI := get("CHAP_I")
		cv, okC := get("CHAP_C")
		if okI || okC {
			// Mutual CHAP: the initiator challenges us.
			if !okI || !okC {
				return nil, fmt.Errorf("mutual CHAP needs both CHAP_I and CHAP_C: %w", ErrAuth)
			}
			if cred.MutualSecret == "" {
				return nil, fmt.Errorf("CHAP_N=%q: mutual CHAP asked, no target secret configured: %w", name, ErrAuth)
			}
			id, err := strconv.ParseUint(iv, 0, 8)
			if err != nil {
				return nil, fmt.Errorf("CHAP_I=%q: %w", iv, ErrAuth)
			}
			ch, err := DecodeBinary(cv)
			if err != nil || len(ch) == 0 {
				return nil, fmt.Errorf("CHAP_C: %v: %w", err, ErrAuth)
			}
			// A reflected challenge would let the initiator make us answer
			// our own question (RFC 7143 §12.1.3).
			if bytes.Equal(ch, c.challenge) {
				return nil, fmt.Errorf("initiator repeated the target's challenge: %w", ErrAuth)
			}
			out = []KV{
				{"CHAP_N", cred.MutualUser},
				{"CHAP_R", "0x" + hex.EncodeToString(chapResponse(byte(id), cred.MutualSecret, ch))},
			}
		}
		c.state = chapDone
		return out, nil
	}
	return nil, fmt.Errorf("CHAP keys after authentication completed")
}

func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

func containsValue(list, v string) bool {
	for _, s := range strings.Split(list, ",") {
		if s == v {
			return true
		}
	}
	return false
}

// DecodeBinary decodes a binary value: 0x/0X hex or 0b/0B base64 (RFC 7143 §6.1).
func DecodeBinary(s string) ([]byte, error) {
	if len(s) < 3 || s[0] != '0' {
		return nil, fmt.Errorf("binary value %q: want 0x or 0b prefix", s)
	}
	switch s[1] {
	case 'x', 'X':
		h := s[2:]
		if len(h)%2 == 1 {
			h = "0" + h
		}
		return hex.DecodeString(h)
	case 'b', 'B':
		return base64.StdEncoding.DecodeString(s[2:])
	}
	return nil, fmt.Errorf("binary value %q: want 0x or 0b prefix", s)
}
