package tun

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// podDevice6 is podDevice for an IPv6 pod: eth0 with addr (a /128) and
// the IPv6 default route through it, no link-local address.
func podDevice6(t *testing.T, o Options, addr string) (*Device, *nstest.Netns) {
	t.Helper()
	nsA, nsB := newNetns(t), newNetns(t)
	var d *Device
	inNetns(t, nsA, func() (err error) {
		d, err = CreateWith("vxdpt0", o)
		return err
	})
	t.Cleanup(func() { d.Close() })
	p := netip.MustParsePrefix(addr)
	if err := d.MoveToNetns(nsB.Path, "eth0", 1500, p); err != nil {
		t.Fatal(err)
	}
	// The kernel adds the local route of an IPv6 address from a work
	// queue, a moment after the address; until then a packet to it is
	// dropped (Ip6InAddrErrors) although the pod already sends from it.
	deadline := time.Now().Add(waitFor)
	for {
		out, err := nsB.Run("ip", "-6", "route", "show", "table", "local", p.Addr().String())
		if err == nil && strings.Contains(out, p.Addr().String()) {
			return d, nsB
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local route for %s: %v %s", p.Addr(), err, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcp6Info is what the tests look at in an IPv6 TCP segment.
type tcp6Info struct {
	src, dst netip.AddrPort
	seq      uint32
	flags    byte
	payload  []byte
}

// parseTCP6 decodes an IPv6 packet without extension headers carrying
// TCP, byte by byte, and checks its lengths and its TCP checksum.
func parseTCP6(p []byte) (tcp6Info, bool) {
	if len(p) < 60 || p[0]>>4 != 6 || p[6] != encap.ProtoTCP || int(binary.BigEndian.Uint16(p[4:]))+40 != len(p) {
		return tcp6Info{}, false
	}
	doff := int(p[52]>>4) * 4
	if doff < 20 || 40+doff > len(p) || !transportValid6(p, 40, encap.ProtoTCP) {
		return tcp6Info{}, false
	}
	return tcp6Info{
		src:     netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[8:24])), binary.BigEndian.Uint16(p[40:])),
		dst:     netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[24:40])), binary.BigEndian.Uint16(p[42:])),
		seq:     binary.BigEndian.Uint32(p[44:]),
		flags:   p[53],
		payload: p[40+doff:],
	}, true
}

// A pod's IPv6 TCP hands the TUN super-packets (TSO6): the test plays the
// remote end of a connection far enough for the pod to send its first
// flight, and Read returns it as MTU-sized segments whose checksums
// verify, in sequence, carrying the bytes the pod wrote.
func TestReadTSO6(t *testing.T) {
	d, nsB := podDevice6(t, Options{Offload: true}, "fd00:1::10/128")
	if o := offloads(d)["tun-tso"]; !o.Active {
		t.Fatalf("tun-tso: %+v", o)
	}
	ch := reader(d)
	remote := netip.MustParseAddrPort("[fd00:2::99]:5201")
	type dialed struct {
		c   net.Conn
		err error
	}
	connc := make(chan dialed, 1)
	go func() {
		var r dialed
		r.err = nsB.Do(func() (err error) {
			r.c, err = net.DialTimeout("tcp", remote.String(), waitFor)
			return err
		})
		connc <- r
	}()

	// The SYN, answered with a SYN-ACK that offers no MSS option: the
	// pod then uses IPv6's default of 1220 bytes.
	var syn tcp6Info
	timeout := time.After(waitFor)
	for syn.flags != 0x02 {
		select {
		case p := <-ch:
			if s, ok := parseTCP6(p); ok && s.dst == remote {
				syn = s
			}
		case <-timeout:
			t.Fatal("no SYN from the pod")
		}
	}
	const off = 64
	synAck := pkttest.IPv6{Src: remote.Addr(), Dst: syn.src.Addr()}.TCP(pkttest.TCP{SrcPort: remote.Port(), DstPort: syn.src.Port(),
		Seq: 5000, Ack: syn.seq + 1, Flags: 0x12, Window: 65535}, nil)
	if n, err := d.Write([][]byte{append(make([]byte, off), synAck...)}, off); n != 1 || err != nil {
		t.Fatalf("write SYN-ACK: %d, %v", n, err)
	}
	var r dialed
	select {
	case r = <-connc:
	case <-time.After(2 * waitFor):
		t.Fatal("the pod's connect did not return")
	}
	if r.err != nil {
		t.Fatalf("the pod's connect: %v", r.err)
	}
	c := r.c
	defer c.Close()
	data := make([]byte, 20000)
	for i := range data {
		data[i] = byte(i*31 + i>>8)
	}
	c.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}

	// The first flight: ten segments of 1220 bytes (the initial
	// window), which the pod's kernel hands over in super-packets.
	const flight = 10 * 1220
	var got []byte
	next := syn.seq + 1
	timeout = time.After(waitFor)
	for len(got) < flight {
		select {
		case p := <-ch:
			s, ok := parseTCP6(p)
			if !ok || s.dst != remote || len(s.payload) == 0 || s.seq != next {
				continue // the handshake's ACK, or a retransmission
			}
			if len(s.payload) > 1220 || len(p) > 1500 {
				t.Fatalf("a segment of %d bytes, %d of payload", len(p), len(s.payload))
			}
			got = append(got, s.payload...)
			next += uint32(len(s.payload))
		case <-timeout:
			t.Fatalf("%d of %d bytes read", len(got), flight)
		}
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("the segments do not carry what the pod wrote")
	}
	if o := offloads(d)["tun-tso"]; o.Count == 0 || o.Largest <= 1500 {
		t.Fatalf("tun-tso: %+v, want super-packets", o)
	}
}

// UDP_SEGMENT over IPv6 reaches the TUN as one UDP super-packet; Read
// cuts it into the datagrams the application meant, each with its own
// lengths and a checksum over the IPv6 pseudo-header.
func TestReadUSO6(t *testing.T) {
	d, nsB := podDevice6(t, Options{Offload: true}, "fd00:1::10/128")
	if o := offloads(d)["tun-uso"]; !o.Active {
		t.Skipf("kernel without USO on TUN: %s", o.Reason) // before Linux 6.2
	}
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("[fd00:1::10]:0"))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 100) })
	if serr != nil {
		t.Fatalf("UDP_SEGMENT: %v", serr)
	}
	payload := make([]byte, 950)
	for i := range payload {
		payload[i] = byte(i / 100)
	}
	remote := netip.MustParseAddrPort("[fd00:2::99]:9")
	if _, err := c.WriteToUDPAddrPort(payload, remote); err != nil {
		t.Fatal(err)
	}
	ch := reader(d)
	for i := 0; i < 10; i++ {
		var p []byte
		select {
		case p = <-ch:
		case <-time.After(waitFor):
			t.Fatalf("datagram %d missing", i)
		}
		if len(p) < 48 || p[0]>>4 != 6 || p[6] != encap.ProtoUDP || netip.AddrFrom16([16]byte(p[24:40])) != remote.Addr() {
			i--
			continue // kernel noise
		}
		want := payload[i*100 : min(i*100+100, len(payload))]
		if !bytes.Equal(p[48:], want) || int(binary.BigEndian.Uint16(p[4:])) != len(p)-40 || int(binary.BigEndian.Uint16(p[44:])) != len(p)-40 {
			t.Fatalf("datagram %d: %d bytes, want %d of payload", i, len(p), len(want))
		}
		if !transportValid6(p, 40, encap.ProtoUDP) {
			t.Fatalf("datagram %d: bad UDP checksum", i)
		}
	}
	if o := offloads(d)["tun-uso"]; o.Count != 1 || o.Largest != 40+8+950 {
		t.Fatalf("tun-uso: %+v, want one super-packet of 998 bytes", o)
	}
}

// A run of IPv6 TCP segments written to an offloading device reaches the
// pod's stack as one super-packet with every payload byte in order.
func TestWriteMergedSuperPacket6(t *testing.T) {
	d, nsB := podDevice6(t, Options{Offload: true}, "fd00:1:2::20/128")
	var fd int
	inNetns(t, nsB, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IPV6)))
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(waitFor))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	payload := make([]byte, 5*1370+700)
	for i := range payload {
		payload[i] = byte(i*13 + i>>8)
	}
	const off = 64
	bufs := cutSegments6(superPacket6(payload, 0x18), 1370, off)
	segs := len(bufs)
	if n, err := d.Write(bufs, off); err != nil || n != segs {
		t.Fatalf("Write: %d of %d, %v (tx errors %d)", n, segs, err, d.TXErrors())
	}
	if got := d.merged.Load(); got != uint64(segs) {
		t.Fatalf("%d segments merged, want %d", got, segs)
	}
	if !raceEnabled {
		if a := testing.AllocsPerRun(20, func() { d.Write(bufs, off) }); a != 0 {
			t.Errorf("merged Write: %v allocs per call", a)
		}
	}
	buf := make([]byte, 70000)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("no super-packet seen on eth0: %v", err)
		}
		p := buf[:n]
		if n < 60 || p[6] != unix.IPPROTO_TCP || netip.AddrFrom16([16]byte(p[24:40])) != pod6B {
			continue // something else the kernel sent or received
		}
		if n != 60+len(payload) || !bytes.Equal(p[60:], payload) {
			t.Fatalf("received %d bytes, want one packet of %d with the payload in order", n, 60+len(payload))
		}
		if p[53] != 0x18 || binary.BigEndian.Uint32(p[44:]) != 0xfffff000 || !bytes.Equal(p[:4], bufs[0][off:off+4]) {
			t.Fatalf("flags %#x seq %#x first word %x", p[53], binary.BigEndian.Uint32(p[44:]), p[:4])
		}
		return
	}
}
