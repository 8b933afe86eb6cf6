package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/vxdp/vxdp/dataplane/packetio"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
)

// VTEPSpec is one VTEP CIDR: the prefix a third-party VXLAN device (a load
// balancer, a VM with a Linux vxlan device) stands for, its underlay
// address, and the MAC its inner frames must be addressed to. One device
// may stand for several CIDRs, each with its own entry. The CIDR is IPv4
// (VTEPs carry IPv4 inside, as Cilium's); the endpoint is of the
// underlay's family, IPv6 on an IPv6 underlay.
type VTEPSpec struct {
	CIDR     netip.Prefix
	Endpoint netip.Addr
	MAC      encap.MAC
}

// vtep is one VTEP device as the packet path sees it: all its CIDRs, and a
// tunnel description per CIDR (they differ in the inner destination MAC).
type vtep struct {
	ip    netip.Addr
	cidrs []netip.Prefix
	reply netip.AddrPort // where ARP replies go
}

type vtepRoute struct {
	dev *vtep
	tun tunnel
}

// VTEPPort is where VTEPs listen, whatever the cluster's own tunnel
// protocol and port are: 8472, the port of the Linux vxlan device in
// Cilium's VTEP integration guide (docs.cilium.io, "VXLAN Tunnel Endpoint
// (VTEP) Integration").
const VTEPPort = encap.VXLANPort

func (e *Engine) checkVTEP(v VTEPSpec, nodes map[string]*peer) error {
	if !v.CIDR.IsValid() || !v.CIDR.Addr().Is4() || v.CIDR != v.CIDR.Masked() {
		return fmt.Errorf("vtep cidr %s: %w", v.CIDR, ErrInvalid)
	}
	if !v.Endpoint.IsValid() || v.Endpoint == e.cfg.NodeIP {
		return fmt.Errorf("vtep %s endpoint %s: %w", v.CIDR, v.Endpoint, ErrInvalid)
	}
	if !e.sameFamily(v.Endpoint) {
		return fmt.Errorf("vtep %s endpoint %s: %w: not of the underlay's family (node ip %s)", v.CIDR, v.Endpoint, ErrInvalid, e.cfg.NodeIP)
	}
	if !v.MAC.IsUnicast() {
		return fmt.Errorf("vtep %s mac %s: %w: not a unicast address", v.CIDR, v.MAC, ErrInvalid)
	}
	if v.CIDR.Overlaps(e.cfg.PodCIDR) {
		return fmt.Errorf("vtep cidr %s overlaps this node's pod cidr %s: %w", v.CIDR, e.cfg.PodCIDR, ErrInvalid)
	}
	// An underlay address inside a VTEP CIDR would be routed into the
	// tunnel (see checkUnderlayAddrsLocked).
	for _, a := range []netip.Addr{e.cfg.NodeIP, v.Endpoint} {
		if v.CIDR.Contains(a) {
			return fmt.Errorf("vtep cidr %s contains the underlay address %s: %w", v.CIDR, a, ErrInvalid)
		}
	}
	if u := e.cfg.UnderlayPrefix; u.IsValid() && v.CIDR.Overlaps(u) {
		return fmt.Errorf("vtep cidr %s overlaps the underlay subnet %s: %w", v.CIDR, u, ErrInvalid)
	}
	for _, n := range nodes {
		if v.CIDR.Contains(n.IP) {
			return fmt.Errorf("vtep cidr %s contains node %s's address %s: %w", v.CIDR, n.Name, n.IP, ErrInvalid)
		}
		for _, p := range n.podCIDRs() {
			if p.Contains(v.Endpoint) {
				return fmt.Errorf("vtep endpoint %s is inside node %s's pod cidr %s: %w", v.Endpoint, n.Name, p, ErrInvalid)
			}
		}
		if v.CIDR.Overlaps(n.PodCIDR) {
			return fmt.Errorf("vtep cidr %s overlaps node %s's pod cidr %s: %w", v.CIDR, n.Name, n.PodCIDR, ErrInvalid)
		}
		if v.Endpoint == n.IP {
			return fmt.Errorf("vtep endpoint %s is node %s: %w", v.Endpoint, n.Name, ErrInvalid)
		}
	}
	return nil
}

// SetVTEPs replaces the VTEP table. It is all or nothing: an invalid entry,
// or a CIDR whose host route the kernel refuses (one vxdp did not install
// is there), leaves the old table in place.
func (e *Engine) SetVTEPs(vs []VTEPSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return ErrStopped
	}
	if len(vs) > 0 && len(e.underlays) == 0 {
		return fmt.Errorf("vteps need an underlay device and this engine has none: %w", ErrInvalid)
	}
	seen := map[netip.Prefix]bool{}
	for i, v := range vs {
		if err := e.checkVTEP(v, e.nodes); err != nil {
			return err
		}
		if seen[v.CIDR] {
			return fmt.Errorf("vtep cidr %s given twice: %w", v.CIDR, ErrInvalid)
		}
		seen[v.CIDR] = true
		for _, o := range vs[:i] {
			if o.CIDR.Overlaps(v.CIDR) {
				return fmt.Errorf("vtep cidr %s overlaps vtep cidr %s: %w", v.CIDR, o.CIDR, ErrInvalid)
			}
		}
	}
	// The routes first: one the kernel refuses leaves the old table.
	if err := e.addVTEPRoutesLocked(vs, e.vteps); err != nil {
		return err
	}
	old := e.vteps
	e.vteps = append([]VTEPSpec(nil), vs...)
	e.publishLocked()
	e.delVTEPRoutesLocked(old, e.vteps)
	e.log.Info("vteps set", zap.Int("count", len(vs)))
	return nil
}

// AddVTEP adds one VTEP CIDR.
func (e *Engine) AddVTEP(v VTEPSpec) error {
	e.mu.Lock()
	vs := append(append([]VTEPSpec(nil), e.vteps...), v)
	for _, o := range e.vteps {
		if o.CIDR == v.CIDR {
			e.mu.Unlock()
			return fmt.Errorf("vtep %s: %w", v.CIDR, ErrExists)
		}
	}
	e.mu.Unlock()
	return e.SetVTEPs(vs)
}

// DelVTEP removes the VTEP CIDR p.
func (e *Engine) DelVTEP(p netip.Prefix) error {
	e.mu.Lock()
	var vs []VTEPSpec
	found := false
	for _, o := range e.vteps {
		if o.CIDR == p {
			found = true
			continue
		}
		vs = append(vs, o)
	}
	e.mu.Unlock()
	if !found {
		return fmt.Errorf("vtep %s: %w", p, ErrNotFound)
	}
	return e.SetVTEPs(vs)
}

// VTEPs lists the VTEP CIDRs sorted by prefix.
func (e *Engine) VTEPs() []VTEPSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]VTEPSpec(nil), e.vteps...)
	sort.Slice(out, func(i, j int) bool { return out[i].CIDR.Addr().Less(out[j].CIDR.Addr()) })
	return out
}

// addVTEPRoutesLocked installs the kernel's routes (through the host
// device, so the node reaches them) to the CIDRs of vs that old lacks, all
// or none. Callers hold e.mu.
func (e *Engine) addVTEPRoutesLocked(vs, old []VTEPSpec) error {
	if e.hostRoutes == nil {
		return nil
	}
	had := map[netip.Prefix]bool{}
	for _, v := range old {
		had[v.CIDR] = true
	}
	var rs []HostRoute
	for _, v := range vs {
		if !had[v.CIDR] {
			rs = append(rs, HostRoute{Prefix: v.CIDR, MTU: e.tunnelMTU})
		}
	}
	if len(rs) == 0 {
		return nil
	}
	if err := e.hostRoutes.AddRoutes(rs); err != nil {
		var re *RouteError
		if errors.As(err, &re) {
			return fmt.Errorf("vtep %s: %w", re.Prefix, err)
		}
		return fmt.Errorf("vteps: %w", err)
	}
	return nil
}

// delVTEPRoutesLocked removes the routes to the CIDRs of old that vs
// lacks. Callers hold e.mu.
func (e *Engine) delVTEPRoutesLocked(old, vs []VTEPSpec) {
	if e.hostRoutes == nil {
		return
	}
	now := map[netip.Prefix]bool{}
	for _, v := range vs {
		now[v.CIDR] = true
	}
	for _, v := range old {
		if !now[v.CIDR] {
			if err := e.hostRoutes.DelRoute(v.CIDR); err != nil {
				e.log.Warn("remove vtep route", zap.Stringer("prefix", v.CIDR), zap.Error(err))
			}
		}
	}
}

// vtepTables builds the packet path's view of the VTEP table.
func (e *Engine) vtepTables() (map[netip.Addr]*vtep, map[netip.Prefix]*vtepRoute) {
	devs := map[netip.Addr]*vtep{}
	routes := map[netip.Prefix]*vtepRoute{}
	for _, v := range e.vteps {
		d := devs[v.Endpoint]
		if d == nil {
			d = &vtep{ip: v.Endpoint, reply: netip.AddrPortFrom(v.Endpoint, VTEPPort)}
			devs[v.Endpoint] = d
		}
		d.cidrs = append(d.cidrs, v.CIDR)
		routes[v.CIDR] = &vtepRoute{dev: d, tun: tunnel{remote: netip.AddrPortFrom(v.Endpoint, VTEPPort), dstMAC: v.MAC}}
	}
	return devs, routes
}

func (v *vtep) contains(a netip.Addr) bool {
	for _, p := range v.cidrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// fromVTEP handles a tunnel packet from a VTEP: VNI 2 only, ARP requests
// for local endpoints answered, IPv4 from its CIDRs delivered. VTEPs carry
// no IPv6 (unsupported_protocol), as their CIDRs are IPv4. outer is the
// ECN field of the outer header.
func (w *worker) fromVTEP(snap *snapshot, v *vtep, buf []byte, start int, payload []byte, outer encap.ECN) {
	vx := encap.VXLAN(payload)
	if vx.VNI() != uint32(identity.World) {
		w.drop(DropInvalidVNI)
		return
	}
	eth := encap.Ethernet(payload[encap.VXLANLen:])
	if src := eth.Source(); !src.IsUnicast() || src == w.e.mac {
		w.drop(DropInvalidMAC)
		return
	}
	foff := start + encap.VXLANLen // inner frame in buf
	switch eth.EtherType() {
	case encap.EtherTypeARP:
		w.answerARP(snap, v, buf, foff, eth)
	case encap.EtherTypeIPv4:
		inner := encap.IPv4(eth[encap.EthernetLen:])
		if !inner.IsValid(len(inner)) {
			w.drop(DropInvalidHeader)
			return
		}
		n := inner.TotalLen()
		inner = inner[:n]
		if !v.contains(inner.SourceAddr()) {
			w.drop(DropSpoofedInnerSource)
			return
		}
		if !w.decapECN4(outer, inner) {
			return
		}
		w.deliver(snap, inner, buf, foff+encap.EthernetLen, n, identity.World)
	default:
		w.drop(DropUnsupportedProtocol)
	}
}

// answerARP turns a VTEP's request for a local endpoint into the reply,
// in place, and sends it back through the tunnel with VNI 2.
func (w *worker) answerARP(snap *snapshot, v *vtep, buf []byte, foff int, eth encap.Ethernet) {
	arp := encap.ARP(eth[encap.EthernetLen:])
	if !arp.IsValid() || arp.Operation() != encap.ARPRequest {
		w.drop(DropARPUnanswered)
		return
	}
	if !v.contains(arp.SenderIP()) || arp.SenderMAC() != eth.Source() {
		w.drop(DropSpoofedInnerSource)
		return
	}
	r, found := snap.fib.Lookup(arp.TargetIP())
	if !found || r.kind != RouteLocal || r.ep.IP != arp.TargetIP() {
		w.drop(DropARPUnanswered)
		return
	}
	requester := eth.Source()
	eth.Encode(requester, w.e.mac, encap.EtherTypeARP)
	arp.TurnIntoReply(w.e.mac)
	n := encap.EthernetLen + encap.ARPLen
	o, err := encap.EncapVXLANFrame(buf, foff, uint32(identity.World))
	if err != nil {
		w.drop(DropInvalidHeader)
		return
	}
	tgt := arp.TargetIP().As4()
	w.enqueueUnder(buf, o, foff+n-o, packetio.Meta{Remote: v.reply, Flow: binary.BigEndian.Uint32(tgt[:])})
	w.arpReplies++
}
