package encap

import (
	"encoding/binary"
	"net/netip"
)

// ARP is an ARP packet view for IPv4 over Ethernet (RFC 826):
//
//	 0                   1                   2                   3
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Hardware type (1)         |     Protocol type (0x0800)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  HLEN (6)     |  PLEN (4)     |          Operation            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Sender hardware address (6) | Sender protocol address (4)    |
//	|  Target hardware address (6) | Target protocol address (4)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Call IsValid first; the accessors trust the view.
type ARP []byte

// ARP constants.
const (
	ARPLen     = 28
	ARPRequest = 1
	ARPReply   = 2
)

// IsValid reports whether b is an Ethernet/IPv4 ARP packet.
func (b ARP) IsValid() bool {
	return len(b) >= ARPLen &&
		binary.BigEndian.Uint16(b[0:]) == 1 &&
		binary.BigEndian.Uint16(b[2:]) == EtherTypeIPv4 &&
		b[4] == 6 && b[5] == 4
}

func (b ARP) Operation() uint16    { return binary.BigEndian.Uint16(b[6:]) }
func (b ARP) SenderMAC() MAC       { return MAC(b[8:14]) }
func (b ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(b[14:18])) }
func (b ARP) TargetMAC() MAC       { return MAC(b[18:24]) }
func (b ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(b[24:28])) }

// TurnIntoReply rewrites a request in place into the reply that tells its
// sender that target lives at mac: the sender fields become the target
// fields and ours the sender's.
func (b ARP) TurnIntoReply(mac MAC) {
	var sha [6]byte
	var spa, tpa [4]byte
	copy(sha[:], b[8:14])
	copy(spa[:], b[14:18])
	copy(tpa[:], b[24:28])
	binary.BigEndian.PutUint16(b[6:], ARPReply)
	copy(b[8:14], mac[:])
	copy(b[14:18], tpa[:])
	copy(b[18:24], sha[:])
	copy(b[24:28], spa[:])
}

// EncodeRequest writes a request from (sha, spa) for tpa.
func (b ARP) EncodeRequest(sha MAC, spa, tpa [4]byte) {
	binary.BigEndian.PutUint16(b[0:], 1)
	binary.BigEndian.PutUint16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], ARPRequest)
	copy(b[8:14], sha[:])
	copy(b[14:18], spa[:])
	clear(b[18:24])
	copy(b[24:28], tpa[:])
}
