package iscsi

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// Login status (RFC 7143 §11.13.5): class<<8 | detail.
const (
	statusSuccess            = 0x0000
	statusInitiatorError     = 0x0200
	statusAuthFailure        = 0x0201
	statusAuthorization      = 0x0202
	statusNotFound           = 0x0203
	statusUnsupportedVer     = 0x0205
	statusTooManyConns       = 0x0206
	statusMissingParam       = 0x0207
	statusCantInclude        = 0x0208
	statusSessionType        = 0x0209
	statusNoSession          = 0x020a
	statusInvalidDuringLogin = 0x020b
	statusTargetError        = 0x0300
	statusOutOfResources     = 0x0302
)

// loginError fails a login with a status; the response is sent, then the
// connection closed.
type loginError struct {
	status uint16
	err    error
}

func (e *loginError) Error() string {
	return fmt.Sprintf("login status %#04x: %v", e.status, e.err)
}

func failLogin(status uint16, format string, a ...any) error {
	return &loginError{status, fmt.Errorf(format, a...)}
}

// loginState is one connection's login (RFC 7143 §6.3).
type loginState struct {
	c     *conn
	first bool
	req   pdu.Header // the first Login Request: ISID, TSIH, CID, CmdSN
	csg   pdu.Stage
	text  []byte // key=value text gathered across C-bit PDUs

	neg          *login.Negotiator
	initiator    string
	discovery    bool
	tgt          *target
	acl          ACL
	authRequired bool
	authMethod   string
	chap         *login.CHAP
	sentMRDSL    bool
}

// login runs the login phase: Login Requests until the initiator reaches
// full feature phase, fails, or LoginTimeout passes.
func (c *conn) login() (*session, error) {
	c.nc.SetDeadline(time.Now().Add(c.srv.LoginTimeout))
	ls := &loginState{c: c, first: true, neg: login.NewNegotiator()}
	// A login is a few PDUs; many more is an initiator going round in circles.
	for range 64 {
		var p pdu.PDU
		err := c.r.Read(&p)
		if err != nil && !errors.Is(err, pdu.ErrUnknownOpcode) {
			return nil, fmt.Errorf("login: %w", err)
		}
		if err != nil || p.Opcode != pdu.OpLoginRequest {
			p.Release()
			c.loginRespond(&p.Header, ls, nil, &loginError{statusInvalidDuringLogin, fmt.Errorf("%v before login completed", p.Opcode)})
			return nil, fmt.Errorf("login: %v before login completed", p.Opcode)
		}
		kvs, transit, nsg, err := ls.step(&p)
		p.Release()
		if err != nil {
			c.loginRespond(&p.Header, ls, kvs, err)
			return nil, err
		}
		if transit && nsg == pdu.StageFullFeature {
			sess, err := c.srv.addSession(ls)
			if err != nil {
				c.loginRespond(&p.Header, ls, kvs, err)
				return nil, err
			}
			if !ls.sentMRDSL {
				kvs = append(kvs, login.KV{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(login.OurMaxRecvDataSegmentLength)})
			}
			c.sess = sess
			ls.req.TSIH = sess.tsih
			if err := c.loginRespondOK(&p.Header, ls, kvs, true, nsg); err != nil {
				sess.remove()
				return nil, err
			}
			c.nc.SetDeadline(time.Time{})
			return sess, nil
		}
		if err := c.loginRespondOK(&p.Header, ls, kvs, transit, nsg); err != nil {
			return nil, err
		}
		if transit {
			ls.csg = nsg
		}
	}
	return nil, errors.New("login: too many Login Requests")
}

// step consumes one Login Request and returns the keys to answer and
// whether to transit to nsg.
func (ls *loginState) step(p *pdu.PDU) (kvs []login.KV, transit bool, nsg pdu.Stage, err error) {
	h := &p.Header
	csg, nsg := h.CSG(), h.NSG()
	wantTransit, cont := h.Transit(), h.Continue()
	if ls.first {
		ls.req = *h
		ls.csg = csg
		ls.c.statSN = h.ExpStatSN
		// We speak version 0x00 only (RFC 7143 §11.12.4).
		if h.VersionMin() > 0 {
			return nil, false, 0, failLogin(statusUnsupportedVer, "VersionMin %d", h.VersionMin())
		}
	} else if h.ISID != ls.req.ISID || h.TSIH != ls.req.TSIH || h.CID != ls.req.CID {
		return nil, false, 0, failLogin(statusInitiatorError, "ISID, TSIH or CID changed during login")
	}
	switch {
	case wantTransit && cont:
		return nil, false, 0, failLogin(statusInitiatorError, "both T and C set")
	case csg != pdu.StageSecurity && csg != pdu.StageOperational, csg != ls.csg:
		return nil, false, 0, failLogin(statusInitiatorError, "CSG %d in stage %d", csg, ls.csg)
	case wantTransit && (nsg <= csg || nsg == 2):
		return nil, false, 0, failLogin(statusInitiatorError, "NSG %d from CSG %d", nsg, csg)
	}
	if len(ls.text)+len(p.Data) > login.MaxTextLength {
		return nil, false, 0, failLogin(statusInitiatorError, "login text beyond %d bytes", login.MaxTextLength)
	}
	ls.text = append(ls.text, p.Data...)
	if cont {
		// More text follows: acknowledge with an empty response (RFC 7143 §6.3).
		return nil, false, 0, nil
	}
	in, err := login.ParseText(ls.text)
	ls.text = ls.text[:0]
	if err != nil {
		return nil, false, 0, failLogin(statusInitiatorError, "%w", err)
	}
	if ce := ls.c.log.Check(zap.DebugLevel, "login request"); ce != nil {
		ce.Write(zap.Uint8("csg", uint8(csg)), zap.Uint8("nsg", uint8(nsg)), zap.Bool("transit", wantTransit), zap.Any("keys", redactCHAP(in)))
	}
	if ls.first {
		if err := ls.identify(in); err != nil {
			return nil, false, 0, err
		}
		ls.first = false
		if !ls.discovery {
			kvs = append(kvs, login.KV{Key: "TargetPortalGroupTag", Value: strconv.Itoa(tpgt)})
		}
	}
	phase := login.PhaseOperational
	if csg == pdu.StageSecurity {
		phase = login.PhaseSecurity
		out, err := ls.security(in)
		kvs = append(kvs, out...)
		if err != nil {
			return kvs, false, 0, err
		}
	} else if ls.authRequired && (ls.chap == nil || !ls.chap.Done()) {
		return nil, false, 0, failLogin(statusAuthFailure, "authentication required, initiator skipped the security stage")
	}
	out, err := ls.neg.Negotiate(in, phase)
	if err != nil {
		return nil, false, 0, failLogin(statusInitiatorError, "%w", err)
	}
	for _, kv := range out {
		if kv.Key == "MaxRecvDataSegmentLength" {
			ls.sentMRDSL = true
		}
	}
	kvs = append(kvs, out...)
	transit = wantTransit
	if csg == pdu.StageSecurity && !ls.authenticated() {
		transit = false
	}
	if transit && nsg == pdu.StageFullFeature {
		ls.neg.Finish()
	}
	return kvs, transit, nsg, nil
}

// identify checks the declarations of the first Login Request: who the
// initiator is, the session type, the target and its ACL.
func (ls *loginState) identify(in []login.KV) error {
	get := func(k string) string {
		for _, kv := range in {
			if kv.Key == k {
				return kv.Value
			}
		}
		return ""
	}
	ls.initiator = get("InitiatorName")
	if ls.initiator == "" {
		return failLogin(statusMissingParam, "no InitiatorName")
	}
	c := ls.c
	c.log = c.log.With(zap.String("initiator", ls.initiator))
	switch st := get("SessionType"); st {
	case "", "Normal":
	case "Discovery":
		ls.discovery = true
		ls.neg.Discovery = true
	default:
		return failLogin(statusSessionType, "SessionType %q", st)
	}
	s := c.srv
	if ls.req.TSIH != 0 {
		// Adding a connection to a session: we negotiate MaxConnections=1.
		if !s.sessions.exists(ls.req.TSIH) {
			return failLogin(statusNoSession, "TSIH %d: no such session", ls.req.TSIH)
		}
		return failLogin(statusTooManyConns, "TSIH %d: one connection per session", ls.req.TSIH)
	}
	return s.targets.pin(func(cfg *Config, byIQN map[string]*target) error {
		if ls.discovery {
			ls.authRequired = cfg.DiscoveryCHAP != nil
			disc := cfg.DiscoveryCHAP
			// Discovery CHAP takes the discovery credential or the initiator's
			// own (from an ACL entry), so SendTargets can show CHAP targets.
			creds := hostCredentials(byIQN, ls.initiator)
			ls.chap = &login.CHAP{Lookup: func(user string) *login.Credential {
				if disc != nil && user == disc.User {
					return credential(disc, "")
				}
				for _, cr := range creds {
					if cr.User == user {
						return cr
					}
				}
				return nil
			}}
			return nil
		}
		name := get("TargetName")
		if name == "" {
			return failLogin(statusMissingParam, "no TargetName")
		}
		c.log = c.log.With(zap.String("iqn", name))
		t := byIQN[name]
		if t == nil {
			return failLogin(statusNotFound, "target %s not found", name)
		}
		acl, ok := t.aclFor(ls.initiator)
		if !ok {
			return failLogin(statusAuthorization, "initiator not in the ACL of %s", name)
		}
		ls.tgt, ls.acl = t, acl
		if acl.CHAP != nil {
			ls.authRequired = true
			cred := credential(acl.CHAP, name)
			ls.chap = &login.CHAP{Lookup: func(user string) *login.Credential {
				if user == cred.User {
					return cred
				}
				return nil
			}}
		}
		return nil
	})
}

func credential(c *CHAP, targetIQN string) *login.Credential {
	mu := c.MutualUser
	if mu == "" {
		mu = targetIQN
	}
	return &login.Credential{User: c.User, Secret: c.Secret, MutualUser: mu, MutualSecret: c.MutualSecret}
}

func (ls *loginState) authenticated() bool {
	switch ls.authMethod {
	case "None":
		return true
	case "CHAP":
		return ls.chap.Done()
	}
	return !ls.authRequired
}

// security answers AuthMethod and the CHAP exchange.
func (ls *loginState) security(in []login.KV) ([]login.KV, error) {
	var out []login.KV
	for _, kv := range in {
		if kv.Key != "AuthMethod" {
			continue
		}
		if ls.authMethod != "" {
			return nil, failLogin(statusInitiatorError, "AuthMethod negotiated twice")
		}
		// The first method offered that we support (RFC 7143 §6.2): CHAP
		// where we hold a credential, None where none is required.
		for _, m := range splitList(kv.Value) {
			if m == "CHAP" && ls.chap != nil || m == "None" && !ls.authRequired {
				ls.authMethod = m
				break
			}
		}
		if ls.authMethod == "" {
			return []login.KV{{Key: "AuthMethod", Value: login.Reject}},
				failLogin(statusAuthFailure, "AuthMethod=%s: none acceptable", kv.Value)
		}
		out = append(out, login.KV{Key: "AuthMethod", Value: ls.authMethod})
	}
	if ls.authMethod == "CHAP" {
		r, err := ls.chap.Step(in)
		out = append(out, r...)
		if err != nil {
			if errors.Is(err, login.ErrAuth) {
				return out, failLogin(statusAuthFailure, "%w", err)
			}
			return out, failLogin(statusInitiatorError, "%w", err)
		}
		if ls.chap.Done() {
			ls.c.log.Info("CHAP authenticated", zap.String("user", ls.chap.User))
		}
	}
	if ls.authRequired && ls.authMethod == "" && len(in) > 0 {
		return out, failLogin(statusAuthFailure, "authentication required, no AuthMethod offered")
	}
	return out, nil
}

func splitList(v string) []string {
	var out []string
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		out = append(out, v[:i])
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return out
}

// loginRespond sends a failing Login Response for err (a *loginError, or a
// target error).
func (c *conn) loginRespond(req *pdu.Header, ls *loginState, kvs []login.KV, err error) {
	status := uint16(statusTargetError)
	var le *loginError
	if errors.As(err, &le) {
		status = le.status
	}
	h := pdu.Header{
		Opcode: pdu.OpLoginResponse,
		ISID:   req.ISID, TSIH: req.TSIH, InitiatorTaskTag: req.InitiatorTaskTag,
		StatSN: c.statSN, ExpCmdSN: req.CmdSN, MaxCmdSN: req.CmdSN,
		StatusClass: byte(status >> 8), StatusDetail: byte(status),
	}
	h.SetStages(req.CSG(), 0, false)
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.w.Write(&h, login.EncodeText(nil, kvs))
}

func (c *conn) loginRespondOK(req *pdu.Header, ls *loginState, kvs []login.KV, transit bool, nsg pdu.Stage) error {
	h := pdu.Header{
		Opcode: pdu.OpLoginResponse,
		ISID:   ls.req.ISID, TSIH: ls.req.TSIH, InitiatorTaskTag: req.InitiatorTaskTag,
		StatSN: c.statSN, ExpCmdSN: req.CmdSN, MaxCmdSN: req.CmdSN + uint32(c.srv.QueueDepth) - 1,
	}
	h.SetStages(req.CSG(), nsg, transit)
	c.statSN++
	return c.w.Write(&h, login.EncodeText(nil, kvs))
}

// redactCHAP hides CHAP responses and challenges from debug logs: a response
// with its challenge is enough to mount an offline dictionary attack on the
// secret.
func redactCHAP(kvs []login.KV) []login.KV {
	out := make([]login.KV, len(kvs))
	for i, kv := range kvs {
		if kv.Key == "CHAP_R" || kv.Key == "CHAP_C" {
			kv.Value = "(redacted)"
		}
		out[i] = kv
	}
	return out
}
