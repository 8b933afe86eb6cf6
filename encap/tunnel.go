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

// EncapVXLAN writes an inner Ethernet header (dst, src, IPv4) and a VXLAN
// header with vni in front of the inner IPv4 packet buf[start:start+n] and
// returns the offset where the tunnel payload now starts (start -
// VXLANLen - EthernetLen). It copies nothing: the caller keeps the
// headroom. The outer IP and UDP headers are the underlay's to add.
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

// EncapGeneve writes an inner Ethernet header (dst, src, IPv4) and a
// Geneve header with vni and opts (nil for none) in front of the inner IPv4
// packet buf[start:start+n] and returns the offset where the tunnel
// payload now starts. Like EncapVXLAN it copies and allocates nothing; on
// error buf is left as it was.
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
// Ethernet header and returns where the tunnel header goes. On error buf
// is untouched.
func innerEthernet(buf []byte, start, n, hlen int, vni uint32, dst, src MAC) (int, error) {
	switch {
	case start < hlen+EthernetLen:
		return 0, ErrHeaderRoom
	case n < 0 || n > len(buf)-start:
		return 0, ErrBadLength
	case vni > MaxVNI:
		return 0, ErrVNIRange
	}
	Ethernet(buf[start-EthernetLen:start]).Encode(dst, src, EtherTypeIPv4)
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
	// A 64-bit finaliser (murmur3's fmix64) so that every input bit moves
	// the low bits the port is taken from.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return uint32(h)
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
