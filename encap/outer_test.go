package encap

import "net/netip"

// The fixtures in these tests are whole packets as they travel on the
// wire. The engine writes the tunnel header and inner Ethernet
// (EncapVXLAN, EncapGeneve) and an underlay adds the outer IPv4 and UDP
// (EncodeOuterV4, or the kernel); encapVXLANv4 and encapGeneveV4 do both,
// so the fixtures check the two writers together, byte for byte.

// tunnelV4 is what a whole outer packet needs to know about a peer.
type tunnelV4 struct {
	Src, Dst [4]byte // outer addresses
	DstPort  uint16  // the peer's tunnel port
	SrcMAC   MAC     // inner Ethernet source
	DstMAC   MAC     // inner Ethernet destination
}

func encapVXLANv4(buf []byte, start, n int, t *tunnelV4, vni uint32, srcPort uint16) (int, error) {
	return wrapV4(buf, start, n, VXLANLen, t, srcPort, func() (int, error) {
		return EncapVXLAN(buf, start, n, vni, t.DstMAC, t.SrcMAC)
	})
}

func encapGeneveV4(buf []byte, start, n int, t *tunnelV4, vni uint32, opts []GeneveOption, srcPort uint16) (int, error) {
	ol, err := GeneveOptionsLen(opts)
	if err != nil {
		return 0, err
	}
	return wrapV4(buf, start, n, GeneveLen+ol, t, srcPort, func() (int, error) {
		return EncapGeneve(buf, start, n, vni, opts, t.DstMAC, t.SrcMAC)
	})
}

// wrapV4 checks room and length first, so that on error buf is left as it
// was, then writes the tunnel header (inner) and the outer headers.
func wrapV4(buf []byte, start, n, hlen int, t *tunnelV4, srcPort uint16, inner func() (int, error)) (int, error) {
	if start < OuterV4Len+hlen+EthernetLen {
		return 0, ErrHeaderRoom
	}
	if n < 0 || n > len(buf)-start || OuterV4Len+hlen+EthernetLen+n > 0xffff {
		return 0, ErrBadLength
	}
	o, err := inner()
	if err != nil {
		return 0, err
	}
	src := netip.AddrPortFrom(netip.AddrFrom4(t.Src), srcPort)
	dst := netip.AddrPortFrom(netip.AddrFrom4(t.Dst), t.DstPort)
	if err := EncodeOuterV4(buf[o-OuterV4Len:], src, dst, start+n-o); err != nil {
		return 0, err
	}
	return o - OuterV4Len, nil
}
