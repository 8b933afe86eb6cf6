package dataplane

import (
	"net/netip"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
)

// The functions in this file run once per packet: no allocation, no lock,
// no log. Each either queues the packet or counts exactly one drop.

// ICMP errors a worker makes at most, per second and in a burst, as
// Linux's net.ipv4.icmp_msgs_per_sec (1000) and icmp_msgs_burst (50).
const (
	icmpErrorsPerSecond = 1000
	icmpErrorBurst      = 50
)

// tunnel is where an encapsulated packet goes: the remote tunnel endpoint
// and the inner destination MAC it expects.
type tunnel struct {
	remote netip.AddrPort
	dstMAC encap.MAC
}

// fromPod handles a packet a pod sent.
func (w *worker) fromPod(snap *snapshot, buf []byte, size int) {
	start := encap.Headroom
	switch encap.IPVersion(buf[start : start+size]) {
	case encap.IPv4Version:
		w.fromPod4(snap, buf, size)
	case encap.IPv6Version:
		w.fromPod6(snap, buf, size)
	default:
		w.drop(DropInvalidHeader)
	}
}

// fromHost handles a packet the kernel routed to the host device.
func (w *worker) fromHost(snap *snapshot, buf []byte, size int) {
	start := encap.Headroom
	switch encap.IPVersion(buf[start : start+size]) {
	case encap.IPv4Version:
		w.fromHost4(snap, buf, size)
	case encap.IPv6Version:
		w.fromHost6(snap, buf, size)
	default:
		w.drop(DropInvalidHeader)
	}
}

// fromPod4 handles an IPv4 packet a pod sent.
func (w *worker) fromPod4(snap *snapshot, buf []byte, size int) {
	start := encap.Headroom
	ip, n, ok := w.innerIPv4(buf[start : start+size])
	if !ok {
		return
	}
	if !w.ep.has4 || ip.Source4() != w.ep.ip4 {
		w.drop(DropInvalidSource)
		return
	}
	r, found := snap.fib.Lookup(ip.DestinationAddr())
	id, vni := w.ep.identVNI()
	w.forward(snap, buf, start, n, r, found, id, vni)
}

// fromHost4 handles an IPv4 packet the kernel routed to the host device.
func (w *worker) fromHost4(snap *snapshot, buf []byte, size int) {
	start := encap.Headroom
	ip, n, ok := w.innerIPv4(buf[start : start+size])
	if !ok {
		return
	}
	// What the node sends itself leaves as remote-node; what the kernel
	// forwards on behalf of others is world.
	id, vni := identity.World, uint32(identity.World)
	if src := ip.Source4(); w.e.has4 && src == w.e.hostIP4 || !w.e.node6 && src == w.e.nodeIP4 {
		id, vni = identity.Host, uint32(identity.RemoteNode)
	}
	r, found := snap.fib.Lookup(ip.DestinationAddr())
	w.forward(snap, buf, start, n, r, found, id, vni)
}

// innerIPv4 validates an IPv4 packet read from a pod or the host device
// and returns it trimmed to its total length.
func (w *worker) innerIPv4(pkt []byte) (encap.IPv4, int, bool) {
	ip := encap.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		w.drop(DropInvalidHeader)
		return nil, 0, false
	}
	n := ip.TotalLen()
	return ip[:n], n, true
}

// forward routes the IPv4 packet buf[start:start+n] the node forwards (from
// a pod or the kernel) along r: from identity src, tunnelled with vni when
// it leaves the node. It applies what forwarding demands (policy, TTL,
// path MTU, no loop back to the kernel) before output.
func (w *worker) forward(snap *snapshot, buf []byte, start, n int, r route, found bool, src identity.ID, vni uint32) {
	ip := encap.IPv4(buf[start : start+n])
	if !found {
		w.icmpError(snap, ip, encap.ICMPv4DestUnreach, encap.ICMPv4NetUnreach, 0)
		w.drop(DropNoRoute)
		return
	}
	switch r.kind {
	case RouteLocal:
		if !r.ep.policy.Load().allows(src) {
			w.drop(DropPolicyDenied)
			return
		}
		if !w.decrementTTL(snap, ip) {
			return
		}
	case RouteTunnel, RouteVTEP:
		if !w.decrementTTL(snap, ip) || !w.fitsTunnel(snap, ip, n) {
			return
		}
	case RouteHost:
		if w.kind == sourceHost || w.e.host == nil {
			// The kernel sent it to us and we would send it back.
			w.icmpError(snap, ip, encap.ICMPv4DestUnreach, encap.ICMPv4NetUnreach, 0)
			w.drop(DropNoRoute)
			return
		}
		if w.toTunnelPort(snap, ip) {
			w.drop(DropEncapProhibited)
			return
		}
		// The kernel routes it on and decrements the TTL itself.
	default:
		w.icmpError(snap, ip, encap.ICMPv4DestUnreach, encap.ICMPv4HostUnreach, 0)
		w.drop(DropNoRoute)
		return
	}
	w.output(buf, start, n, r, vni, nil)
}

// output sends the IPv4 or IPv6 packet buf[start:start+n] where r says,
// with no further checks: the one exit of forwarded, delivered and
// node-generated packets. vni is the identity a tunnelled packet carries;
// VTEPs get VNI 2 whatever it is. u is where UpperLayer found the upper
// layer of an IPv6 packet, nil for IPv4: the flow hash needs it. It
// reports whether the packet was queued.
func (w *worker) output(buf []byte, start, n int, r route, vni uint32, u *encap.IPv6Upper) bool {
	switch r.kind {
	case RouteLocal:
		w.enqueue(r.ep.dev, &r.ep.stats, buf, start, n)
	case RouteTunnel:
		return w.encapTo(buf, start, n, u, &r.peer.tun, vni, w.e.geneve)
	case RouteVTEP:
		// Whatever the sender's identity, a VTEP only knows VNI 2, and
		// only VXLAN.
		return w.encapTo(buf, start, n, u, &r.vtep.tun, uint32(identity.World), false)
	case RouteHost:
		if w.e.host == nil {
			return false
		}
		w.enqueue(w.e.host, &w.e.hostStats, buf, start, n)
	default:
		return false
	}
	return true
}

// outputMade outputs a packet the worker made (an ICMP or ICMPv6 error)
// from the node's own identity, with nothing known of a checksum: sumOK
// describes the packet being handled, not this one.
func (w *worker) outputMade(buf []byte, start, n int, r route, u *encap.IPv6Upper) bool {
	ok := w.sumOK
	w.sumOK = false
	queued := w.output(buf, start, n, r, uint32(identity.RemoteNode), u)
	w.sumOK = ok
	return queued
}

// fitsTunnel checks the packet fits the encapsulation, answering a DF
// packet that does not with fragmentation needed. Without DF it is dropped
// too: the underlay cannot send an outer packet beyond its MTU, and pods
// get the route MTU as their link MTU, so only misconfigured senders get
// here.
func (w *worker) fitsTunnel(snap *snapshot, ip encap.IPv4, n int) bool {
	if n <= snap.tunnelMTU {
		return true
	}
	if ip.DontFragment() {
		w.icmpError(snap, ip, encap.ICMPv4DestUnreach, encap.ICMPv4FragNeeded, uint16(snap.tunnelMTU))
	}
	w.drop(DropFragNeeded)
	return false
}

// encapTo writes the tunnel header (VXLAN or Geneve with vni) and the inner
// Ethernet header (EtherType of the packet's IP version) in front of
// buf[start:start+n] and queues the payload for t on the underlay queue
// its flow hashes to. u is as for output. It reports whether the packet
// was queued.
func (w *worker) encapTo(buf []byte, start, n int, u *encap.IPv6Upper, t *tunnel, vni uint32, geneve bool) bool {
	// The outer header carries the inner DSCP and ECN field (RFC 6040
	// normal mode): the underlay's queues see the pod's class, and a
	// congested hop can mark CE that decapsulation hands to the inner
	// packet.
	var hash uint32
	var tos uint8
	if u != nil {
		ip := encap.IPv6(buf[start : start+n])
		hash, tos = encap.FlowHashV6(ip, *u), encap.EncapTOS(ip.TrafficClass())
	} else {
		ip := encap.IPv4(buf[start : start+n])
		hash, tos = encap.FlowHashV4(ip), encap.EncapTOS(ip.TOS())
	}
	var o int
	var err error
	if geneve {
		o, err = encap.EncapGeneve(buf, start, n, vni, w.e.cfg.GeneveOptions, t.dstMAC, w.e.mac)
	} else {
		o, err = encap.EncapVXLAN(buf, start, n, vni, t.dstMAC, w.e.mac)
	}
	if err != nil {
		w.drop(DropInvalidHeader)
		return false
	}
	m := packetio.Meta{Remote: t.remote, Flow: hash, TOS: tos}
	if w.sumOK {
		// The inner checksum is right, so the payload's sum, which an
		// outer UDP checksum needs, follows from the headers.
		m.Sum, m.HasSum = encap.PayloadSum(buf[o:start+n], start-o)
	}
	w.enqueueUnder(buf, o, start+n-o, m)
	return true
}

// toTunnelPort reports whether ip is UDP to the tunnel port of this node or
// of a known node: a pod must not inject tunnel packets of its own.
func (w *worker) toTunnelPort(snap *snapshot, ip encap.IPv4) bool {
	if ip.Protocol() != encap.ProtoUDP || ip.FragmentOffset() != 0 {
		return false
	}
	p := ip.Payload()
	if len(p) < 4 || encap.UDP(p[:4:4]).DestinationPort() != w.e.cfg.TunnelPort {
		// A first fragment too short to hold the ports is suspicious
		// enough to stop as well.
		return len(p) < 4 && ip.IsFragment()
	}
	dst := ip.DestinationAddr()
	if dst == w.e.cfg.NodeIP {
		return true
	}
	_, ok := snap.peers[dst]
	return ok
}

// decrementTTL lowers the TTL of a packet the node routes, answering
// with time exceeded when it runs out.
func (w *worker) decrementTTL(snap *snapshot, ip encap.IPv4) bool {
	if ip.TTL() <= 1 {
		w.icmpError(snap, ip, encap.ICMPv4TimeExceeded, encap.ICMPv4TTLExceeded, 0)
		w.drop(DropTTLExceeded)
		return false
	}
	ip.DecrementTTL()
	return true
}

// fromUnderlay handles a tunnel payload (VXLAN or Geneve header, inner
// Ethernet and IPv4 or IPv6) that m.Remote sent to m.LocalPort.
func (w *worker) fromUnderlay(snap *snapshot, buf []byte, size int, m *packetio.Meta) {
	start := encap.Headroom
	payload := buf[start : start+size]
	// The port says which protocol to expect: the cluster's own on the
	// tunnel port; VXLAN from VTEPs on theirs, which differs only in a
	// Geneve cluster.
	geneve := w.e.geneve
	switch m.LocalPort {
	case w.e.cfg.TunnelPort:
	case VTEPPort:
		geneve = false
	default:
		w.drop(DropUnsupportedProtocol)
		return
	}
	vni, hlen, ok := w.tunnelHeader(payload, geneve)
	if !ok {
		return
	}
	if len(payload) < hlen+encap.EthernetLen {
		w.drop(DropInvalidHeader)
		return
	}
	// Before anything changes a byte of it: what the inner packet is
	// delivered as carries whether its checksum is right, known here at
	// the cost of its headers where the driver summed the payload.
	w.sumOK = m.HasSum && encap.TransportSumOK(payload, hlen+encap.EthernetLen, m.Sum)
	from := m.Remote.Addr().Unmap()
	p := snap.peers[from]
	if p == nil {
		if v := snap.vteps[from]; v != nil {
			if geneve {
				// VTEPs speak VXLAN, never Geneve.
				w.drop(DropProtocolMismatch)
				return
			}
			w.fromVTEP(snap, v, buf, start, payload, encap.ECNOf(m.TOS))
			return
		}
		if !w.e.cfg.DisableSourceCheck {
			w.drop(DropUnknownTunnelSource)
			return
		}
	}
	src, err := identity.FromVNI(vni)
	if err != nil {
		w.drop(DropInvalidIdentity)
		return
	}
	eth := encap.Ethernet(payload[hlen:])
	if src := eth.Source(); !src.IsUnicast() || src == w.e.mac {
		w.drop(DropInvalidMAC)
		return
	}
	ioff := hlen + encap.EthernetLen
	outer := encap.ECNOf(m.TOS)
	switch eth.EtherType() {
	case encap.EtherTypeIPv4:
		w.fromTunnel4(snap, p, buf, start+ioff, payload[ioff:], src, outer)
	case encap.EtherTypeIPv6:
		w.fromTunnel6(snap, p, buf, start+ioff, payload[ioff:], src, outer)
	default:
		w.drop(DropUnsupportedProtocol)
	}
}

// fromTunnel4 handles the inner IPv4 packet pkt = buf[off:] of a tunnel
// payload that peer p (nil when the source check is off) sent with
// identity src, in an outer header with ECN field outer: its source must
// lie in the peer's pod CIDR, and without a peer to tell by, be at least
// an address some pod could have.
func (w *worker) fromTunnel4(snap *snapshot, p *peer, buf []byte, off int, pkt []byte, src identity.ID, outer encap.ECN) {
	inner := encap.IPv4(pkt)
	if !inner.IsValid(len(inner)) {
		w.drop(DropInvalidHeader)
		return
	}
	n := inner.TotalLen()
	inner = inner[:n]
	if s := inner.SourceAddr(); p != nil && !p.PodCIDR.Contains(s) || p == nil && !podSource4(s) {
		w.drop(DropSpoofedInnerSource)
		return
	}
	if !w.decapECN4(outer, inner) {
		return
	}
	w.deliver(snap, inner, buf, off, n, src)
}

// decapECN4 hands the congestion an outer header carried to the inner
// IPv4 packet (RFC 6040 section 4.2): an outer CE marks an ECN-capable
// inner packet CE, and drops one whose transport does not do ECN, the
// loss being the only signal it understands. It reports whether the
// packet goes on.
func (w *worker) decapECN4(outer encap.ECN, inner encap.IPv4) bool {
	if outer == encap.ECNNotECT {
		// The common case, and the table leaves the inner field as it is.
		return true
	}
	drop, anomaly := encap.DecapECNV4(outer, inner)
	return w.decapECNResult(drop, anomaly)
}

// decapECN6 is decapECN4 for an inner IPv6 packet.
func (w *worker) decapECN6(outer encap.ECN, inner encap.IPv6) bool {
	if outer == encap.ECNNotECT {
		return true
	}
	drop, anomaly := encap.DecapECNV6(outer, inner)
	return w.decapECNResult(drop, anomaly)
}

// decapECNResult counts what DecapECNV4 or DecapECNV6 found: the
// combinations RFC 6040 calls currently unused are counted, never logged
// one by one, as a sender could make every packet one.
func (w *worker) decapECNResult(drop, anomaly bool) bool {
	if anomaly {
		w.ecnAnomalies++
	}
	if drop {
		w.drop(DropECNCENotECT)
		return false
	}
	return true
}

// podSource4 reports whether a could be a pod's address: never a
// multicast, broadcast, loopback or "this network" (0.0.0.0/8) one.
func podSource4(a netip.Addr) bool {
	return !a.IsMulticast() && !a.IsLoopback() && a.As4()[0] != 0 && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// tunnelHeader validates the VXLAN or Geneve header at the start of
// payload and returns its VNI and length, or counts the drop. A packet of
// the other protocol on our port (a misconfigured cluster) gets a reason
// of its own.
func (w *worker) tunnelHeader(payload []byte, geneve bool) (vni uint32, hlen int, ok bool) {
	if geneve {
		g := encap.Geneve(payload)
		if err := g.Validate(nil); err != nil {
			switch {
			case looksVXLAN(payload):
				w.drop(DropProtocolMismatch)
			case err == encap.ErrGeneveControl:
				w.drop(DropControlPacket)
			case err == encap.ErrGeneveCritical:
				w.drop(DropCriticalOption)
			case err == encap.ErrGeneveProtocol:
				w.drop(DropUnsupportedProtocol)
			default:
				w.drop(DropInvalidHeader)
			}
			return 0, 0, false
		}
		return g.VNI(), g.HeaderLen(), true
	}
	vx := encap.VXLAN(payload)
	if vx.Validate(w.e.cfg.VXLANTolerate) != nil {
		if len(payload) >= encap.GeneveLen && encap.Geneve(payload).Validate(nil) == nil {
			w.drop(DropProtocolMismatch)
		} else {
			w.drop(DropInvalidHeader)
		}
		return 0, 0, false
	}
	return vx.VNI(), encap.VXLANLen, true
}

// looksVXLAN recognises a well-formed VXLAN header: the I flag alone and
// every reserved bit clear.
func looksVXLAN(b []byte) bool {
	return len(b) >= encap.VXLANLen && encap.VXLAN(b).Validate(0) == nil
}

// deliver hands a decapsulated IPv4 packet, buf[off:off+n], to the local
// endpoint or host address it is for.
func (w *worker) deliver(snap *snapshot, inner encap.IPv4, buf []byte, off, n int, src identity.ID) {
	dst := inner.DestinationAddr()
	r, found := snap.fib.Lookup(dst)
	// A Linux peer on a virtual link may leave the inner checksum for
	// "the device" to finish; the pod's kernel would drop it unfinished.
	plain := inner.Protocol() == encap.ProtoTCP && inner.HeaderLen() == encap.IPv4MinLen && !inner.IsFragment()
	if !w.leavesPartial(snap, r, found, n, plain) {
		encap.CompletePartialChecksumV4(inner)
	}
	switch {
	case found && r.kind == RouteLocal:
		if !r.ep.policy.Load().allows(src) {
			w.drop(DropPolicyDenied)
			return
		}
		if !w.decrementTTL(snap, inner) {
			return
		}
	case found && r.kind == RouteHost && dst == w.e.hostIP && w.e.host != nil:
	default:
		w.drop(DropNoEndpoint)
		return
	}
	w.output(buf, off, n, r, 0, nil)
}

// icmpError answers the offending packet orig with an ICMP error from the
// host address, routed like any packet the node originates. It is built in
// a scratch buffer so the original can still be forwarded or dropped.
//
// A node without an IPv4 pod CIDR has no IPv4 address to answer from, and
// does not answer.
func (w *worker) icmpError(snap *snapshot, orig encap.IPv4, typ, code uint8, mtu uint16) {
	if !w.e.has4 || !encap.MayAnswerWithICMPv4(orig) || w.nscratch >= len(w.scratch) || orig.Destination4() == w.e.podBroadcast4 {
		return
	}
	// A flood of undeliverable packets must not become a flood of errors
	// (RFC 1812 4.3.2.8): the rest are dropped and counted, not answered.
	if !w.icmpLimit.take(time.Now().UnixNano(), icmpErrorsPerSecond, icmpErrorBurst) {
		w.icmpsLimited++
		return
	}
	b := w.scratch[w.nscratch]
	start := encap.Headroom
	n := encap.BuildICMPv4Error(b[start:], orig, w.e.hostIP4, typ, code, mtu)
	ip := encap.IPv4(b[start : start+n])
	r, found := snap.fib.Lookup(ip.DestinationAddr())
	if !found || !w.outputMade(b, start, n, r, nil) {
		return
	}
	w.nscratch++
	w.icmps++
}

// leavesPartial reports whether a decapsulated packet of n bytes, for
// where r says, keeps a checksum its sender left partial as it is: a TCP
// super-packet (beyond the tunnel MTU, so from a Linux sender on a
// virtual link, whole), plainTCP (TCP right after an IP header without
// options or extension headers, no fragment), for a device whose kernel
// finishes it (packetio.SuperWriter). That saves a pass over up to 64 KiB
// here and another in the pod's kernel.
func (w *worker) leavesPartial(snap *snapshot, r route, found bool, n int, plainTCP bool) bool {
	if !found || n <= snap.tunnelMTU || !plainTCP {
		return false
	}
	var dev packetio.Device
	switch r.kind {
	case RouteLocal:
		dev = r.ep.dev
	case RouteHost:
		dev = w.e.host
	}
	sw, ok := dev.(packetio.SuperWriter)
	return ok && sw.TakesPartialSuper()
}
