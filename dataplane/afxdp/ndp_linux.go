package afxdp

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Triggering neighbour discovery for an IPv6 next hop.
//
// For IPv4, RTM_NEWNEIGH with NTF_USE makes the kernel ARP at once. For
// IPv6 it is not enough: the kernel then solicits with no packet in hand,
// so it takes the source of its neighbour solicitation from the device's
// link-local address, and sends nothing while that is tentative (the first
// second or two after the link comes up, duplicate address detection) or
// when the device has none (addrgenmode none). Packets would wait for the
// retransmit timer, past waitTimeout, or forever.
//
// So the kernel is given what it resolves for: a packet. An ICMPv6 echo
// request from the node address to the next hop goes through the kernel's
// output path, which finds no usable neighbour entry, queues the packet
// and solicits at once with the node address as the source, as it does
// for its own traffic. The kernel stays the only NDP speaker. The next
// hop's echo reply comes back to the kernel (the XDP program passes all
// ICMPv6) and is filtered out of the socket, which never reads.

// echoID marks the echo requests, for whoever reads a capture.
const echoID = 0x7864 // "xd"

// ndpTrigger is the raw ICMPv6 socket of the echo requests.
type ndpTrigger struct {
	fd      int
	ifindex int
	seq     uint16
}

// newNDPTrigger opens the socket in the calling thread's namespace, bound
// to the node address where the kernel lets it (a tentative one may not
// be bindable yet; the kernel then picks the source itself, the node
// address on a device that has only that).
func newNDPTrigger(nodeIP netip.Addr, ifindex int) (*ndpTrigger, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMPV6)
	if err != nil {
		return nil, fmt.Errorf("ICMPv6 socket for neighbour discovery: %w", err)
	}
	// Receive nothing: every type blocked.
	var f unix.ICMPv6Filter
	for i := range f.Data {
		f.Data[i] = ^uint32(0)
	}
	if err := unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ICMPv6 socket filter: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
	_ = unix.Bind(fd, &unix.SockaddrInet6{Addr: nodeIP.As16()})
	return &ndpTrigger{fd: fd, ifindex: ifindex}, nil
}

// trigger sends one echo request to ip through the underlay device. The
// kernel computes the ICMPv6 checksum of a raw ICMPv6 socket.
func (t *ndpTrigger) trigger(ip netip.Addr) error {
	t.seq++
	msg := [12]byte{128, 0, 0, 0, echoID >> 8, echoID & 0xff, byte(t.seq >> 8), byte(t.seq), 'v', 'x', 'd', 'p'}
	sa := &unix.SockaddrInet6{Addr: ip.As16()}
	if ip.IsLinkLocalUnicast() {
		sa.ZoneId = uint32(t.ifindex)
	}
	err := unix.Sendto(t.fd, msg[:], 0, sa)
	if err == unix.EAGAIN {
		return nil // queued for the neighbour already: resolution is under way
	}
	return err
}

func (t *ndpTrigger) close() { unix.Close(t.fd) }
