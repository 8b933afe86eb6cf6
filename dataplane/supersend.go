package dataplane

import (
	"net/netip"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
)

// A pod's TCP sender hands its TUN device super-packets of up to 64 KiB
// (TSO). Cut into segments, each one is encapsulated, sent, received,
// checked and merged again on the other node: per-segment work in user
// space on both sides. With a TunnelGSO way out, the engine instead
// encapsulates the super-packet once and hands it to the kernel marked for
// segmentation over a UDP tunnel, as the kernel's own vxlan hands on what
// its pods send: a NIC cuts it (or the kernel, in software, at the last
// moment), and a virtual link (veth) carries it whole to the other node,
// whose UDP socket takes it as one datagram. Only packets for another
// node's pods (RouteTunnel) over an IPv4 underlay go this way; everything
// else is cut up by the device as before.

// minSuperGSO is the smallest segment a super-packet leaves whole with:
// IPv4's default MSS (RFC 9293). A pod with a packet socket can hand its
// device a super-packet of 64 KiB in 1-byte segments; the kernel (or a
// NIC) would then put 64 Ki packets on the wire for one write.
const minSuperGSO = 536

// fromSuper is the worker's packetio.SuperHandler: it sends the TCP
// super-packet buf[start:start+n] its pod (or, for the host device's
// worker, the node's kernel) sent whole through the engine's TunnelGSO, or
// reports false, the packet unchanged, for the device to cut it up. It
// runs within the worker's Read, so it counts on the worker's own
// counters.
func (w *worker) fromSuper(buf []byte, start, n, gso int, ecn bool) bool {
	g := w.e.tunnelGSO
	if g == nil || !w.e.tunnelGSOReady.Load() || start < packetio.SuperRoom || gso < minSuperGSO ||
		w.e.tapFor(w.tapKey) != nil || w.e.tapFor(underlayTap{}) != nil {
		// A capture sees segments, as the packets on the wire.
		return false
	}
	pkt := buf[start : start+n]
	snap := w.e.state.Load()
	// A pod's packets carry its identity; the host device's, as
	// fromHost4 and fromHost6 say (world unless the node's own).
	vni := uint32(identity.World)
	if w.ep != nil {
		_, vni = w.ep.identVNI()
	}
	var r route
	var found, v6 bool
	var l3 int // the IP header's length
	var hash uint32
	var tos uint8
	switch encap.IPVersion(pkt) {
	case encap.IPv4Version:
		ip := encap.IPv4(pkt)
		if !ip.IsValid(n) || ip.TotalLen() != n || ip.HeaderLen() != encap.IPv4MinLen ||
			ip.Protocol() != encap.ProtoTCP || ip.IsFragment() || ip.TTL() <= 1 ||
			w.ep != nil && (!w.ep.has4 || ip.Source4() != w.ep.ip4) {
			return false
		}
		l3 = encap.IPv4MinLen
		r, found = snap.fib.Lookup(ip.DestinationAddr())
		hash, tos = encap.FlowHashV4(ip), encap.EncapTOS(ip.TOS())
		if w.kind == sourceHost {
			// As fromHost4: the node's own, or forwarded for the world.
			if src := ip.Source4(); w.e.has4 && src == w.e.hostIP4 || !w.e.node6 && src == w.e.nodeIP4 {
				vni = uint32(identity.RemoteNode)
			}
		}
	case encap.IPv6Version:
		// Only a bare IPv6 header: the TUN driver offers no other.
		ip := encap.IPv6(pkt)
		if !ip.IsValid(n) || ip.TotalLen() != n || ip.NextHeader() != encap.ProtoTCP || ip.HopLimit() <= 1 ||
			w.ep != nil && (!w.ep.has6 || ip.Source16() != w.ep.ip6) {
			return false
		}
		src, dst := ip.SourceAddr(), ip.DestinationAddr()
		if dst.IsMulticast() || dst.IsLinkLocalUnicast() || src.IsLinkLocalUnicast() {
			return false
		}
		v6, l3 = true, encap.IPv6Len
		r, found = snap.fib.Lookup(dst)
		if w.kind == sourceHost && w.e.has6 && ip.Source16() == w.e.hostIP16 {
			vni = uint32(identity.RemoteNode)
		}
		hash, tos = encap.FlowHashV6(ip, encap.IPv6Upper{Proto: encap.ProtoTCP, Offset: encap.IPv6Len}), encap.EncapTOS(ip.TrafficClass())
	default:
		return false
	}
	tcp := encap.TCP(pkt[l3:])
	if !tcp.IsValid(n-l3) || !found || r.kind != RouteTunnel || l3+tcp.HeaderLen()+gso > snap.tunnelMTU {
		return false
	}
	hdrLen := l3 + tcp.HeaderLen()
	t := &r.peer.tun
	remote := netip.AddrPortFrom(t.remote.Addr().Unmap(), t.remote.Port())
	if !remote.Addr().Is4() {
		return false
	}
	var o int
	var err error
	if w.e.geneve {
		o, err = encap.EncapGeneve(buf, start, n, vni, w.e.cfg.GeneveOptions, t.dstMAC, w.e.mac)
	} else {
		o, err = encap.EncapVXLAN(buf, start, n, vni, t.dstMAC, w.e.mac)
	}
	os := o - encap.OuterV4Len
	if err != nil || os < packetio.TunnelGSORoom {
		return false
	}
	// The outer headers as the AF_XDP driver writes them.
	u := &w.e.underlays[w.e.underlayFor(hash)]
	src := netip.AddrPortFrom(w.e.cfg.NodeIP, u.dev.SourcePort(hash))
	if encap.EncodeOuterV4(buf[os:o], src, remote, start+n-o) != nil {
		return false
	}
	encap.IPv4(buf[os : os+encap.IPv4MinLen]).SetTOS(tos)
	// The TTL or hop limit goes down before the packet is written, and
	// back up if the device refuses it, for the segments to go the usual
	// way. Only the headroom changed otherwise.
	var ttl [4]byte
	if v6 {
		encap.IPv6(pkt).DecrementHopLimit()
	} else {
		copy(ttl[:], pkt[encap.IPv4TTLOffset:encap.IPv4ChecksumOffset+2])
		encap.IPv4(pkt).DecrementTTL()
	}
	inner := start - os
	if err := g.WriteTunnel(buf, os, inner, inner+l3, gso, v6, ecn); err != nil {
		if v6 {
			pkt[encap.IPv6HopLimitOffset]++
		} else {
			copy(pkt[encap.IPv4TTLOffset:], ttl[:])
		}
		return false
	}
	// Counted as the segments the kernel makes of it, as the device
	// would have handed them out.
	segs := (n - hdrLen + gso - 1) / gso
	bytes := uint64(n + (segs-1)*hdrLen)
	w.stats.RxBatches.Add(1)
	w.stats.RxPackets.Add(uint64(segs))
	w.stats.RxBytes.Add(bytes)
	u.stats.TxPackets.Add(uint64(segs))
	u.stats.TxBytes.Add(bytes + uint64(segs*(start-o)))
	return true
}
