package udp

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control messages. The outer TOS byte (IPv4) or traffic class (IPv6),
// DSCP and ECN, travels between the engine and the kernel beside each
// datagram: IP_RECVTOS and IPV6_RECVTCLASS make the kernel hand it over
// on receive, and an IP_TOS or IPV6_TCLASS message sets it for one
// datagram on send (RFC 6040: the engine copies the inner packet's, and
// reads what congested hops of the underlay marked). Per datagram, not per
// socket: the flows of one source port carry any mix of classes.
//
// The buffers are sized for every message the sockets are asked for:
// UDP_GRO's segment size and the TOS on receive, UDP_SEGMENT's and the
// TOS on send.

const (
	// cmsgIntSpace is the room of a control message with an int, or
	// anything smaller, as data.
	cmsgIntSpace = (unix.SizeofCmsghdr + 4 + unix.SizeofPtr - 1) &^ (unix.SizeofPtr - 1)
	// recvOOBLen holds UDP_GRO's message and the TOS or traffic class,
	// with room to spare for one more the kernel might add.
	recvOOBLen = 3 * cmsgIntSpace
	// sendOOBLen holds the TOS or traffic class and UDP_SEGMENT's
	// message.
	sendOOBLen = 2 * cmsgIntSpace
)

// enableRecvTOS asks the kernel to report each received datagram's TOS
// (IPv4) or traffic class (IPv6).
func enableRecvTOS(fd int, v6 bool) error {
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1); err != nil {
			return fmt.Errorf("IPV6_RECVTCLASS: %w", err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1); err != nil {
		return fmt.Errorf("IP_RECVTOS: %w", err)
	}
	return nil
}

// parseCmsgs reads the control messages of a received datagram, oob
// trimmed to the length the kernel filled: the UDP_GRO segment size (0
// when absent) and the TOS or traffic class (0, Not-ECT, when absent). A
// malformed chain ends the walk with what was found so far. It reads what
// putTOS and putSegment write as well (UDP_SEGMENT's size for UDP_GRO's),
// so that the two sides check each other.
func parseCmsgs(oob []byte) (seg int, tos uint8) {
	for off := 0; off+unix.SizeofCmsghdr <= len(oob); {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
		if c.Len < unix.SizeofCmsghdr || uint64(off)+uint64(c.Len) > uint64(len(oob)) {
			break
		}
		data := oob[off+unix.CmsgLen(0) : off+int(c.Len)]
		switch {
		case c.Level == solUDP && (c.Type == udpGRO || c.Type == udpSegment) && len(data) >= 2:
			seg = int(binary.NativeEndian.Uint16(data))
		case c.Level == unix.IPPROTO_IP && c.Type == unix.IP_TOS && len(data) >= 1:
			// Linux sends one byte; an int would hold the same value.
			tos = data[0]
			if len(data) >= 4 {
				tos = uint8(binary.NativeEndian.Uint32(data))
			}
		case c.Level == unix.IPPROTO_IPV6 && c.Type == unix.IPV6_TCLASS && len(data) >= 4:
			tos = uint8(binary.NativeEndian.Uint32(data))
		}
		off += unix.CmsgSpace(int(c.Len) - unix.CmsgLen(0))
	}
	return seg, tos
}

// putTOS writes the control message that sends one datagram with TOS (or
// traffic class) tos at the start of b, an int as both families accept,
// and returns its room.
func putTOS(b []byte, v6 bool, tos uint8) int {
	c := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	c.Level, c.Type = unix.IPPROTO_IP, unix.IP_TOS
	if v6 {
		c.Level, c.Type = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	}
	c.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(tos))
	return unix.CmsgSpace(4)
}

// putSegment writes UDP_SEGMENT's control message, the segment size of a
// message the kernel cuts, at the start of b and returns its room.
func putSegment(b []byte, size int) int {
	c := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	c.Level, c.Type = solUDP, udpSegment
	c.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return unix.CmsgSpace(2)
}
