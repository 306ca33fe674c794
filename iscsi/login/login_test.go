package login

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []KV
		wantErr bool
	}{
		{"A=1\x00B=two\x00", []KV{{"A", "1"}, {"B", "two"}}, false},
		{"A=1\x00B=\x00\x00\x00", []KV{{"A", "1"}, {"B", ""}}, false},
		{"A=1", []KV{{"A", "1"}}, false},
		{"X-com.example.Key=a=b\x00", []KV{{"X-com.example.Key", "a=b"}}, false},
		{"", nil, false},
		{"novalue\x00", nil, true},
		{"=x\x00", nil, true},
		{"A=1\x00\x00B=2\x00", nil, true},
		{"Bad Key=1\x00", nil, true},
		{strings.Repeat("K", 64) + "=1\x00", nil, true},
		{"K=" + strings.Repeat("v", MaxValueLength+1), nil, true},
	} {
		got, err := ParseText([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseText(%.20q): err %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseText(%.20q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	kvs := []KV{{"A", "1"}, {"TargetName", "iqn.x:y"}}
	back, err := ParseText(EncodeText(nil, kvs))
	if err != nil || !reflect.DeepEqual(back, kvs) {
		t.Fatalf("round trip %v %v", back, err)
	}
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.a\x00SessionType=Normal\x00"))
	f.Add([]byte("CHAP_R=0xabcdef\x00\x00\x00"))
	f.Add([]byte("A=1\x00\x00B=2"))
	f.Fuzz(func(t *testing.T, in []byte) {
		kvs, err := ParseText(in)
		if err != nil {
			return
		}
		// Whatever parses survives re-encoding.
		again, err := ParseText(EncodeText(nil, kvs))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("re-parse: %v %v vs %v", err, again, kvs)
		}
		for i := range kvs {
			if again[i] != kvs[i] {
				t.Fatalf("pair %d: %v vs %v", i, again[i], kvs[i])
			}
		}
	})
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []KV
		disc  bool
		want  []KV
		check func(p Params) bool
	}{
		{"digests first supported", []KV{{"HeaderDigest", "None,CRC32C"}, {"DataDigest", "CRC32C,None"}}, false,
			[]KV{{"HeaderDigest", "None"}, {"DataDigest", "CRC32C"}},
			func(p Params) bool { return !p.HeaderDigest && p.DataDigest }},
		{"digest unsupported", []KV{{"HeaderDigest", "MD5"}}, false, []KV{{"HeaderDigest", Reject}}, nil},
		{"numeric min", []KV{{"MaxBurstLength", "65536"}, {"FirstBurstLength", "16777215"}, {"MaxOutstandingR2T", "1"}}, false,
			[]KV{{"MaxBurstLength", "65536"}, {"FirstBurstLength", "262144"}, {"MaxOutstandingR2T", "1"}},
			func(p Params) bool {
				return p.MaxBurstLength == 65536 && p.FirstBurstLength == 65536 && p.MaxOutstandingR2T == 1
			}},
		{"numeric out of range", []KV{{"MaxBurstLength", "100"}, {"MaxConnections", "x"}}, false,
			[]KV{{"MaxBurstLength", Reject}, {"MaxConnections", Reject}}, nil},
		{"numeric max", []KV{{"DefaultTime2Wait", "0"}}, false, []KV{{"DefaultTime2Wait", "2"}}, nil},
		{"boolean", []KV{{"InitialR2T", "No"}, {"ImmediateData", "Yes"}, {"DataPDUInOrder", "No"}, {"IFMarker", "Yes"}}, false,
			[]KV{{"InitialR2T", "No"}, {"ImmediateData", "Yes"}, {"DataPDUInOrder", "Yes"}, {"IFMarker", "No"}},
			func(p Params) bool { return !p.InitialR2T && p.ImmediateData && p.DataPDUInOrder }},
		{"boolean invalid", []KV{{"InitialR2T", "maybe"}}, false, []KV{{"InitialR2T", Reject}}, nil},
		{"declarative MRDSL", []KV{{"MaxRecvDataSegmentLength", "4096"}, {"InitiatorName", "iqn.a"}}, false,
			[]KV{{"MaxRecvDataSegmentLength", "262144"}},
			func(p Params) bool { return p.MaxRecvDataSegmentLength == 4096 }},
		{"unknown and vendor keys", []KV{{"X-com.vendor.Foo", "1"}, {"Bogus", "2"}}, false,
			[]KV{{"X-com.vendor.Foo", NotUnderstood}, {"Bogus", NotUnderstood}}, nil},
		{"discovery irrelevant", []KV{{"MaxBurstLength", "65536"}, {"HeaderDigest", "None"}}, true,
			[]KV{{"MaxBurstLength", Irrelevant}, {"HeaderDigest", "None"}}, nil},
		{"erl", []KV{{"ErrorRecoveryLevel", "2"}}, false, []KV{{"ErrorRecoveryLevel", "0"}}, nil},
	} {
		n := NewNegotiator()
		n.Discovery = tc.disc
		got, err := n.Negotiate(tc.in, PhaseOperational)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		n.Finish()
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: answered %v, want %v", tc.name, got, tc.want)
		}
		if tc.check != nil && !tc.check(n.Params) {
			t.Errorf("%s: params %+v", tc.name, n.Params)
		}
	}
	n := NewNegotiator()
	if _, err := n.Negotiate([]KV{{"MaxBurstLength", "65536"}, {"MaxBurstLength", "4096"}}, PhaseOperational); err == nil {
		t.Error("renegotiating a key: no error")
	}
}

// initiator computes what a CHAP initiator sends.
func respond(id byte, secret string, challenge []byte) string {
	h := md5.Sum(append(append([]byte{id}, secret...), challenge...))
	return "0x" + hex.EncodeToString(h[:])
}

func challengeOf(t *testing.T, kvs []KV) (byte, []byte) {
	t.Helper()
	var id byte
	var ch []byte
	for _, kv := range kvs {
		switch kv.Key {
		case "CHAP_I":
			var n int
			for _, c := range kv.Value {
				n = n*10 + int(c-'0')
			}
			id = byte(n)
		case "CHAP_C":
			var err error
			if ch, err = DecodeBinary(kv.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ch == nil {
		t.Fatalf("no challenge in %v", kvs)
	}
	return id, ch
}

func TestCHAP(t *testing.T) {
	cred := &Credential{User: "node1", Secret: "secretsecret", MutualUser: "iqn.t", MutualSecret: "targetsecret"}
	lookup := func(u string) *Credential {
		if u == cred.User {
			return cred
		}
		return nil
	}
	start := func() (*CHAP, byte, []byte) {
		c := &CHAP{Lookup: lookup}
		out, err := c.Step([]KV{{"CHAP_A", "7,5"}})
		if err != nil {
			t.Fatal(err)
		}
		if out[0] != (KV{"CHAP_A", "5"}) {
			t.Fatalf("CHAP_A answer %v", out)
		}
		id, ch := challengeOf(t, out)
		return c, id, ch
	}

	// One-way, hex and base64 responses.
	for _, enc := range []func(string) string{
		func(s string) string { return s },
		func(s string) string { b, _ := DecodeBinary(s); return "0b" + base64.StdEncoding.EncodeToString(b) },
	} {
		c, id, ch := start()
		out, err := c.Step([]KV{{"CHAP_N", "node1"}, {"CHAP_R", enc(respond(id, "secretsecret", ch))}})
		if err != nil || len(out) != 0 || !c.Done() || c.User != "node1" {
			t.Fatalf("one-way: %v %v done=%v", out, err, c.Done())
		}
	}

	// Mutual: our answer proves the target secret.
	c, id, ch := start()
	myCh := []byte("initiator challenge!")
	out, err := c.Step([]KV{{"CHAP_N", "node1"}, {"CHAP_R", respond(id, "secretsecret", ch)},
		{"CHAP_I", "77"}, {"CHAP_C", "0x" + hex.EncodeToString(myCh)}})
	if err != nil {
		t.Fatal(err)
	}
	want := []KV{{"CHAP_N", "iqn.t"}, {"CHAP_R", respond(77, "targetsecret", myCh)}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("mutual answer %v, want %v", out, want)
	}

	for _, tc := range []struct {
		name string
		kvs  func(id byte, ch []byte) []KV
	}{
		{"wrong secret", func(id byte, ch []byte) []KV {
			return []KV{{"CHAP_N", "node1"}, {"CHAP_R", respond(id, "wrongwrongwr", ch)}}
		}},
		{"unknown user", func(id byte, ch []byte) []KV {
			return []KV{{"CHAP_N", "node2"}, {"CHAP_R", respond(id, "secretsecret", ch)}}
		}},
		{"reflected challenge", func(id byte, ch []byte) []KV {
			return []KV{{"CHAP_N", "node1"}, {"CHAP_R", respond(id, "secretsecret", ch)},
				{"CHAP_I", "1"}, {"CHAP_C", "0x" + hex.EncodeToString(ch)}}
		}},
		{"bad encoding", func(id byte, ch []byte) []KV {
			return []KV{{"CHAP_N", "node1"}, {"CHAP_R", "abc"}}
		}},
	} {
		c, id, ch := start()
		if _, err := c.Step(tc.kvs(id, ch)); !errors.Is(err, ErrAuth) || c.Done() {
			t.Errorf("%s: err %v done %v", tc.name, err, c.Done())
		}
	}
	if _, err := (&CHAP{Lookup: lookup}).Step([]KV{{"CHAP_A", "7"}}); !errors.Is(err, ErrAuth) {
		t.Errorf("CHAP_A without MD5: %v", err)
	}
	// Mutual CHAP with no target secret configured fails.
	cred.MutualSecret = ""
	c, id, ch = start()
	if _, err := c.Step([]KV{{"CHAP_N", "node1"}, {"CHAP_R", respond(id, "secretsecret", ch)},
		{"CHAP_I", "1"}, {"CHAP_C", "0x0102"}}); !errors.Is(err, ErrAuth) {
		t.Errorf("mutual without target secret: %v", err)
	}
}
