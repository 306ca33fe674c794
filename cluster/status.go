package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Status is the cluster as this gateway sees it.
type Status struct {
	// Gateway is this gateway's name; Leading whether it leads.
	Gateway string `json:"gateway"`
	Leading bool   `json:"leading"`
	// Leader is who leads ("" while nobody is known to), since when
	// (where known: the leader's own clock).
	Leader string    `json:"leader"`
	Since  time.Time `json:"since,omitzero"`
	// Renewals and Takeovers count this gateway's lease renewals and the
	// times it became the leader, since it started.
	Renewals  uint64 `json:"renewals"`
	Takeovers uint64 `json:"takeovers"`
	// Gateways are every gateway's records, this one's included, by name.
	Gateways []Gateway `json:"gateways"`
}

// Gateway is one gateway's record as it last refreshed it.
type Gateway struct {
	Name string `json:"name"`
	// Client is its Ceph client's address (what fencing blocklists).
	Client string `json:"client"`
	// Seen is when it last refreshed its record (its own clock).
	Seen   time.Time `json:"seen"`
	Leader bool      `json:"leader"`
	// Inventory is the digest of its inventory file; Differs says it is
	// not this gateway's.
	Inventory string `json:"inventory"`
	Differs   bool   `json:"differs"`
}

// Status reports the cluster as last seen; it does not wait for Ceph.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Status{
		Gateway: e.cfg.Gateway, Leading: e.leading, Leader: e.leader, Since: e.since,
		Renewals: e.renewals, Takeovers: e.takeovers,
	}
	self := false
	for _, m := range e.members {
		s.Gateways = append(s.Gateways, Gateway{
			Name: m.Gateway, Client: m.Addr, Seen: m.Seen, Leader: m.Gateway == e.leader,
			Inventory: m.Inventory, Differs: m.Inventory != e.cfg.Inventory,
		})
		self = self || m.Gateway == e.cfg.Gateway
	}
	if !self { // before its first record is written
		s.Gateways = append(s.Gateways, Gateway{
			Name: e.cfg.Gateway, Client: e.self, Leader: e.leading, Inventory: e.cfg.Inventory,
		})
	}
	sort.Slice(s.Gateways, func(i, j int) bool { return s.Gateways[i].Name < s.Gateways[j].Name })
	return s
}

// refresh writes this gateway's record and reads everyone's, every
// renewEvery until ctx ends. A gateway whose inventory differs from ours
// is warned about once each time its digest changes.
func (e *Elector) refresh(ctx context.Context) {
	t := time.NewTicker(e.renewEvery)
	defer t.Stop()
	var failing repeated
	for {
		if err := e.refreshOnce(); failing.changed(err) {
			e.log.Warn("gateway records", zap.String("op", "refresh"), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Elector) refreshOnce() error {
	e.mu.Lock()
	me := member{Gateway: e.cfg.Gateway, Addr: e.self, Inventory: e.cfg.Inventory, Leader: e.leading, Seen: time.Now()}
	e.mu.Unlock()
	b, err := json.Marshal(me)
	if err != nil {
		return err
	}
	if err := e.co.SetOmap(object, map[string][]byte{gatewayPrefix + me.Gateway: b}); err != nil {
		return err
	}
	kv, err := e.co.Omap(object)
	if err != nil {
		return err
	}
	members := map[string]member{}
	var rec leaderRecord
	for k, v := range kv {
		switch {
		case k == leaderKey:
			if err := json.Unmarshal(v, &rec); err != nil {
				e.log.Warn("leader record unreadable", zap.Error(err))
			}
		case strings.HasPrefix(k, gatewayPrefix):
			var m member
			if err := json.Unmarshal(v, &m); err != nil {
				e.log.Warn("gateway record unreadable", zap.String("key", k), zap.Error(err))
				continue
			}
			members[m.Gateway] = m
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.members, e.record = members, rec
	if !e.leading && e.leader == rec.Gateway && !rec.Released {
		e.since = rec.Since
	}
	for name, m := range members {
		switch {
		case name == e.cfg.Gateway:
		case m.Inventory == e.cfg.Inventory:
			delete(e.warned, name)
		case e.warned[name] != m.Inventory:
			e.warned[name] = m.Inventory
			e.log.Warn("another gateway serves a different inventory", zap.String("other", name),
				zap.String("inventory", e.cfg.Inventory), zap.String("theirs", m.Inventory))
		}
	}
	return nil
}

// SetInventory records the digest of the inventory this gateway serves
// after a reload, so that the others compare theirs with it; differences
// are warned of again.
func (e *Elector) SetInventory(digest string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg.Inventory = digest
	clear(e.warned)
}
