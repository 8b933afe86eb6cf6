package udp

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
)

// What Send puts on the wire carries a UDP checksum that verifies, over
// IPv6 (where it is mandatory) as over IPv4: the sockets leave the kernel
// to compute it (or the device, which on a veth leaves it partial: the
// test completes it as a NIC would).
func TestChecksumOnTheWire(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		// No GSO: the capture sees each datagram as it is on the wire.
		q := openIn(t, node, Config{Addr: f.node}).Queues()[0]
		recv := peer.ListenUDP(t, netip.AddrPortFrom(f.peer, 0))
		dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
		capt, err := nstest.StartCapture(peer, "veth1")
		if err != nil {
			t.Fatal(err)
		}
		sizes := []int{1, 99, 1000, 1200}
		bufs := make([][]byte, len(sizes))
		meta := make([]packetio.Meta, len(sizes))
		for i, n := range sizes {
			bufs[i] = make([]byte, n)
			for k := range bufs[i] {
				bufs[i][k] = byte(k*7 + i)
			}
			meta[i] = packetio.Meta{Remote: dst, Flow: uint32(i)}
		}
		if n, err := q.Send(bufs, meta, 0); err != nil || n != len(bufs) {
			t.Fatalf("Send = %d, %v", n, err)
		}
		recv.SetReadDeadline(time.Now().Add(waitFor))
		buf := make([]byte, 2048)
		for range sizes {
			if _, err := recv.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		checked := 0
		for _, frame := range capt.Stop() {
			if _, _, to, ok := nstest.Endpoints(nstest.Decode(frame)); !ok || to != dst {
				continue
			}
			if err := checkUDPChecksum(frame[14:]); err != nil { // past the Ethernet header
				t.Errorf("datagram %d: %v", checked, err)
			}
			checked++
		}
		if checked != len(sizes) {
			t.Fatalf("captured %d of the %d datagrams sent", checked, len(sizes))
		}
	})
}

// checkUDPChecksum verifies the checksum of the UDP datagram in the IP
// packet pkt, completing a partial one first.
func checkUDPChecksum(pkt []byte) error {
	var seg encap.UDP
	var pseudo uint32
	switch encap.IPVersion(pkt) {
	case 4:
		ip := encap.IPv4(pkt)
		if !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoUDP {
			return fmt.Errorf("not an IPv4 UDP packet: %x", pkt)
		}
		encap.CompletePartialChecksumV4(ip)
		seg = ip.Payload()
		pseudo = ip.PseudoHeaderSum(encap.ProtoUDP, len(seg))
	case 6:
		ip := encap.IPv6(pkt)
		if !ip.IsValid(len(pkt)) || ip.NextHeader() != encap.ProtoUDP {
			return fmt.Errorf("not an IPv6 UDP packet: %x", pkt)
		}
		encap.CompletePartialChecksumV6(ip)
		seg = ip.Payload()
		pseudo = ip.PseudoHeaderSum(encap.ProtoUDP, len(seg))
	default:
		return fmt.Errorf("not an IP packet: %x", pkt)
	}
	if !seg.IsValid(len(seg)) {
		return fmt.Errorf("bad UDP header %x", seg)
	}
	if seg.Checksum() == 0 {
		return fmt.Errorf("sent without a checksum")
	}
	if s := encap.Fold(encap.Sum(seg, pseudo)); s != 0xffff {
		return fmt.Errorf("checksum %#04x does not verify (sum %#04x)", seg.Checksum(), s)
	}
	return nil
}

// A datagram without a checksum (zero) is received over IPv4, where the
// checksum is optional, and never over IPv6: the sockets leave
// UDP_NO_CHECK6_RX off, as the kernel's vxlan does unless told otherwise
// (RFC 6935 and 6936 allow zero only where configured), so the kernel
// drops it.
func TestZeroChecksumReceive(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		q := queueIn(t, node, f.node, 0)
		const rawPort = 40000
		sendWithoutChecksum(t, peer, netip.AddrPortFrom(f.peer, rawPort), q.LocalAddr(), []byte("no checksum"))
		// The same path next: once it has arrived, so would have the one
		// before it.
		sender := peer.ListenUDP(t, netip.AddrPortFrom(f.peer, 0))
		if _, err := sender.WriteToUDPAddrPort([]byte("checksum"), q.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		want := []string{"checksum"}
		if f.node.Is4() {
			want = []string{"no checksum", "checksum"}
		}
		got, meta := receiveN(t, q, len(want), 0, 2048)
		var texts []string
		for _, p := range got {
			texts = append(texts, string(p))
		}
		if !slices.Equal(texts, want) {
			t.Fatalf("received %q, want %q", texts, want)
		}
		if f.node.Is4() && meta[0].Remote != netip.AddrPortFrom(f.peer, rawPort) {
			t.Fatalf("datagram without checksum from %v", meta[0].Remote)
		}
	})
}

// sendWithoutChecksum sends payload from src to dst, from namespace ns, as
// a UDP datagram whose checksum field is zero, through a raw socket (the
// kernel computes no UDP checksum for it).
func sendWithoutChecksum(t *testing.T, ns *nstest.Netns, src, dst netip.AddrPort, payload []byte) {
	t.Helper()
	pkt := make([]byte, encap.UDPLen+len(payload))
	encap.UDP(pkt).Encode(src.Port(), dst.Port(), uint16(len(pkt)), 0)
	copy(pkt[encap.UDPLen:], payload)
	inNetns(t, ns, func() error {
		domain := unix.AF_INET
		if src.Addr().Is6() {
			domain = unix.AF_INET6
		}
		fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, encap.ProtoUDP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		// Raw sockets have no ports: the address alone, port 0.
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src.Addr(), 0))); err != nil {
			return err
		}
		return unix.Sendto(fd, pkt, 0, sockaddr(netip.AddrPortFrom(dst.Addr(), 0)))
	})
}
