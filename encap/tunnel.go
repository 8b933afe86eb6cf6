package encap

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Overheads of the tunnel encapsulations: outer IPv4 or IPv6, UDP, the
// tunnel header and the inner Ethernet header that VXLAN and Geneve
// (protocol 0x6558) both carry.
const (
	VXLANOverheadV4 = IPv4MinLen + UDPLen + VXLANLen + EthernetLen // 50
	VXLANOverheadV6 = IPv6Len + UDPLen + VXLANLen + EthernetLen    // 70

	// Headroom is the room every packet buffer keeps in front of the
	// packet: the largest outer header (IPv6 + UDP + Geneve with 252 bytes
	// of options + Ethernet) plus a link-layer header for drivers that
	// need one, rounded up.
	Headroom = 384

	// SourcePortMin and SourcePortMax bound the outer UDP source ports
	// vxdp sends from: the dynamic range RFC 7348 section 5 recommends.
	SourcePortMin = 49152
	SourcePortMax = 65535

	// OuterTTL is the TTL of outer headers, the value Linux and Cilium use.
	OuterTTL = 64
)

// EncapVXLAN writes an inner Ethernet header (dst, src, and the EtherType
// of the packet's IP version) and a VXLAN header with vni in front of the
// inner IPv4 or IPv6 packet buf[start:start+n] and returns the offset
// where the tunnel payload now starts (start - VXLANLen - EthernetLen). It
// copies nothing: the caller keeps the headroom. The outer IP and UDP
// headers are the underlay's to add.
func EncapVXLAN(buf []byte, start, n int, vni uint32, dst, src MAC) (int, error) {
	o, err := innerEthernet(buf, start, n, VXLANLen, vni, dst, src)
	if err != nil {
		return 0, err
	}
	VXLAN(buf[o : o+VXLANLen]).Encode(vni)
	return o, nil
}

// EncapVXLANFrame writes a VXLAN header with vni in front of the Ethernet
// frame that starts at buf[start] (an ARP reply, say) and returns the
// offset of the tunnel payload, start - VXLANLen.
func EncapVXLANFrame(buf []byte, start int, vni uint32) (int, error) {
	if start < VXLANLen {
		return 0, ErrHeaderRoom
	}
	o := start - VXLANLen
	return o, VXLAN(buf[o:start]).Encode(vni)
}

// EncapGeneve writes an inner Ethernet header (dst, src, and the EtherType
// of the packet's IP version) and a Geneve header with vni and opts (nil
// for none) in front of the inner IPv4 or IPv6 packet buf[start:start+n]
// and returns the offset where the tunnel payload now starts. Like
// EncapVXLAN it copies and allocates nothing; on error buf is left as it
// was.
func EncapGeneve(buf []byte, start, n int, vni uint32, opts []GeneveOption, dst, src MAC) (int, error) {
	ol, err := GeneveOptionsLen(opts)
	if err != nil {
		return 0, err
	}
	o, err := innerEthernet(buf, start, n, GeneveLen+ol, vni, dst, src)
	if err != nil {
		return 0, err
	}
	Geneve(buf[o:start-EthernetLen]).encode(vni, false, false, EtherTypeTrans, opts, ol)
	return o, nil
}

// innerEthernet checks that a tunnel header of hlen bytes and an Ethernet
// header fit in front of buf[start:start+n] and that vni does, writes the
// Ethernet header and returns where the tunnel header goes. The EtherType
// is IPv6's for a packet whose version nibble says 6, IPv4's otherwise. On
// error buf is untouched.
func innerEthernet(buf []byte, start, n, hlen int, vni uint32, dst, src MAC) (int, error) {
	switch {
	case start < hlen+EthernetLen:
		return 0, ErrHeaderRoom
	case n < 0 || n > len(buf)-start:
		return 0, ErrBadLength
	case vni > MaxVNI:
		return 0, ErrVNIRange
	}
	et := uint16(EtherTypeIPv4)
	if IPVersion(buf[start:start+n]) == IPv6Version {
		et = EtherTypeIPv6
	}
	Ethernet(buf[start-EthernetLen:start]).Encode(dst, src, et)
	return start - EthernetLen - hlen, nil
}

// OuterV4Len is the length of the outer IPv4 and UDP headers in front of a
// tunnel payload.
const OuterV4Len = IPv4MinLen + UDPLen

// EncodeOuterV4 writes the outer IPv4 and UDP headers of a tunnel payload
// of payloadLen bytes from src to dst into b[:OuterV4Len]: TTL OuterTTL,
// no DF (as the Linux kernel's vxlan sends), a header checksum, and UDP
// checksum 0 (RFC 7348 section 5; RFC 8926 allows it over IPv4). It is the
// one outer-header writer, for VXLAN and Geneve alike, used by drivers
// that build frames themselves.
func EncodeOuterV4(b []byte, src, dst netip.AddrPort, payloadLen int) error {
	total := OuterV4Len + payloadLen
	if len(b) < OuterV4Len {
		return ErrHeaderRoom
	}
	if payloadLen < 0 || total > 0xffff {
		return ErrBadLength
	}
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return ErrUnsupported
	}
	UDP(b[IPv4MinLen:OuterV4Len]).Encode(src.Port(), dst.Port(), uint16(UDPLen+payloadLen), 0)
	IPv4(b[:IPv4MinLen]).Encode(&IPv4Fields{
		TotalLen:    uint16(total),
		TTL:         OuterTTL,
		Protocol:    ProtoUDP,
		Source:      src.Addr().As4(),
		Destination: dst.Addr().As4(),
	})
	return nil
}

// OuterV4 is a validated outer IPv4/UDP header pair of a received tunnel
// packet.
type OuterV4 struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Payload          int // offset of the UDP payload in the packet
	PayloadLen       int
	TOS              uint8 // DSCP and ECN, for DecapECNV4/V6
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
		TOS:        ip.TOS(),
	}, nil
}

// OuterV6Len is the length of the outer IPv6 and UDP headers in front of a
// tunnel payload.
const OuterV6Len = IPv6Len + UDPLen

// Errors of the outer IPv6 UDP checksum.
var (
	ErrBadChecksum  = errors.New("udp: checksum does not verify")
	ErrZeroChecksum = errors.New("udp: zero checksum over ipv6 not accepted")
)

// EncodeOuterV6 writes the outer IPv6 and UDP headers of a tunnel payload
// of payloadLen bytes from src to dst into b[:OuterV6Len], the payload
// being already in place behind them, at b[OuterV6Len:]: the UDP checksum
// covers it. Hop limit OuterTTL; traffic class tc (EncapTOS of the inner
// packet's, RFC 6040); flow label flowLabel (0 for none, FlowLabel of the
// flow hash as the Linux kernel labels tunnel packets); and a UDP checksum,
// which the Linux kernel's vxlan and geneve send over IPv6 by default (RFC
// 6935 allows zero, but only to receivers configured for it). Addresses
// must be IPv6 (not IPv4-mapped). On error b is untouched.
func EncodeOuterV6(b []byte, src, dst netip.AddrPort, payloadLen int, tc uint8, flowLabel uint32) error {
	return encodeOuterV6(b, src, dst, payloadLen, tc, flowLabel, 0, false)
}

// EncodeOuterV6Sum is EncodeOuterV6 for a payload whose running sum (Sum)
// the caller knows already, payloadSum (see PayloadSum): the checksum
// then costs the headers alone, not a pass over the payload (local
// checksum offload).
func EncodeOuterV6Sum(b []byte, src, dst netip.AddrPort, payloadLen int, tc uint8, flowLabel, payloadSum uint32) error {
	return encodeOuterV6(b, src, dst, payloadLen, tc, flowLabel, payloadSum, true)
}

func encodeOuterV6(b []byte, src, dst netip.AddrPort, payloadLen int, tc uint8, flowLabel, payloadSum uint32, known bool) error {
	if len(b) < OuterV6Len {
		return ErrHeaderRoom
	}
	if payloadLen < 0 || payloadLen > len(b)-OuterV6Len || UDPLen+payloadLen > 0xffff {
		return ErrBadLength
	}
	if !isPlain6(src.Addr()) || !isPlain6(dst.Addr()) {
		return ErrUnsupported
	}
	if flowLabel > IPv6MaxFlowLabel {
		return ErrFlowLabelRange
	}
	ulen := UDPLen + payloadLen
	ip := IPv6(b[:IPv6Len])
	_ = ip.Encode(&IPv6Fields{
		TrafficClass: tc,
		FlowLabel:    flowLabel,
		PayloadLen:   uint16(ulen),
		NextHeader:   ProtoUDP,
		HopLimit:     OuterTTL,
		Source:       src.Addr().As16(),
		Destination:  dst.Addr().As16(),
	})
	u := UDP(b[IPv6Len : IPv6Len+ulen])
	u.Encode(src.Port(), dst.Port(), uint16(ulen), 0)
	if !known {
		payloadSum = Sum(u[UDPLen:], 0)
	}
	c := ^Fold(Sum(u[:UDPLen], ip.PseudoHeaderSum(ProtoUDP, ulen)) + payloadSum)
	if c == 0 {
		c = 0xffff // zero would mean "no checksum"
	}
	u.SetChecksum(c)
	return nil
}

// isPlain6 reports whether a is an IPv6 address that is not an IPv4
// address in disguise: an IPv4-mapped outer destination is an IPv4 peer.
func isPlain6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// OuterV6 is a validated outer IPv6/UDP header pair of a received tunnel
// packet.
type OuterV6 struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Payload          int // offset of the UDP payload in the packet
	PayloadLen       int
	TrafficClass     uint8 // DSCP and ECN, for DecapECNV4/V6
	FlowLabel        uint32
	// PayloadSum is the running sum (Sum) of the payload's bytes, a
	// by-product of verifying the checksum; SumValid says there was one
	// to verify (not a zero checksum taken as "none"). TransportSumOK
	// checks the inner packet's checksum from it.
	PayloadSum uint32
	SumValid   bool
}

// ParseOuterV6 validates the IPv6 and UDP headers at the start of pkt and
// locates the UDP payload. The UDP header must follow the fixed header
// directly: tunnel peers send no extension headers, and a destination
// would have to act on their options (RFC 8200 section 4.2), so any is
// refused (ErrUnsupported), fragments with them. So is an IPv4-mapped
// source or destination (RFC 5156 section 2.2: never on the wire), which
// a caller that unmaps addresses could take for an IPv4 node. The UDP
// checksum must verify (ErrBadChecksum); zero, "none", is refused
// (ErrZeroChecksum) unless zeroChecksumOK, for a port where the RFC 6935
// exception is configured.
func ParseOuterV6(pkt []byte, zeroChecksumOK bool) (OuterV6, error) {
	ip := IPv6(pkt)
	if !ip.IsValid(len(pkt)) {
		return OuterV6{}, ErrBadLength
	}
	if ip.NextHeader() != ProtoUDP || [12]byte(ip[IPv6SourceAddrOffset:]) == ipv4MappedPrefix ||
		[12]byte(ip[IPv6DestinationAddrOffset:]) == ipv4MappedPrefix {
		return OuterV6{}, ErrUnsupported
	}
	tl := ip.TotalLen()
	u := UDP(pkt[IPv6Len:tl])
	if !u.IsValid(tl - IPv6Len) {
		return OuterV6{}, ErrBadLength
	}
	var ps uint32
	sumValid := u.Checksum() != 0
	if !sumValid {
		if !zeroChecksumOK {
			return OuterV6{}, ErrZeroChecksum
		}
	} else {
		// The payload apart from the header, so that its sum is kept.
		n := u.Length()
		ps = Sum(u[UDPLen:n], 0)
		if Fold(Sum(u[:UDPLen], ip.PseudoHeaderSum(ProtoUDP, n))+ps) != 0xffff {
			return OuterV6{}, ErrBadChecksum
		}
	}
	return OuterV6{
		PayloadSum:   ps,
		SumValid:     sumValid,
		Src:          ip.SourceAddr(),
		Dst:          ip.DestinationAddr(),
		SrcPort:      u.SourcePort(),
		DstPort:      u.DestinationPort(),
		Payload:      IPv6Len + UDPLen,
		PayloadLen:   u.Length() - UDPLen,
		TrafficClass: ip.TrafficClass(),
		FlowLabel:    ip.FlowLabel(),
	}, nil
}

// FlowHashV4 hashes the inner flow of a valid IPv4 packet: addresses,
// protocol and, for unfragmented TCP, UDP and SCTP, the ports. Packets of one
// flow always hash alike, so they take one underlay path (ECMP, RSS) and
// are not reordered.
func FlowHashV4(ip IPv4) uint32 {
	h := uint64(binary.BigEndian.Uint32(ip[IPv4SourceAddrOffset:]))<<32 | uint64(binary.BigEndian.Uint32(ip[IPv4DestinationAddrOffset:]))
	proto := ip.Protocol()
	h ^= uint64(proto) << 56
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		hl := ip.HeaderLen()
		if !ip.IsFragment() && len(ip) >= hl+4 {
			h += uint64(binary.BigEndian.Uint32(ip[hl:])) * 0x9e3779b97f4a7c15
		}
	}
	return finishFlowHash(h)
}

// FlowHashV6 hashes the inner flow of a valid IPv6 packet whose upper
// layer UpperLayer found at u: addresses, protocol and, for TCP, UDP and
// SCTP outside fragments, the ports. Every fragment of a datagram hashes
// alike (protocol ProtoIPv6Frag, no ports), as FlowHashV4 hashes IPv4
// fragments without ports. The flow label is left out: a sender may change
// it in the middle of a flow.
func FlowHashV6(ip IPv6, u IPv6Upper) uint32 {
	a := binary.BigEndian.Uint64(ip[IPv6SourceAddrOffset:])
	b := binary.BigEndian.Uint64(ip[IPv6SourceAddrOffset+8:])
	c := binary.BigEndian.Uint64(ip[IPv6DestinationAddrOffset:])
	d := binary.BigEndian.Uint64(ip[IPv6DestinationAddrOffset+8:])
	h := (a*0x9e3779b97f4a7c15 ^ b) * 0xc2b2ae3d27d4eb4f
	h ^= (c*0x165667b19e3779f9 ^ d) * 0x9e3779b97f4a7c15
	proto := u.Proto
	if u.Fragment {
		proto = ProtoIPv6Frag
	}
	h ^= uint64(proto) << 56
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		if len(ip) >= u.Offset+4 {
			h += uint64(binary.BigEndian.Uint32(ip[u.Offset:])) * 0x9e3779b97f4a7c15
		}
	}
	return finishFlowHash(h)
}

// finishFlowHash is a 64-bit finaliser (murmur3's fmix64), so that every
// input bit moves the low bits the port is taken from.
func finishFlowHash(h uint64) uint32 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h)
}

// FlowLabel maps a flow hash to the flow label of the outer IPv6 header of
// the flow's tunnel packets (RFC 6438), so that the fabric can spread
// flows on the label alone: 20 bits of the hash other than the low ones
// SourcePort takes, never 0, which means no label (RFC 6437).
func FlowLabel(hash uint32) uint32 {
	if l := hash >> (32 - 20); l != 0 {
		return l
	}
	return 1
}

// SourcePort maps a flow hash onto the whole dynamic port range: the
// source port of a driver that writes its own UDP headers.
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
