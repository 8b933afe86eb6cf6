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

// Offsets of the ARP fields, for Ethernet (6-byte) hardware and IPv4
// (4-byte) protocol addresses.
const (
	ARPHardwareTypeOffset = 0
	ARPProtocolTypeOffset = 2
	ARPHardwareLenOffset  = 4
	ARPProtocolLenOffset  = 5
	ARPOperationOffset    = 6
	ARPSenderMACOffset    = 8
	ARPSenderIPOffset     = 14
	ARPTargetMACOffset    = 18
	ARPTargetIPOffset     = 24

	arpHardwareEthernet = 1
)

// IsValid reports whether b is an Ethernet/IPv4 ARP packet.
func (b ARP) IsValid() bool {
	return len(b) >= ARPLen &&
		binary.BigEndian.Uint16(b[ARPHardwareTypeOffset:]) == arpHardwareEthernet &&
		binary.BigEndian.Uint16(b[ARPProtocolTypeOffset:]) == EtherTypeIPv4 &&
		b[ARPHardwareLenOffset] == 6 && b[ARPProtocolLenOffset] == 4
}

func (b ARP) Operation() uint16    { return binary.BigEndian.Uint16(b[ARPOperationOffset:]) }
func (b ARP) SenderMAC() MAC       { return MAC(b[ARPSenderMACOffset : ARPSenderMACOffset+6]) }
func (b ARP) SenderIP() netip.Addr { return netip.AddrFrom4(b.senderIP4()) }
func (b ARP) TargetMAC() MAC       { return MAC(b[ARPTargetMACOffset : ARPTargetMACOffset+6]) }
func (b ARP) TargetIP() netip.Addr { return netip.AddrFrom4(b.targetIP4()) }

func (b ARP) senderIP4() [4]byte { return [4]byte(b[ARPSenderIPOffset : ARPSenderIPOffset+4]) }
func (b ARP) targetIP4() [4]byte { return [4]byte(b[ARPTargetIPOffset : ARPTargetIPOffset+4]) }

func (b ARP) setOperation(op uint16) { binary.BigEndian.PutUint16(b[ARPOperationOffset:], op) }

// TurnIntoReply rewrites a request in place into the reply that tells its
// sender that target lives at mac: the sender fields become the target
// fields and ours the sender's.
func (b ARP) TurnIntoReply(mac MAC) {
	sha, spa, tpa := b.SenderMAC(), b.senderIP4(), b.targetIP4()
	b.setOperation(ARPReply)
	copy(b[ARPSenderMACOffset:ARPSenderMACOffset+6], mac[:])
	copy(b[ARPSenderIPOffset:ARPSenderIPOffset+4], tpa[:])
	copy(b[ARPTargetMACOffset:ARPTargetMACOffset+6], sha[:])
	copy(b[ARPTargetIPOffset:ARPTargetIPOffset+4], spa[:])
}

// EncodeRequest writes a request from (sha, spa) for tpa.
func (b ARP) EncodeRequest(sha MAC, spa, tpa [4]byte) {
	binary.BigEndian.PutUint16(b[ARPHardwareTypeOffset:], arpHardwareEthernet)
	binary.BigEndian.PutUint16(b[ARPProtocolTypeOffset:], EtherTypeIPv4)
	b[ARPHardwareLenOffset], b[ARPProtocolLenOffset] = 6, 4
	b.setOperation(ARPRequest)
	copy(b[ARPSenderMACOffset:ARPSenderMACOffset+6], sha[:])
	copy(b[ARPSenderIPOffset:ARPSenderIPOffset+4], spa[:])
	clear(b[ARPTargetMACOffset : ARPTargetMACOffset+6])
	copy(b[ARPTargetIPOffset:ARPTargetIPOffset+4], tpa[:])
}
