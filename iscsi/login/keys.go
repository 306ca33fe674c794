package login

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is how a key is negotiated (RFC 7143 §6.2).
type Kind int

const (
	// Declarative keys state a value; no negotiation (InitiatorName,
	// MaxRecvDataSegmentLength, …).
	Declarative Kind = iota
	// NumericMin: the result is the smaller of offer and our limit.
	NumericMin
	// NumericMax: the result is the larger of offer and our value, bounded by our limit.
	NumericMax
	// BooleanAnd: Yes only if both say Yes.
	BooleanAnd
	// BooleanOr: Yes if either says Yes.
	BooleanOr
	// List: the first offered value we support.
	List
)

// Phase bits say where a key may appear.
type Phase int

const (
	PhaseSecurity Phase = 1 << iota
	PhaseOperational
	PhaseFullFeature // Text requests
)

// Special answers (RFC 7143 §6.2, §13).
const (
	Irrelevant    = "Irrelevant"
	NotUnderstood = "NotUnderstood"
	Reject        = "Reject"
)

// Key describes one text key of RFC 7143 §13.
type Key struct {
	Name  string
	Kind  Kind
	Phase Phase
	// Min and Max bound a numeric value; Ours is the value we offer or the
	// limit we accept (numeric), "Yes"/"No" (Boolean), or the supported
	// values in our order of preference (List, comma-separated).
	Min, Max uint32
	Ours     string
	// Discovery is true for keys that matter in a discovery session; others
	// are answered Irrelevant there.
	Discovery bool
	// LeadingOnly keys may be negotiated only on the leading connection.
	LeadingOnly bool
}

// Target-side limits. MaxRecvDataSegmentLength is what we accept per PDU;
// the burst lengths bound a command's data sequence.
const (
	OurMaxRecvDataSegmentLength = 262144
	OurMaxBurstLength           = 16776192
	OurFirstBurstLength         = 262144
	OurMaxOutstandingR2T        = 16
)

// Keys is the operational and security key table.
var Keys = []Key{
	{Name: "AuthMethod", Kind: List, Phase: PhaseSecurity, Discovery: true, LeadingOnly: true},
	{Name: "HeaderDigest", Kind: List, Phase: PhaseSecurity | PhaseOperational, Ours: "CRC32C,None", Discovery: true},
	{Name: "DataDigest", Kind: List, Phase: PhaseSecurity | PhaseOperational, Ours: "CRC32C,None", Discovery: true},
	{Name: "MaxConnections", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 1, Max: 65535, Ours: "1", LeadingOnly: true},
	{Name: "TargetName", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational | PhaseFullFeature, Discovery: true},
	{Name: "InitiatorName", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational, Discovery: true},
	{Name: "TargetAlias", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational | PhaseFullFeature, Discovery: true},
	{Name: "InitiatorAlias", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational | PhaseFullFeature, Discovery: true},
	{Name: "TargetAddress", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational | PhaseFullFeature, Discovery: true},
	{Name: "TargetPortalGroupTag", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational, Discovery: true},
	{Name: "SessionType", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational, Discovery: true, LeadingOnly: true},
	{Name: "InitialR2T", Kind: BooleanOr, Phase: PhaseSecurity | PhaseOperational, Ours: "No", LeadingOnly: true},
	{Name: "ImmediateData", Kind: BooleanAnd, Phase: PhaseSecurity | PhaseOperational, Ours: "Yes", LeadingOnly: true},
	{Name: "MaxRecvDataSegmentLength", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational | PhaseFullFeature, Min: 512, Max: 1<<24 - 1, Discovery: true},
	{Name: "MaxBurstLength", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 512, Max: 1<<24 - 1, Ours: strconv.Itoa(OurMaxBurstLength), LeadingOnly: true},
	{Name: "FirstBurstLength", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 512, Max: 1<<24 - 1, Ours: strconv.Itoa(OurFirstBurstLength), LeadingOnly: true},
	{Name: "DefaultTime2Wait", Kind: NumericMax, Phase: PhaseSecurity | PhaseOperational, Min: 0, Max: 3600, Ours: "2", Discovery: true, LeadingOnly: true},
	{Name: "DefaultTime2Retain", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 0, Max: 3600, Ours: "20", Discovery: true, LeadingOnly: true},
	{Name: "MaxOutstandingR2T", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 1, Max: 65535, Ours: strconv.Itoa(OurMaxOutstandingR2T), LeadingOnly: true},
	{Name: "DataPDUInOrder", Kind: BooleanOr, Phase: PhaseSecurity | PhaseOperational, Ours: "Yes", LeadingOnly: true},
	{Name: "DataSequenceInOrder", Kind: BooleanOr, Phase: PhaseSecurity | PhaseOperational, Ours: "Yes", LeadingOnly: true},
	{Name: "ErrorRecoveryLevel", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 0, Max: 2, Ours: "0", Discovery: true, LeadingOnly: true},
	{Name: "TaskReporting", Kind: List, Phase: PhaseSecurity | PhaseOperational, Ours: "RFC3720", LeadingOnly: true},
	{Name: "iSCSIProtocolLevel", Kind: NumericMin, Phase: PhaseSecurity | PhaseOperational, Min: 0, Max: 31, Ours: "1", LeadingOnly: true},
	// Markers are obsolete (RFC 7143 §13.25): agree to none.
	{Name: "IFMarker", Kind: BooleanAnd, Phase: PhaseSecurity | PhaseOperational, Ours: "No"},
	{Name: "OFMarker", Kind: BooleanAnd, Phase: PhaseSecurity | PhaseOperational, Ours: "No"},
	{Name: "IFMarkInt", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational},
	{Name: "OFMarkInt", Kind: Declarative, Phase: PhaseSecurity | PhaseOperational},
	{Name: "SendTargets", Kind: Declarative, Phase: PhaseFullFeature, Discovery: true},
}

var keyIndex = func() map[string]*Key {
	m := make(map[string]*Key, len(Keys))
	for i := range Keys {
		m[Keys[i].Name] = &Keys[i]
	}
	return m
}()

// Lookup returns the table entry of a key, or nil.
func Lookup(name string) *Key { return keyIndex[name] }

// Params are a session's negotiated operational parameters, with RFC 7143
// defaults until negotiation changes them.
type Params struct {
	HeaderDigest, DataDigest bool
	MaxConnections           uint32
	InitialR2T               bool
	ImmediateData            bool
	// MaxRecvDataSegmentLength is the initiator's: what we may send per PDU.
	MaxRecvDataSegmentLength uint32
	MaxBurstLength           uint32
	FirstBurstLength         uint32
	DefaultTime2Wait         uint32
	DefaultTime2Retain       uint32
	MaxOutstandingR2T        uint32
	DataPDUInOrder           bool
	DataSequenceInOrder      bool
	ErrorRecoveryLevel       uint32
}

// DefaultParams are RFC 7143's defaults.
func DefaultParams() Params {
	return Params{
		MaxConnections: 1, InitialR2T: true, ImmediateData: true,
		MaxRecvDataSegmentLength: 8192, MaxBurstLength: 262144, FirstBurstLength: 65536,
		DefaultTime2Wait: 2, DefaultTime2Retain: 20, MaxOutstandingR2T: 1,
		DataPDUInOrder: true, DataSequenceInOrder: true,
	}
}

// Negotiator answers the initiator's operational keys, one login or text
// exchange at a time, and accumulates the result in Params.
type Negotiator struct {
	Params    Params
	Discovery bool
	// Declared holds declarative keys the initiator sent (InitiatorName,
	// TargetName, SessionType, …).
	Declared map[string]string
	seen     map[string]bool
}

// NewNegotiator starts a negotiation at the RFC defaults.
func NewNegotiator() *Negotiator {
	return &Negotiator{Params: DefaultParams(), Declared: map[string]string{}, seen: map[string]bool{}}
}

// Negotiate answers the keys of one request. Keys this package leaves to
// the caller (AuthMethod, CHAP_*, SendTargets) are skipped: the caller
// answers them. An error is a protocol error that fails the login.
func (n *Negotiator) Negotiate(kvs []KV, phase Phase) ([]KV, error) {
	var out []KV
	for _, kv := range kvs {
		if strings.HasPrefix(kv.Key, "CHAP_") || kv.Key == "AuthMethod" || kv.Key == "SendTargets" {
			continue
		}
		k := Lookup(kv.Key)
		if k == nil || k.Phase&phase == 0 && k.Kind != Declarative {
			// X- and X# vendor keys and anything unknown (RFC 7143 §6.2).
			if k == nil {
				out = append(out, KV{kv.Key, NotUnderstood})
				continue
			}
			return nil, fmt.Errorf("key %s not allowed in this phase", kv.Key)
		}
		if n.seen[k.Name] && k.Kind != Declarative {
			return nil, fmt.Errorf("key %s negotiated twice", k.Name)
		}
		n.seen[k.Name] = true
		if n.Discovery && !k.Discovery {
			out = append(out, KV{k.Name, Irrelevant})
			continue
		}
		ans, err := n.answer(k, kv.Value)
		if err != nil {
			return nil, err
		}
		if ans != "" {
			out = append(out, KV{k.Name, ans})
		}
	}
	return out, nil
}

func (n *Negotiator) answer(k *Key, v string) (string, error) {
	p := &n.Params
	switch k.Kind {
	case Declarative:
		n.Declared[k.Name] = v
		switch k.Name {
		case "MaxRecvDataSegmentLength":
			x, err := strconv.ParseUint(v, 0, 32)
			if err != nil || x < uint64(k.Min) || x > uint64(k.Max) {
				return Reject, nil
			}
			p.MaxRecvDataSegmentLength = uint32(x)
			// Declarative, but each side states its own (RFC 7143 §13.12).
			return strconv.Itoa(OurMaxRecvDataSegmentLength), nil
		case "IFMarkInt", "OFMarkInt":
			return Irrelevant, nil
		}
		return "", nil
	case NumericMin, NumericMax:
		x, err := strconv.ParseUint(v, 10, 32)
		if err != nil || x < uint64(k.Min) || x > uint64(k.Max) {
			return Reject, nil
		}
		ours, _ := strconv.ParseUint(k.Ours, 10, 32)
		r := min(x, ours)
		if k.Kind == NumericMax {
			r = max(x, ours)
		}
		if f, ok := p.field(k.Name).(*uint32); ok {
			*f = uint32(r)
		}
		return strconv.FormatUint(r, 10), nil
	case BooleanAnd, BooleanOr:
		var x bool
		switch v {
		case "Yes":
			x = true
		case "No":
		default:
			return Reject, nil
		}
		ours := k.Ours == "Yes"
		r := x && ours
		if k.Kind == BooleanOr {
			r = x || ours
		}
		if f, ok := p.field(k.Name).(*bool); ok {
			*f = r
		}
		if r {
			return "Yes", nil
		}
		return "No", nil
	case List:
		supported := strings.Split(k.Ours, ",")
		for _, offer := range strings.Split(v, ",") {
			for _, s := range supported {
				if offer == s {
					if f, ok := p.field(k.Name).(*bool); ok { // a digest
						*f = s == "CRC32C"
					}
					return s, nil
				}
			}
		}
		return Reject, nil
	}
	return "", nil
}

// field is the field of p a negotiated key sets: a *uint32 for a numeric
// key, a *bool for a Boolean one or a digest; nil for a key that sets none.
func (p *Params) field(name string) any {
	switch name {
	case "MaxConnections":
		return &p.MaxConnections
	case "MaxBurstLength":
		return &p.MaxBurstLength
	case "FirstBurstLength":
		return &p.FirstBurstLength
	case "DefaultTime2Wait":
		return &p.DefaultTime2Wait
	case "DefaultTime2Retain":
		return &p.DefaultTime2Retain
	case "MaxOutstandingR2T":
		return &p.MaxOutstandingR2T
	case "ErrorRecoveryLevel":
		return &p.ErrorRecoveryLevel
	case "InitialR2T":
		return &p.InitialR2T
	case "ImmediateData":
		return &p.ImmediateData
	case "DataPDUInOrder":
		return &p.DataPDUInOrder
	case "DataSequenceInOrder":
		return &p.DataSequenceInOrder
	case "HeaderDigest":
		return &p.HeaderDigest
	case "DataDigest":
		return &p.DataDigest
	}
	return nil
}

// Finish applies the cross-key rules once negotiation is over:
// FirstBurstLength never exceeds MaxBurstLength (RFC 7143 §13.14).
func (n *Negotiator) Finish() {
	if n.Params.FirstBurstLength > n.Params.MaxBurstLength {
		n.Params.FirstBurstLength = n.Params.MaxBurstLength
	}
}
