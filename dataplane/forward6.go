package dataplane

import (
	"net/netip"
	"time"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
)

// The IPv6 half of the per-packet path: the same rules as IPv4's
// (forward.go), with a hop limit for the TTL, Packet Too Big for
// fragmentation needed (routers never fragment IPv6), and the extension
// header chain walked once, with encap's bound, for the flow hash, the
// tunnel port check and the rules of ICMPv6 errors. As in forward.go:
// no allocation, no lock, no log; each packet is queued or counted as
// exactly one drop.

// fromPod6 handles an IPv6 packet a pod sent.
func (w *worker) fromPod6(snap *snapshot, buf []byte, size int) {
	start := encap.Headroom
	ip, u, ok := w.innerIPv6(buf[start : start+size])
	if !ok || !w.routable6(ip) {
		return
	}
	if !w.ep.has6 || ip.Source16() != w.ep.ip6 {
		w.drop(DropInvalidSource)
		return
	}
	r, found := snap.fib.Lookup(ip.DestinationAddr())
	id, vni := w.ep.identVNI()
	w.forward6(snap, buf, start, ip, &u, r, found, id, vni)
}

// fromHost6 handles an IPv6 packet the kernel routed to the host device.
func (w *worker) fromHost6(snap *snapshot, buf []byte, size int) {
	start := encap.Headroom
	ip, u, ok := w.innerIPv6(buf[start : start+size])
	if !ok || !w.routable6(ip) {
		return
	}
	// As for IPv4: the node's own addresses are the host, the rest is
	// what the kernel forwards for the world.
	id, vni := identity.World, uint32(identity.World)
	if src := ip.Source16(); w.e.has6 && src == w.e.hostIP16 || w.e.node6 && src == w.e.nodeIP16 {
		id, vni = identity.Host, uint32(identity.RemoteNode)
	}
	r, found := snap.fib.Lookup(ip.DestinationAddr())
	w.forward6(snap, buf, start, ip, &u, r, found, id, vni)
}

// innerIPv6 validates an IPv6 packet read from a device or out of a
// tunnel, returns it trimmed to its total length and walks its extension
// headers to the upper layer.
func (w *worker) innerIPv6(pkt []byte) (encap.IPv6, encap.IPv6Upper, bool) {
	ip := encap.IPv6(pkt)
	if !ip.IsValid(len(pkt)) {
		w.drop(DropInvalidHeader)
		return nil, encap.IPv6Upper{}, false
	}
	ip = ip[:ip.TotalLen()]
	u, err := ip.UpperLayer()
	if err != nil {
		w.drop(DropInvalidExtHeaders)
		return nil, encap.IPv6Upper{}, false
	}
	return ip, u, true
}

// routable6 drops, without an answer, what a pod or the host sends that
// is no business of a router: multicast (router solicitations, MLD,
// neighbour discovery, and a multicast source, which cannot be) and
// packets from or to a link-local address, scoped to the link they were
// sent on. The unspecified source of duplicate address detection goes to
// a multicast address.
func (w *worker) routable6(ip encap.IPv6) bool {
	src, dst := ip.SourceAddr(), ip.DestinationAddr()
	switch {
	case dst.IsMulticast() || src.IsMulticast():
		w.drop(DropMulticast)
	case dst.IsLinkLocalUnicast() || src.IsLinkLocalUnicast():
		w.drop(DropLinkLocal)
	default:
		return true
	}
	return false
}

// forward6 routes the IPv6 packet ip, which lies at buf[start:], along r,
// as forward does an IPv4 one: from identity src, tunnelled with vni.
func (w *worker) forward6(snap *snapshot, buf []byte, start int, ip encap.IPv6, u *encap.IPv6Upper, r route, found bool, src identity.ID, vni uint32) {
	if !found {
		w.icmp6Error(snap, ip, encap.ICMPv6DestUnreach, encap.ICMPv6NoRoute, 0)
		w.drop(DropNoRoute)
		return
	}
	switch r.kind {
	case RouteLocal:
		if !r.ep.policy.Load().allows(src) {
			w.drop(DropPolicyDenied)
			return
		}
		if !w.decrementHopLimit(snap, ip) {
			return
		}
	case RouteTunnel:
		if !w.decrementHopLimit(snap, ip) || !w.fitsTunnel6(snap, ip) {
			return
		}
	case RouteHost:
		if w.kind == sourceHost || w.e.host == nil {
			// The kernel sent it to us and we would send it back.
			w.icmp6Error(snap, ip, encap.ICMPv6DestUnreach, encap.ICMPv6NoRoute, 0)
			w.drop(DropNoRoute)
			return
		}
		if w.toTunnelPort6(snap, ip, u) {
			w.drop(DropEncapProhibited)
			return
		}
	default:
		// A hole in the pod or cluster CIDR. (VTEP routes are IPv4
		// prefixes: an IPv6 destination never finds one.)
		w.icmp6Error(snap, ip, encap.ICMPv6DestUnreach, encap.ICMPv6AddressUnreach, 0)
		w.drop(DropNoRoute)
		return
	}
	w.output(buf, start, len(ip), r, vni, u)
}

// fitsTunnel6 checks the packet fits the encapsulation, answering one that
// does not with Packet Too Big and the tunnel MTU (RFC 8201): IPv6 is
// never fragmented on the way.
func (w *worker) fitsTunnel6(snap *snapshot, ip encap.IPv6) bool {
	if len(ip) <= snap.tunnelMTU {
		return true
	}
	w.icmp6Error(snap, ip, encap.ICMPv6PacketTooBig, 0, uint32(snap.tunnelMTU))
	w.drop(DropFragNeeded)
	return false
}

// decrementHopLimit lowers the hop limit of a packet the node routes,
// answering with Time Exceeded when it runs out.
func (w *worker) decrementHopLimit(snap *snapshot, ip encap.IPv6) bool {
	if ip.HopLimit() <= 1 {
		w.icmp6Error(snap, ip, encap.ICMPv6TimeExceeded, encap.ICMPv6HopLimitExceeded, 0)
		w.drop(DropTTLExceeded)
		return false
	}
	ip.DecrementHopLimit()
	return true
}

// toTunnelPort6 reports whether ip is UDP to the tunnel port of this node
// or of a known node, as toTunnelPort does for IPv4. A fragment other than
// the first has no ports (u.Proto is then the Fragment header's); a first
// fragment too short to hold them is stopped as well.
func (w *worker) toTunnelPort6(snap *snapshot, ip encap.IPv6, u *encap.IPv6Upper) bool {
	if u.Proto != encap.ProtoUDP {
		return false
	}
	p := ip[u.Offset:]
	if len(p) < 4 {
		return u.Fragment
	}
	if encap.UDP(p[:4:4]).DestinationPort() != w.e.cfg.TunnelPort {
		return false
	}
	dst := ip.DestinationAddr()
	if dst == w.e.cfg.NodeIP {
		return true
	}
	_, ok := snap.peers[dst]
	return ok
}

// fromTunnel6 handles the inner IPv6 packet pkt = buf[off:] of a tunnel
// payload that peer p (nil when the source check is off) sent with
// identity src, in an outer header with ECN field outer: its source must
// lie in the peer's IPv6 pod CIDR, and without a peer to tell by, be at
// least an address some pod could have.
func (w *worker) fromTunnel6(snap *snapshot, p *peer, buf []byte, off int, pkt []byte, src identity.ID, outer encap.ECN) {
	inner, u, ok := w.innerIPv6(pkt)
	if !ok {
		return
	}
	if s := inner.SourceAddr(); p != nil && !p.PodCIDR6.Contains(s) || p == nil && !podSource6(s) {
		w.drop(DropSpoofedInnerSource)
		return
	}
	if !w.decapECN6(outer, inner) {
		return
	}
	w.deliver6(snap, inner, &u, buf, off, src)
}

// podSource6 reports whether a could be a pod's address: never a
// multicast, link-local (scoped to a link the packet did not arrive on),
// unspecified, loopback or IPv4-mapped one.
func podSource6(a netip.Addr) bool {
	return !a.IsMulticast() && !a.IsLinkLocalUnicast() && !a.IsUnspecified() && !a.IsLoopback() && !a.Is4In6()
}

// deliver6 hands a decapsulated IPv6 packet inner = buf[off:off+len(inner)]
// to the local endpoint or host address it is for.
func (w *worker) deliver6(snap *snapshot, inner encap.IPv6, u *encap.IPv6Upper, buf []byte, off int, src identity.ID) {
	dst := inner.DestinationAddr()
	r, found := snap.fib.Lookup(dst)
	// As deliver: a Linux peer may leave the checksum for the device.
	plain := u.Proto == encap.ProtoTCP && u.Offset == encap.IPv6Len && !u.Fragment
	if !w.leavesPartial(snap, r, found, len(inner), plain) {
		encap.CompletePartialChecksumV6(inner)
	}
	switch {
	case found && r.kind == RouteLocal:
		if !r.ep.policy.Load().allows(src) {
			w.drop(DropPolicyDenied)
			return
		}
		if !w.decrementHopLimit(snap, inner) {
			return
		}
	case found && r.kind == RouteHost && dst == w.e.hostIP6 && w.e.host != nil:
	default:
		w.drop(DropNoEndpoint)
		return
	}
	w.output(buf, off, len(inner), r, 0, u)
}

// icmp6Error answers the offending packet orig with an ICMPv6 error from
// the host's IPv6 address, routed like any packet the node originates and
// built in a scratch buffer, as icmpError does for IPv4, whose rate limit
// it shares: one bucket per worker for both families. param is the MTU of
// a Packet Too Big, 0 otherwise. A node without an IPv6 pod CIDR has no
// address to answer from, and does not answer; nor does anyone to what
// RFC 4443 section 2.4(e) forbids answering.
func (w *worker) icmp6Error(snap *snapshot, orig encap.IPv6, typ, code uint8, param uint32) {
	if !w.e.has6 || w.nscratch >= len(w.scratch) || !encap.MayAnswerWithICMPv6(orig) {
		return
	}
	if !w.icmpLimit.take(time.Now().UnixNano(), icmpErrorsPerSecond, icmpErrorBurst) {
		w.icmpsLimited++
		return
	}
	b := w.scratch[w.nscratch]
	start := encap.Headroom
	n := encap.BuildICMPv6Error(b[start:], orig, w.e.hostIP16, typ, code, param)
	ip := encap.IPv6(b[start : start+n])
	u := encap.IPv6Upper{Proto: encap.ProtoICMPv6, Offset: encap.IPv6Len}
	r, found := snap.fib.Lookup(ip.DestinationAddr())
	if !found || !w.outputMade(b, start, n, r, &u) {
		return
	}
	w.nscratch++
	w.icmps++
}
