package iscsi

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/iscsi/pdu"
)

// textRequest answers SendTargets (RFC 7143 Appendix C) and other text
// keys; a long answer goes out in pieces the initiator continues with
// empty Text Requests carrying our Target Transfer Tag.
func (c *conn) textRequest(p *pdu.PDU) {
	defer p.Release()
	s := c.sess
	h := &p.Header
	if !s.admit(h, false) {
		return
	}
	var body []byte
	if h.TargetTransferTag != reservedTag {
		s.mu.Lock()
		if h.TargetTransferTag == s.textTTT {
			body = s.text
		}
		s.text = nil
		s.mu.Unlock()
	} else {
		kvs, err := login.ParseText(p.Data)
		if err != nil {
			c.log.Warn("text request", zap.Error(err))
			c.reject(p, pdu.RejectProtocolError)
			return
		}
		var out []login.KV
		for _, kv := range kvs {
			if kv.Key == "SendTargets" {
				found, why := c.sendTargets(kv.Value)
				if len(found) == 0 {
					// The initiator only sees an empty list: say why here.
					c.log.Info("SendTargets lists no target", zap.String("which", kv.Value), zap.String("reason", why))
				}
				out = append(out, found...)
			} else {
				out = append(out, login.KV{Key: kv.Key, Value: login.NotUnderstood})
			}
		}
		body = login.EncodeText(nil, out)
	}
	resp := pdu.Header{Opcode: pdu.OpTextResponse, Flags: pdu.FlagFinal, LUN: h.LUN, InitiatorTaskTag: h.InitiatorTaskTag, TargetTransferTag: reservedTag}
	if max := int(s.params.MaxRecvDataSegmentLength); len(body) > max {
		s.mu.Lock()
		s.textTTT = s.newTTT()
		s.text = body[max:]
		s.mu.Unlock()
		body = body[:max]
		resp.Flags = pdu.FlagContinue
		resp.TargetTransferTag = s.textTTT
	}
	c.send(outItem{hdr: resp, data: body, advance: true})
}

// sendTargets lists the targets this initiator may log in to: admitted by
// the ACL, and, where the ACL entry has CHAP, only to a discovery session
// authenticated as that CHAP user. When it lists none, why says what kept
// the targets asked for out.
func (c *conn) sendTargets(which string) (out []login.KV, why string) {
	s := c.sess
	srv := c.srv
	cfg, byIQN := srv.targets.current()
	addr := c.nc.LocalAddr().String()
	var asked, admitted int
	for _, tc := range cfg.Targets {
		t := byIQN[tc.IQN]
		if t == nil {
			continue
		}
		switch which {
		case "All":
			if !s.discovery && tc.IQN != s.nexus.TargetName {
				continue
			}
		case "":
			if tc.IQN != s.nexus.TargetName {
				continue
			}
		default:
			if tc.IQN != which {
				continue
			}
		}
		asked++
		a, ok := t.aclFor(s.initiator)
		if !ok {
			continue
		}
		admitted++
		if a.CHAP != nil && a.CHAP.User != s.authUser {
			continue
		}
		out = append(out, login.KV{Key: "TargetName", Value: tc.IQN},
			login.KV{Key: "TargetAddress", Value: fmt.Sprintf("%s,%d", addr, tpgt)})
	}
	switch {
	case len(out) > 0:
	case admitted > 0:
		why = "the targets admitting the initiator require CHAP, and discovery was not authenticated as their user"
	case asked > 0:
		why = "no target's ACL admits the initiator"
	case which == "All" || which == "":
		why = "no targets"
	default:
		why = "no such target"
	}
	return out, why
}
