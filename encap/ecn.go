package encap

import "encoding/binary"

// ECN is the Explicit Congestion Notification field (RFC 3168 section 5):
// the low two bits of the IPv4 TOS byte and of the IPv6 traffic class,
// under the six bits of the DSCP (RFC 2474).
type ECN uint8

// The ECN codepoints.
const (
	ECNNotECT ECN = 0b00 // the transport does not do ECN
	ECNECT1   ECN = 0b01 // ECN-capable transport (L4S, RFC 9331)
	ECNECT0   ECN = 0b10 // ECN-capable transport
	ECNCE     ECN = 0b11 // congestion experienced

	ecnMask   = 0b11
	dscpShift = 2
)

func (e ECN) String() string {
	switch e & ecnMask {
	case ECNNotECT:
		return "Not-ECT"
	case ECNECT1:
		return "ECT(1)"
	case ECNECT0:
		return "ECT(0)"
	}
	return "CE"
}

// ECNOf is the ECN field of a TOS byte or traffic class.
func ECNOf(tos uint8) ECN { return ECN(tos & ecnMask) }

// DSCPOf is the DSCP of a TOS byte or traffic class.
func DSCPOf(tos uint8) uint8 { return tos >> dscpShift }

func (b IPv4) ECN() ECN    { return ECNOf(b.TOS()) }
func (b IPv4) DSCP() uint8 { return DSCPOf(b.TOS()) }
func (b IPv6) ECN() ECN    { return ECNOf(b.TrafficClass()) }
func (b IPv6) DSCP() uint8 { return DSCPOf(b.TrafficClass()) }

// EncapTOS is the TOS byte or traffic class of the outer header of a
// tunnel packet whose inner TOS or traffic class is inner, for either
// family on either side: the DSCP copied (RFC 2983's uniform model, as the
// Linux kernel's vxlan with tos inherit does) and the ECN field copied as
// it is, CE included (RFC 6040 section 4.1, normal mode; RFC 9601 brings
// VXLAN and Geneve under it). Linux sends an inner CE as ECT(0) instead,
// RFC 3168's older rule; both decapsulate to CE.
func EncapTOS(inner uint8) uint8 { return inner }

// decapECN is RFC 6040's table 3 turned on its side: decapECN[outer][inner]
// is the ECN field the inner packet leaves the tunnel with, or'ed with the
// flags below.
var decapECN = [4][4]uint8{
	ECNNotECT: {ECNNotECT: notECT, ECNECT1: ect1, ECNECT0: ect0, ECNCE: ce},
	ECNECT0:   {ECNNotECT: notECT | ecnAnomaly, ECNECT1: ect1, ECNECT0: ect0, ECNCE: ce},
	ECNECT1:   {ECNNotECT: notECT | ecnAnomaly, ECNECT1: ect1, ECNECT0: ect1, ECNCE: ce | ecnAnomaly},
	ECNCE:     {ECNNotECT: ecnDrop | ecnAnomaly, ECNECT1: ce, ECNECT0: ce, ECNCE: ce},
}

// The entries of decapECN: the codepoints as bytes, and two flags above
// them.
const (
	notECT     = uint8(ECNNotECT)
	ect1       = uint8(ECNECT1)
	ect0       = uint8(ECNECT0)
	ce         = uint8(ECNCE)
	ecnDrop    = 1 << 2
	ecnAnomaly = 1 << 3
)

// DecapECN is RFC 6040 section 4.2 (table 3): given the ECN fields of the
// outer and the inner header of an arriving tunnel packet, it returns the
// ECN field the inner packet must leave with, or drop set when it must be
// dropped instead (CE outside a packet whose transport does not do ECN:
// the congestion can only be signalled by a loss). anomaly marks the
// combinations the RFC calls currently unused and asks to log: an
// ECN-capable outer over a Not-ECT inner, and ECT(1) outside CE; count
// them, never log each. Otherwise an outer CE makes the inner CE, an outer
// ECT(1) makes an inner ECT(0) ECT(1), and the inner field stays.
func DecapECN(outer, inner ECN) (out ECN, drop, anomaly bool) {
	v := decapECN[outer&ecnMask][inner&ecnMask]
	return ECN(v & ecnMask), v&ecnDrop != 0, v&ecnAnomaly != 0
}

// SetTOS stores the TOS byte and patches the header checksum
// incrementally, as DecrementTTL does.
func (b IPv4) SetTOS(tos uint8) {
	// TOS shares its checksummed 16-bit word with version and IHL.
	old := binary.BigEndian.Uint16(b[IPv4VersionIHLOffset:])
	b[IPv4TOSOffset] = tos
	nw := binary.BigEndian.Uint16(b[IPv4VersionIHLOffset:])
	binary.BigEndian.PutUint16(b[IPv4ChecksumOffset:], UpdateChecksum16(b.HeaderChecksum(), old, nw))
}

// SetECN stores the ECN field, the DSCP unchanged, and patches the header
// checksum incrementally.
func (b IPv4) SetECN(e ECN) { b.SetTOS(b.TOS()&^ecnMask | uint8(e&ecnMask)) }

// SetECN stores the ECN field, the DSCP unchanged. No checksum covers it.
func (b IPv6) SetECN(e ECN) { b.SetTrafficClass(b.TrafficClass()&^ecnMask | uint8(e&ecnMask)) }

// DecapECNV4 applies DecapECN to inner, a valid IPv4 packet that arrived
// in a tunnel packet whose outer ECN field was outer: it rewrites inner's
// ECN field where the table changes it (the checksum patched), or reports
// drop and leaves inner as it was. The DSCP of inner is kept: the outer one
// is the underlay's business (RFC 2983's pipe model on the way out).
func DecapECNV4(outer ECN, inner IPv4) (drop, anomaly bool) {
	in := inner.ECN()
	out, drop, anomaly := DecapECN(outer, in)
	if !drop && out != in {
		inner.SetECN(out)
	}
	return drop, anomaly
}

// DecapECNV6 is DecapECNV4 for an inner IPv6 packet.
func DecapECNV6(outer ECN, inner IPv6) (drop, anomaly bool) {
	in := inner.ECN()
	out, drop, anomaly := DecapECN(outer, in)
	if !drop && out != in {
		inner.SetECN(out)
	}
	return drop, anomaly
}
