package dataplane

import (
	"fmt"
	"sort"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/identity"
)

// policy is an endpoint's ingress allow-list of source identities. A nil
// *policy allows everything (the default). Policies are immutable: a change
// builds a new one and swaps the endpoint's pointer, so established flows of
// identities that stay allowed never see a gap.
type policy struct {
	allowed []identity.ID // sorted, world-ipv4/-ipv6 folded to world
}

func newPolicy(ids []identity.ID) *policy {
	if ids == nil {
		return nil
	}
	p := &policy{}
	seen := map[identity.ID]bool{}
	for _, id := range ids {
		id = foldWorld(id)
		if !seen[id] {
			seen[id] = true
			p.allowed = append(p.allowed, id)
		}
	}
	sort.Slice(p.allowed, func(i, j int) bool { return p.allowed[i] < p.allowed[j] })
	return p
}

func foldWorld(id identity.ID) identity.ID {
	if id == identity.WorldIPv4 || id == identity.WorldIPv6 {
		return identity.World
	}
	return id
}

// allows reports whether traffic from src may enter. It runs per packet:
// a short linear scan, a binary search for long lists.
func (p *policy) allows(src identity.ID) bool {
	if p == nil {
		return true
	}
	a := p.allowed
	if len(a) <= 8 {
		for _, id := range a {
			if id == src {
				return true
			}
		}
		return false
	}
	i := sort.Search(len(a), func(i int) bool { return a[i] >= src })
	return i < len(a) && a[i] == src
}

// SetIdentity changes the security identity of a running endpoint: its
// packets carry the new one (and its VNI) from the next packet on, and
// other endpoints' allow-lists judge them by it. The device is untouched.
func (e *Engine) SetIdentity(name string, id identity.ID) error {
	vni, err := workloadVNI(name, id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.endpoints[name]
	if !ok {
		return fmt.Errorf("endpoint %s: %w", name, ErrNotFound)
	}
	if ep.Identity == id {
		return nil
	}
	old := ep.Identity
	ep.Identity = id
	ep.setIdent(id, vni)
	e.publishLocked()
	e.log.Info("endpoint identity changed", zap.String("endpoint", name), zap.Uint32("from", uint32(old)), zap.Uint32("to", uint32(id)))
	return nil
}

// SetPolicy replaces an endpoint's ingress allow-list; nil allows all. It
// takes effect for the next packet, without touching the endpoint's device.
func (e *Engine) SetPolicy(name string, allowFrom []identity.ID) error {
	for _, id := range allowFrom {
		if id == identity.Unknown || id > identity.Max {
			return fmt.Errorf("endpoint %s: allow-from %d: %w", name, id, ErrInvalid)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.endpoints[name]
	if !ok {
		return fmt.Errorf("endpoint %s: %w", name, ErrNotFound)
	}
	ep.policy.Store(newPolicy(allowFrom))
	ep.AllowFrom = append([]identity.ID(nil), allowFrom...)
	return nil
}
