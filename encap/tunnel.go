package encap

import (
	"encoding/binary"
	"net/netip"
)

// Overheads of the tunnel encapsulations: outer IPv4 or IPv6, UDP, the
// tunnel header and the inner Ethernet header that VXLAN and Geneve
// (protocol 0x6558) both carry.
const (
	VXLANOverheadV4 = IPv4MinLen + UDPLen + VXLANLen + EthernetLen // 50
	VXLANOverheadV6 = 40 + UDPLen + VXLANLen + EthernetLen         // 70

	// Headroom is the room every packet buffer keeps in front of the
	// packet: the largest outer header (IPv6 + UDP + Geneve with 252 bytes
	// of options + Ethernet) plus a link-layer header for drivers that
	// need one, rounded up.
	Headroom = 384

	// SourcePortMin and SourcePortMax bound the outer UDP source port, the
	// dynamic range RFC 7348 section 5 recommends.
	SourcePortMin = 49152
	SourcePortMax = 65535

	// OuterTTL is the TTL of outer headers, the value Linux and Cilium use.
	OuterTTL = 64
)

// TunnelV4 is what an encapsulation over IPv4 needs to know about a peer.
type TunnelV4 struct {
	Src, Dst [4]byte // outer addresses
	DstPort  uint16  // the peer's tunnel port
	SrcMAC   MAC     // inner Ethernet source: our tunnel MAC
	DstMAC   MAC     // inner Ethernet destination: the peer's tunnel MAC
}

// EncapVXLANv4 writes Ethernet, VXLAN, UDP and IPv4 headers in front of the
// inner IPv4 packet buf[start:start+n] and returns the offset where the
// outer packet now starts (start - VXLANOverheadV4). It copies nothing: the
// caller keeps VXLANOverheadV4 bytes of headroom before start.
func EncapVXLANv4(buf []byte, start, n int, t *TunnelV4, vni uint32, srcPort uint16) (int, error) {
	if start < VXLANOverheadV4 {
		return 0, ErrHeaderRoom
	}
	Ethernet(buf[start-EthernetLen:start]).Encode(t.DstMAC, t.SrcMAC, EtherTypeIPv4)
	return EncapVXLANFrameV4(buf, start-EthernetLen, n+EthernetLen, t, vni, srcPort)
}

// EncapVXLANFrameV4 writes VXLAN, UDP and IPv4 headers in front of the
// Ethernet frame buf[start:start+n] (an ARP reply, say) and returns the
// offset where the outer packet starts. t's MACs are not used.
func EncapVXLANFrameV4(buf []byte, start, n int, t *TunnelV4, vni uint32, srcPort uint16) (int, error) {
	const outer = IPv4MinLen + UDPLen + VXLANLen
	if start < outer {
		return 0, ErrHeaderRoom
	}
	if vni > MaxVNI {
		return 0, ErrVNIRange
	}
	total := n + outer
	if total > 0xffff {
		return 0, ErrBadLength
	}
	o := start - outer
	vx := buf[o+IPv4MinLen+UDPLen:]
	binary.BigEndian.PutUint32(vx[0:], VXLANFlagI)
	binary.BigEndian.PutUint32(vx[4:], vni<<8)
	UDP(buf[o+IPv4MinLen:]).Encode(srcPort, t.DstPort, uint16(total-IPv4MinLen), 0)
	IPv4(buf[o:]).Encode(&IPv4Fields{
		TotalLen:    uint16(total),
		TTL:         OuterTTL,
		Protocol:    ProtoUDP,
		Source:      t.Src,
		Destination: t.Dst,
	})
	return o, nil
}

// OuterV4 is a validated outer IPv4/UDP header pair of a received tunnel
// packet.
type OuterV4 struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Payload          int // offset of the UDP payload in the packet
	PayloadLen       int
}

// ParseOuterV4 validates the IPv4 and UDP headers at the start of pkt and
// locates the UDP payload. Fragments are refused: the tunnel never sends
// them and reassembly is not the dataplane's job.
func ParseOuterV4(pkt []byte) (OuterV4, error) {
	ip := IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return OuterV4{}, ErrBadLength
	}
	if ip.Protocol() != ProtoUDP || ip.IsFragment() {
		return OuterV4{}, ErrUnsupported
	}
	hl, tl := ip.HeaderLen(), ip.TotalLen()
	u := UDP(pkt[hl:tl])
	if !u.IsValid(tl - hl) {
		return OuterV4{}, ErrBadLength
	}
	return OuterV4{
		Src:        ip.SourceAddr(),
		Dst:        ip.DestinationAddr(),
		SrcPort:    u.SourcePort(),
		DstPort:    u.DestinationPort(),
		Payload:    hl + UDPLen,
		PayloadLen: u.Length() - UDPLen,
	}, nil
}

// FlowHashV4 hashes the inner flow of a valid IPv4 packet: addresses,
// protocol and, for unfragmented TCP, UDP and SCTP, the ports. Packets of one
// flow always hash alike, so they take one underlay path (ECMP, RSS) and
// are not reordered.
func FlowHashV4(ip IPv4) uint32 {
	h := uint64(binary.BigEndian.Uint32(ip[12:]))<<32 | uint64(binary.BigEndian.Uint32(ip[16:]))
	h ^= uint64(ip[9]) << 56
	switch ip[9] {
	case ProtoTCP, ProtoUDP, 132:
		hl := ip.HeaderLen()
		if !ip.IsFragment() && len(ip) >= hl+4 {
			h += uint64(binary.BigEndian.Uint32(ip[hl:])) * 0x9e3779b97f4a7c15
		}
	}
	// A 64-bit finaliser (murmur3's fmix64) so that every input bit moves
	// the low bits the port is taken from.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h)
}

// SourcePort maps a flow hash onto the dynamic port range.
func SourcePort(hash uint32) uint16 {
	return uint16(SourcePortMin + hash%(SourcePortMax-SourcePortMin+1))
}

// TunnelMAC derives the MAC address a node uses as the inner Ethernet
// address of its tunnel traffic from its IPv4 node address: locally
// administered, unicast, and stable across restarts, so peers never need to
// learn it.
func TunnelMAC(nodeIP netip.Addr) MAC {
	if nodeIP.Is4() {
		a := nodeIP.As4()
		return MAC{0x02, 0x58, a[0], a[1], a[2], a[3]}
	}
	a := nodeIP.As16()
	var h uint32 = 2166136261
	for _, c := range a {
		h = (h ^ uint32(c)) * 16777619
	}
	return MAC{0x02, 0x59, byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)}
}
