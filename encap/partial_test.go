package encap

import (
	"encoding/binary"
	"testing"
)

func TestCompletePartialChecksumV4(t *testing.T) {
	// A TCP segment as a Linux sender hands it to an offloading device:
	// the checksum field holds the folded pseudo-header sum only.
	seg := []byte{
		0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
		'v', 'x', 'd', 'p', '!',
	}
	ip := make([]byte, 20+len(seg))
	IPv4(ip).Encode(&IPv4Fields{TotalLen: uint16(len(ip)), TTL: 64, Protocol: ProtoTCP,
		Source: [4]byte{10, 1, 1, 236}, Destination: [4]byte{10, 0, 1, 1}})
	copy(ip[20:], seg)
	pseudo := PseudoHeaderSumV4([4]byte{10, 1, 1, 236}, [4]byte{10, 0, 1, 1}, ProtoTCP, uint16(len(seg)))
	binary.BigEndian.PutUint16(ip[20+16:], Fold(pseudo))

	if !CompletePartialChecksumV4(IPv4(ip)) {
		t.Fatal("partial checksum not recognised")
	}
	if Checksum(ip[20:], pseudo) != 0 {
		t.Fatal("completed checksum does not verify")
	}
	// A complete checksum is left alone.
	before := append([]byte(nil), ip...)
	if CompletePartialChecksumV4(IPv4(ip)) {
		t.Fatal("complete checksum treated as partial")
	}
	if string(before) != string(ip) {
		t.Fatal("complete packet modified")
	}
	// UDP without checksum is left alone.
	u := mustHex(t, innerUDP)
	u[26], u[27] = 0, 0
	if CompletePartialChecksumV4(IPv4(u)) {
		t.Fatal("UDP checksum 0 touched")
	}
}
