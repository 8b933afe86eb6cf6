package dataplane

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// MinUnderlayMTU is the smallest underlay MTU the engine works with: what
// every IPv4 host must take (RFC 791). IPv6 asks for more (checkFamilyMTU).
const MinUnderlayMTU = 576

// checkFamilyMTU refuses an underlay MTU too small for IPv6 where IPv6 is
// used: an IPv6 underlay link carries at least IPv6MinMTU (RFC 8200
// section 5), and so must the pods' links once they have IPv6 addresses
// (Linux turns IPv6 off on a device with less), in tunnel mode after the
// encapsulation overhead.
func (e *Engine) checkFamilyMTU(underlay int) error {
	if e.node6 && underlay < encap.IPv6MinMTU {
		return fmt.Errorf("underlay mtu %d: %w: an IPv6 underlay needs at least %d", underlay, ErrInvalid, encap.IPv6MinMTU)
	}
	if !e.has6 {
		return nil
	}
	route := underlay
	if !e.cfg.Native {
		route = underlay - e.overhead - e.optLen
	}
	if route < encap.IPv6MinMTU {
		return fmt.Errorf("underlay mtu %d: %w: it leaves IPv6 pods a route mtu of %d, below IPv6's minimum %d", underlay, ErrInvalid, route, encap.IPv6MinMTU)
	}
	return nil
}

// setMTUs derives the engine's MTUs from the underlay's. Callers hold e.mu
// (or own e alone, in New) and publish afterwards.
func (e *Engine) setMTUs(underlay int) {
	e.tunnelMTU = underlay - e.overhead - e.optLen
	route := e.tunnelMTU
	if e.cfg.Native {
		// No encapsulation between nodes: pods get the full MTU.
		route = underlay
	}
	e.underlayMTU.Store(int64(underlay))
	e.routeMTU.Store(int64(route))
	// Pod and host devices hand out at most their MTU, which is never
	// more than the underlay's; buffers only grow, so a worker never
	// reads into one too small for what its device was allowed before.
	if need := int64(encap.Headroom + underlay + 256); need > e.linkBuf.Load() {
		e.linkBuf.Store(need)
	}
}

// SetUnderlayMTU follows a change of the underlay device's MTU at run
// time. The route MTU and the largest packet the tunnel carries (what
// fragmentation-needed answers say) change at once; then the pods' devices
// get the new route MTU, the host device and the underlay queues the new
// underlay MTU (those implementing packetio.MTUSetter), and the host
// routes the engine installed are replaced with the new MTU. A device or
// route that cannot be changed (a pod's device gone with its namespace) is
// logged and skipped, and the rest is done; the errors come back joined.
// An MTU below MinUnderlayMTU, or too small for the IPv6 the node uses
// (see checkFamilyMTU), is refused and changes nothing.
func (e *Engine) SetUnderlayMTU(mtu int) error {
	if mtu < MinUnderlayMTU {
		return fmt.Errorf("underlay mtu %d: %w: below %d", mtu, ErrInvalid, MinUnderlayMTU)
	}
	if err := e.checkFamilyMTU(mtu); err != nil {
		return err
	}
	e.mtuMu.Lock()
	defer e.mtuMu.Unlock()
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return ErrStopped
	}
	var errs []error
	for i := range e.underlays {
		errs = append(errs, e.setDeviceMTU(e.underlays[i].dev, e.underlays[i].dev.Name(), mtu))
	}
	e.setMTUs(mtu)
	e.publishLocked()
	errs = append(errs, e.refreshRoutesLocked())
	eps := make([]*endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		eps = append(eps, ep)
	}
	e.mu.Unlock()

	route := e.RouteMTU()
	for _, ep := range eps {
		if ep.gone.Load() {
			continue // nothing left to change
		}
		errs = append(errs, e.setDeviceMTU(ep.dev, "endpoint "+ep.Name, route))
	}
	if e.host != nil {
		errs = append(errs, e.setDeviceMTU(e.host, "host device", mtu))
	}
	e.log.Debug("underlay mtu set", zap.Int("underlay-mtu", mtu), zap.Int("route-mtu", route))
	return errors.Join(errs...)
}

// setDeviceMTU sets the MTU of d, when its driver can, logging a failure.
func (e *Engine) setDeviceMTU(d any, what string, mtu int) error {
	s, ok := d.(packetio.MTUSetter)
	if !ok {
		return nil
	}
	if err := s.SetMTU(mtu); err != nil {
		e.log.Warn("mtu not changed", zap.String("device", what), zap.Int("mtu", mtu), zap.Error(err))
		return fmt.Errorf("%s mtu %d: %w", what, mtu, err)
	}
	return nil
}

// refreshRoutesLocked replaces the host routes of the nodes and VTEPs with
// ones of the current MTU: in one call, or route by route when that one is
// refused, so that one route taken from under vxdp does not keep the
// others at the old MTU. Callers hold e.mu.
func (e *Engine) refreshRoutesLocked() error {
	if e.hostRoutes == nil {
		return nil
	}
	var rs []HostRoute
	for _, p := range e.nodes {
		for _, r := range e.nodeRoutes(p.NodeSpec) {
			if !r.Via.IsValid() {
				rs = append(rs, r)
			}
		}
	}
	for _, v := range e.vteps {
		rs = append(rs, HostRoute{Prefix: v.CIDR, MTU: e.tunnelMTU})
	}
	if len(rs) == 0 || e.hostRoutes.AddRoutes(rs) == nil {
		return nil
	}
	var errs []error
	for _, r := range rs {
		if err := e.hostRoutes.AddRoutes([]HostRoute{r}); err != nil {
			e.log.Warn("host route keeps its old mtu", zap.Stringer("prefix", r.Prefix), zap.Error(err))
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
