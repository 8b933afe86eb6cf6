package afxdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// IPv6 documentation addresses (RFC 3849) for the IPv6 underlay tests.
var (
	addr6A = netip.MustParseAddr("2001:db8::1")
	addr6B = netip.MustParseAddr("2001:db8::2")
)

var (
	macA = [6]byte{2, 0, 0, 0, 0, 1}
	macB = [6]byte{2, 0, 0, 0, 0, 2}
)

// frame6 builds Ethernet + IPv6 (+ ext) + UDP from src to dst.
func frame6(h pkttest.IPv6, srcPort, dstPort uint16, payload []byte) []byte {
	return pkttest.Ethernet(macA, macB, encap.EtherTypeIPv6, h.UDP(srcPort, dstPort, payload))
}

// TestProgramV6 runs the IPv6 program on crafted frames, as TestProgram
// the IPv4 one: DROP stands for a redirect, PASS for the kernel.
func TestProgramV6(t *testing.T) {
	needRoot(t)
	other := netip.MustParseAddr("2001:db8::99")
	for _, node := range []netip.Addr{addr6A, netip.MustParseAddr("fd69:72::233")} {
		m, err := newXSKMap(1)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		prog, err := loadProgram(node, 8472, m, xdpDrop)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		h := pkttest.IPv6{Src: other, Dst: node, TrafficClass: 0xb8, FlowLabel: 0x12345}
		good := frame6(h, 40000, 8472, []byte("payload!"))
		edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
		// An address differing from the node's in one 32-bit word only,
		// for each word: the program compares all four.
		var wordDiffers [][]byte
		for w := 0; w < 4; w++ {
			wordDiffers = append(wordDiffers, edit(func(b []byte) []byte { b[ethLen+encap.IPv6DestinationAddrOffset+4*w+3] ^= 1; return b }))
		}
		cases := []struct {
			name  string
			frame []byte
			want  uint32
		}{
			{"match", good, xdpDrop},
			{"padded short frame", append(bytes.Clone(good), make([]byte, 10)...), xdpDrop},
			{"zero checksum still redirected, refused by Receive", edit(func(b []byte) []byte { b[ethLen+ip6Len+6], b[ethLen+ip6Len+7] = 0, 0; return b }), xdpDrop},
			{"other port", frame6(h, 40000, 9999, []byte("x")), xdpPass},
			{"port byte-swapped", frame6(h, 40000, 0x1121, []byte("x")), xdpPass},
			{"other address", frame6(pkttest.IPv6{Src: node, Dst: other}, 40000, 8472, []byte("x")), xdpPass},
			{"TCP", edit(func(b []byte) []byte { b[ethLen+encap.IPv6NextHeaderOffset] = 6; return b }), xdpPass},
			{"hop-by-hop options", frame6(pkttest.IPv6{Src: other, Dst: node, Ext: []pkttest.Ext{pkttest.HopByHop(1)}}, 40000, 8472, []byte("x")), xdpPass},
			{"destination options", frame6(pkttest.IPv6{Src: other, Dst: node, Ext: []pkttest.Ext{pkttest.DestOpts(1)}}, 40000, 8472, []byte("x")), xdpPass},
			{"fragment", frame6(pkttest.IPv6{Src: other, Dst: node, Ext: []pkttest.Ext{pkttest.Fragment(0, true, 7)}}, 40000, 8472, []byte("x")), xdpPass},
			{"version 4 in an IPv6 ethertype", edit(func(b []byte) []byte { b[ethLen] = 0x40 | b[ethLen]&0x0f; return b }), xdpPass},
			{"IPv4 ethertype", edit(func(b []byte) []byte { b[12], b[13] = 0x08, 0x00; return b }), xdpPass},
			{"IPv4 packet to the port", pkttest.Ethernet(macA, macB, encap.EtherTypeIPv4,
				pkttest.UDP4(netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:8472"), []byte("x"))), xdpPass},
			{"VLAN tagged", edit(func(b []byte) []byte {
				out := append([]byte{}, b[:12]...)
				out = append(out, 0x81, 0x00, 0x00, 0x64)
				return append(out, b[12:]...)
			}), xdpPass},
			{"UDP header cut", edit(func(b []byte) []byte { return b[:ethLen+ip6Len+udpLen-1] }), xdpPass},
			{"IPv6 header cut", edit(func(b []byte) []byte { return b[:ethLen+ip6Len-1] }), xdpPass},
			{"Ethernet only", edit(func(b []byte) []byte { return b[:ethLen] }), xdpPass},
		}
		for w, f := range wordDiffers {
			cases = append(cases, struct {
				name  string
				frame []byte
				want  uint32
			}{"address word " + string(rune('0'+w)) + " differs", f, xdpPass})
		}
		for _, tc := range cases {
			t.Run(node.String()+"/"+tc.name, func(t *testing.T) {
				got, err := prog.Run(&ebpf.RunOptions{Data: tc.frame})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Fatalf("action %d, want %d", got, tc.want)
				}
			})
		}
	}
}

// TestOuterFrames builds frames with writeOuter and parses them with
// payloadOfFrame for both families: addresses, ports, TOS or traffic
// class, flow label, checksums; and payloadOfFrame refuses what it must.
func TestOuterFrames(t *testing.T) {
	payload := []byte("a tunnel payload of some length, odd: 41")
	for _, tc := range []struct {
		name       string
		node, peer netip.Addr
		et         uint16
	}{
		{"ipv4", addrA, addrB, encap.EtherTypeIPv4},
		{"ipv6", addr6A, addr6B, encap.EtherTypeIPv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnderlay(Config{Device: "fake0", NodeIP: tc.node, Port: 8472})
			u.mac = macA
			const flow, tos = 0xdeadbeef, 0xb9 // DSCP 46, ECT(1)
			f := make([]byte, 2048)
			n := u.writeOuter(f[ethLen:], payload, netip.AddrPortFrom(tc.peer, 8472), &packetio.Meta{Flow: flow, TOS: tos})
			if n != u.outerLen+len(payload) {
				t.Fatalf("packet length %d, want %d", n, u.outerLen+len(payload))
			}
			q := &Queue{u: u}
			q.writeEthernet(f, &macB)
			f = f[:ethLen+n]
			if eth := encap.Ethernet(f); eth.EtherType() != tc.et || eth.Destination() != macB || eth.Source() != macA {
				t.Fatalf("Ethernet header % x", f[:ethLen])
			}
			pkt := f[ethLen:]
			if tc.node.Is6() {
				ip := encap.IPv6(pkt)
				if ip.TrafficClass() != tos || ip.FlowLabel() != encap.FlowLabel(flow) || ip.HopLimit() != encap.OuterTTL {
					t.Errorf("traffic class %#x flow label %#x hop limit %d", ip.TrafficClass(), ip.FlowLabel(), ip.HopLimit())
				}
				udp := encap.UDP(pkt[encap.IPv6Len:])
				if udp.Checksum() == 0 || !encap.UDPChecksumValidV6(ip, udp, false) {
					t.Errorf("UDP checksum %#04x does not verify", udp.Checksum())
				}
			} else {
				ip := encap.IPv4(pkt)
				if ip.TOS() != tos || !ip.HeaderChecksumValid() || ip.TTL() != encap.OuterTTL {
					t.Errorf("TOS %#x, header checksum valid %v, TTL %d", ip.TOS(), ip.HeaderChecksumValid(), ip.TTL())
				}
			}
			got, m, ok := payloadOfFrame(f, tc.node.Is6(), false)
			if !ok || !bytes.Equal(got, payload) {
				t.Fatalf("payloadOfFrame: ok %v, payload %q", ok, got)
			}
			want := packetio.Meta{Remote: netip.AddrPortFrom(tc.node, encap.SourcePort(flow)), LocalPort: 8472, TOS: tos}
			if tc.node.Is6() {
				// The checksum verified summed the payload, and the
				// sum goes on for the inner check.
				want.Sum, want.HasSum = encap.Sum(payload, 0), true
			}
			if m != want {
				t.Errorf("meta %+v, want %+v", m, want)
			}
			// The other family's queue takes none of it.
			if _, _, ok := payloadOfFrame(f, !tc.node.Is6(), false); ok {
				t.Error("a frame of the other family accepted")
			}
			// Any byte flipped in the UDP part breaks an IPv6 frame's
			// checksum; an IPv4 frame carries none to break.
			bad := bytes.Clone(f)
			bad[len(bad)-1] ^= 0x40
			if _, _, ok := payloadOfFrame(bad, tc.node.Is6(), false); ok == tc.node.Is6() {
				t.Errorf("a changed payload accepted %v", ok)
			}
		})
	}

	t.Run("ipv6 refusals", func(t *testing.T) {
		h := pkttest.IPv6{Src: addr6B, Dst: addr6A}
		good := frame6(h, 40000, 8472, []byte("x"))
		if _, _, ok := payloadOfFrame(good, true, false); !ok {
			t.Fatal("a valid frame refused")
		}
		zero := bytes.Clone(good)
		binary.BigEndian.PutUint16(zero[ethLen+ip6Len+encap.UDPChecksumOffset:], 0)
		for name, f := range map[string][]byte{
			"zero checksum":      zero,
			"hop-by-hop options": frame6(pkttest.IPv6{Src: addr6B, Dst: addr6A, Ext: []pkttest.Ext{pkttest.HopByHop(1)}}, 40000, 8472, []byte("x")),
			"fragment":           frame6(pkttest.IPv6{Src: addr6B, Dst: addr6A, Ext: []pkttest.Ext{pkttest.Fragment(0, false, 9)}}, 40000, 8472, []byte("x")),
			"IPv4-mapped source": frame6(pkttest.IPv6{Src: netip.MustParseAddr("::ffff:192.0.2.2"), Dst: addr6A}, 40000, 8472, []byte("x")),
			"truncated":          good[:len(good)-1],
			"payload length lie": func() []byte {
				b := bytes.Clone(good)
				binary.BigEndian.PutUint16(b[ethLen+encap.IPv6PayloadLenOffset:], 200)
				return b
			}(),
		} {
			if _, _, ok := payloadOfFrame(f, true, true); ok {
				t.Errorf("%s accepted", name)
			}
		}
	})
}

// TestPartialChecksum: a checksum field holding only the pseudo-header
// sum, as a local Linux sender leaves it on a veth, is finished and taken
// where partialOK says the device is a veth, refused elsewhere.
func TestPartialChecksum(t *testing.T) {
	h := pkttest.IPv6{Src: addr6B, Dst: addr6A}
	f := frame6(h, 40000, 8472, []byte("left for the device to finish"))
	pkt := f[ethLen:]
	udpLen := len(pkt) - ip6Len
	partial := encap.Fold(encap.IPv6(pkt).PseudoHeaderSum(encap.ProtoUDP, udpLen))
	full := encap.UDP(pkt[ip6Len:]).Checksum()
	encap.UDP(pkt[ip6Len:]).SetChecksum(partial)
	if _, _, ok := payloadOfFrame(bytes.Clone(f), true, false); ok {
		t.Fatal("a partial checksum accepted on a device that finishes checksums")
	}
	got, _, ok := payloadOfFrame(f, true, true)
	if !ok || string(got) != "left for the device to finish" {
		t.Fatalf("partial checksum on a veth: ok %v, %q", ok, got)
	}
	if c := encap.UDP(pkt[ip6Len:]).Checksum(); c != full {
		t.Fatalf("finished checksum %#04x, want %#04x", c, full)
	}
	// A checksum that is neither right nor partial stays refused.
	encap.UDP(pkt[ip6Len:]).SetChecksum(full ^ 0x0100)
	if _, _, ok := payloadOfFrame(f, true, true); ok {
		t.Fatal("a wrong checksum accepted")
	}
}

// TestSendV6Fake sends over fake rings on an IPv6 underlay: the frame on
// the TX ring is Ethernet/IPv6/UDP to the next hop's MAC; an IPv4 or
// IPv4-mapped destination and an oversized payload are refused.
func TestSendV6Fake(t *testing.T) {
	q, k := newFakeQueue(t, 64, 2048)
	u := newUnderlay(Config{Device: "fake0", NodeIP: addr6A, Port: 8472})
	u.mac = macA
	u.mtu.Store(1500)
	u.nb = q.u.nb
	q.u = u
	u.nb.snap.Store(&neighSnap{m: map[netip.Addr]hop{addr6B: {mac: macB}}})

	payload := []byte("inner frame")
	maxPayload := make([]byte, 1500-encap.OuterV6Len)
	bufs := [][]byte{payload, payload, payload, maxPayload, append(maxPayload, 0)}
	meta := []packetio.Meta{
		{Remote: netip.AddrPortFrom(addr6B, 8472), Flow: 7, TOS: 0x02},
		{Remote: netip.AddrPortFrom(addrB, 8472), Flow: 7},
		{Remote: netip.MustParseAddrPort("[::ffff:192.0.2.2]:8472"), Flow: 7},
		{Remote: netip.AddrPortFrom(addr6B, 8472), Flow: 8},
		{Remote: netip.AddrPortFrom(addr6B, 8472), Flow: 9},
	}
	n, err := q.Send(bufs, meta, 0)
	if err != nil || n != 2 {
		t.Fatalf("Send accepted %d, %v; want 2", n, err)
	}
	if st := q.Stats(); st.TxInvalid != 3 || st.TxFrames != 2 {
		t.Fatalf("stats %+v: want 3 invalid, 2 sent", st)
	}
	idx, got := k.tx.peek(8)
	if got != 2 {
		t.Fatalf("%d frames on the TX ring", got)
	}
	for i, wantLen := range []int{len(payload), len(maxPayload)} {
		d := k.tx.desc(idx + uint32(i))
		f := k.umem[d.addr : d.addr+uint64(d.len)]
		if len(f) != ethLen+encap.OuterV6Len+wantLen {
			t.Fatalf("frame %d: %d bytes", i, len(f))
		}
		if eth := encap.Ethernet(f); eth.Destination() != macB || eth.EtherType() != encap.EtherTypeIPv6 {
			t.Fatalf("frame %d: Ethernet % x", i, f[:ethLen])
		}
		o, err := encap.ParseOuterV6(f[ethLen:], false)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if o.Src != addr6A || o.Dst != addr6B || o.DstPort != 8472 || o.PayloadLen != wantLen {
			t.Fatalf("frame %d: %+v", i, o)
		}
		if i == 0 && o.TrafficClass != 0x02 {
			t.Errorf("traffic class %#x, want 0x02", o.TrafficClass)
		}
	}
	k.tx.release()
}

// newPair6 is newPair with IPv6 addresses (2001:db8::1/64 on A's veth0,
// ::2 on B's veth1) and no duplicate address detection, so that they work
// at once, and no IPv4. A's veth0 has no link-local address
// (addrgenmode none), the case where the kernel cannot solicit for a
// netlink request (NTF_USE) and only the echo request of ndp_linux.go
// gets a neighbour resolved.
func newPair6(t *testing.T) pair {
	t.Helper()
	p := pair{a: newNetns(t), b: newNetns(t)}
	for _, ns := range []*nstest.Netns{p.a, p.b} {
		ipIn(t, ns, "link", "set", "lo", "up")
	}
	ipIn(t, p.a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", p.b.Name)
	ipIn(t, p.a, "link", "set", "veth0", "addrgenmode", "none")
	ipIn(t, p.a, "addr", "add", "2001:db8::1/64", "dev", "veth0", "nodad")
	ipIn(t, p.b, "addr", "add", "2001:db8::2/64", "dev", "veth1", "nodad")
	ipIn(t, p.a, "link", "set", "veth0", "up")
	ipIn(t, p.b, "link", "set", "veth1", "up")
	// B must be settled: while its link-local address is in duplicate
	// address detection it may leave a solicitation unanswered, and A's
	// kernel solicits again only after its retransmit timer (1 s), when
	// the packets that waited have expired.
	waitFor(t, 5*time.Second, "B's link-local address to leave duplicate address detection", func() bool {
		out := ipIn(t, p.b, "-6", "addr", "show", "dev", "veth1")
		return strings.Contains(out, "fe80:") && !strings.Contains(out, "tentative")
	})
	return p
}

// TestTrafficV6 runs an IPv6 underlay on a veth pair: datagrams from a
// kernel socket reach the queue with their traffic class; datagrams the
// queue sends reach a kernel socket (which verifies their UDP checksum)
// after the kernel resolved B through neighbour discovery; a datagram with
// a zero UDP checksum is dropped and counted; other traffic reaches the
// kernel.
func TestTrafficV6(t *testing.T) {
	needRoot(t)
	p := newPair6(t)
	u := openIn(t, p.a, Config{Device: "veth0", NodeIP: addr6A, Port: 8472})
	if shown, out := xdpShown(t, p.a, "veth0"); !shown || !strings.Contains(out, progName) {
		t.Fatalf("ip link does not show %s attached:\n%s", progName, out)
	}
	q := u.Queues()[0]
	closeAfter(t, u, 20*time.Second)
	node := netip.AddrPortFrom(addr6A, 8472)

	// Receive, with a traffic class set on the sending socket.
	const count, tclass = 50, 0xba // DSCP 46, ECT(0)
	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addr6B, 0))
	senderAddr := sender.LocalAddr().(*net.UDPAddr).AddrPort()
	if rc, err := sender.SyscallConn(); err == nil {
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tclass) })
		if serr != nil {
			t.Fatal(serr)
		}
	}
	other := udpConnIn(t, p.a, netip.AddrPortFrom(addr6A, 9999))
	type result struct {
		payloads [][]byte
		meta     []packetio.Meta
		err      error
	}
	rxDone := make(chan result, 1)
	go func() {
		var r result
		bufs, sizes := makeBufs(q.BatchSize())
		meta := make([]packetio.Meta, len(bufs))
		for len(r.payloads) < count {
			n, err := q.Receive(bufs, sizes, meta, headroom)
			if err != nil {
				r.err = err
				break
			}
			for i := 0; i < n; i++ {
				r.payloads = append(r.payloads, bytes.Clone(bufs[i][headroom:headroom+sizes[i]]))
				r.meta = append(r.meta, meta[i])
			}
		}
		rxDone <- r
	}()
	for i := range count {
		if _, err := sender.WriteToUDPAddrPort([]byte{'r', 'x', byte(i)}, node); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sender.WriteToUDPAddrPort([]byte("to the kernel"), netip.AddrPortFrom(addr6A, 9999)); err != nil {
		t.Fatal(err)
	}
	r := <-rxDone
	if r.err != nil {
		t.Fatalf("receive after %d payloads: %v (stats %+v)", len(r.payloads), r.err, u.Stats())
	}
	for i, m := range r.meta {
		want := packetio.Meta{Remote: senderAddr, LocalPort: 8472, TOS: tclass,
			Sum: encap.Sum([]byte{'r', 'x', byte(i)}, 0), HasSum: true}
		if m != want || !bytes.Equal(r.payloads[i], []byte{'r', 'x', byte(i)}) {
			t.Fatalf("payload %d %q, meta %+v; want %+v", i, r.payloads[i], m, want)
		}
	}
	other.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	if n, err := other.Read(buf); err != nil || string(buf[:n]) != "to the kernel" {
		t.Fatalf("kernel socket: %q %v", buf[:n], err)
	}

	// A zero UDP checksum: dropped by Receive, counted.
	before := u.Stats().RxDropped
	raw := rawUDP6In(t, p.b)
	dgram := make([]byte, encap.UDPLen+4)
	encap.UDP(dgram).Encode(40000, 8472, uint16(len(dgram)), 0)
	copy(dgram[encap.UDPLen:], "zero")
	if err := unix.Sendto(raw, dgram, 0, &unix.SockaddrInet6{Addr: addr6A.As16()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the zero-checksum datagram to be dropped", func() bool {
		bufs, sizes := makeBufs(1)
		meta := make([]packetio.Meta, 1)
		q.rxMu.Lock()
		n, _ := q.receive(bufs, sizes, meta, headroom)
		q.rxMu.Unlock()
		if n > 0 {
			t.Fatalf("zero-checksum datagram delivered: %q", bufs[0][headroom:headroom+sizes[0]])
		}
		return u.Stats().RxDropped > before
	})

	// Send: B is not in A's neighbour table (the entry its solicitation
	// left is flushed); the packets wait while the kernel is made to
	// solicit B, then go out with a checksum B's kernel accepts.
	ipIn(t, p.a, "-6", "neigh", "flush", "dev", "veth0")
	if out := ipIn(t, p.a, "-6", "neigh", "show", "dev", "veth0", "to", "2001:db8::2", "nud", "all"); strings.Contains(out, "lladdr") {
		t.Fatalf("B still resolved:\n%s", out)
	}
	rcv := udpConnIn(t, p.b, netip.AddrPortFrom(addr6B, 7777))
	var bufs [][]byte
	var meta []packetio.Meta
	for i := range count {
		bufs = append(bufs, []byte{'t', 'x', byte(i)})
		meta = append(meta, packetio.Meta{Remote: netip.AddrPortFrom(addr6B, 7777), Flow: uint32(i), TOS: 0x20})
	}
	if n, err := q.Send(bufs, meta, 0); err != nil || n != count {
		t.Fatalf("Send accepted %d of %d: %v", n, count, err)
	}
	sent := time.Now()
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range count {
		n, from, err := rcv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v (stats %+v)\nA: %s\nB: %s", i, count, err, u.Stats(), ipIn(t, p.a, "-6", "neigh", "show", "nud", "all"), ipIn(t, p.b, "-6", "neigh", "show", "nud", "all"))
		}
		if from.Addr() != addr6A || from.Port() < encap.SourcePortMin || !bytes.Equal(buf[:n], []byte{'t', 'x', byte(i)}) {
			t.Fatalf("datagram %d: %q from %v", i, buf[:n], from)
		}
	}
	t.Logf("resolved and received after %v", time.Since(sent))
	st := u.Stats()
	if st.ArpRequests == 0 || st.ArpQueued == 0 || st.ArpFlushed == 0 || st.TxFrames != count {
		t.Fatalf("stats %+v: want the packets to have waited for NDP and been sent", st)
	}
	if out := ipIn(t, p.a, "-6", "neigh", "show", "dev", "veth0"); !strings.Contains(out, "2001:db8::2") {
		t.Fatalf("no neighbour entry for B:\n%s", out)
	}
	quietAudit(t, u)
}

// rawUDP6In opens a raw IPv6 socket for UDP in ns: what it sends goes out
// with the UDP header as written, a zero checksum included.
func rawUDP6In(t *testing.T, ns *nstest.Netns) int {
	t.Helper()
	fd := -1
	inNetns(t, ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestNextHopsV6: over IPv6 a destination behind a gateway goes to the
// gateway's MAC, resolved through NDP; destinations routed through
// another device or not at all are dropped as TxNoRoute.
func TestNextHopsV6(t *testing.T) {
	needRoot(t)
	p := newPair6(t)
	ipIn(t, p.a, "-6", "route", "add", "2001:db8:99::/64", "via", "2001:db8::2", "dev", "veth0")
	ipIn(t, p.a, "link", "add", "veth2", "type", "veth", "peer", "name", "veth3")
	ipIn(t, p.a, "addr", "add", "2001:db8:9::1/64", "dev", "veth2", "nodad")
	ipIn(t, p.a, "link", "set", "veth2", "up")
	ipIn(t, p.a, "link", "set", "veth3", "up")
	var macOfB [6]byte
	inNetns(t, p.b, func() error {
		ifi, err := net.InterfaceByName("veth1")
		if err == nil {
			macOfB = [6]byte(ifi.HardwareAddr)
		}
		return err
	})
	u := openIn(t, p.a, Config{Device: "veth0", NodeIP: addr6A, Port: 8472})
	q := u.Queues()[0]
	capt, err := nstest.StartCapture(p.b, "veth1")
	if err != nil {
		t.Fatal(err)
	}
	far := netip.MustParseAddrPort("[2001:db8:99::5]:7777")
	if n, err := q.Send([][]byte{[]byte("via the gateway")}, []packetio.Meta{{Remote: far, Flow: 1}}, 0); n != 1 || err != nil {
		t.Fatalf("Send: %d, %v", n, err)
	}
	waitFor(t, 5*time.Second, "the packet through the gateway", func() bool { return u.Stats().TxCompleted == 1 })
	var seen bool
	for _, f := range capt.Stop() {
		if len(f) < ethLen+encap.OuterV6Len || encap.Ethernet(f).EtherType() != encap.EtherTypeIPv6 {
			continue
		}
		o, err := encap.ParseOuterV6(f[ethLen:], false)
		if err == nil && o.Dst == far.Addr() && o.DstPort == far.Port() {
			seen = true
			if d := encap.Ethernet(f).Destination(); d != macOfB {
				t.Errorf("sent to %v, want the gateway's %v", d, encap.MAC(macOfB))
			}
		}
	}
	if !seen {
		t.Fatal("the packet through the gateway did not reach it")
	}

	for _, dst := range []string{"[2001:db8:9::5]:7777", "[2001:db8:77::1]:7777"} {
		m := []packetio.Meta{{Remote: netip.MustParseAddrPort(dst)}}
		if _, err := q.Send([][]byte{[]byte("nowhere")}, m, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Second, "both to count as no route", func() bool { return u.Stats().TxNoRoute == 2 })
	if st := u.Stats(); st.TxFrames != 1 || st.TxNoNeighbour != 0 {
		t.Fatalf("stats %+v", st)
	}
	quietAudit(t, u)
}

// TestAllocsV6: on an IPv6 underlay too, Send (checksum included) and
// Receive (checksum check, and finishing the partial checksums a local
// sender leaves on a veth) allocate nothing in steady state.
func TestAllocsV6(t *testing.T) {
	needRoot(t)
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p := newPair6(t)
	u := openIn(t, p.a, Config{Device: "veth0", NodeIP: addr6A, Port: 8472})
	q := u.Queues()[0]
	closeAfter(t, u, 30*time.Second)
	to := netip.AddrPortFrom(addr6B, 7777)
	udpConnIn(t, p.b, to)

	one := [][]byte{make([]byte, 100)}
	oneMeta := []packetio.Meta{{Remote: to, Flow: 3, TOS: 0x02}}
	if n, err := q.Send(one, oneMeta, 0); err != nil || n != 1 {
		t.Fatalf("prime: %d, %v", n, err)
	}
	waitFor(t, 2*time.Second, "B to be resolved", func() bool { return u.Stats().TxCompleted == 1 })
	const runs = 300
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := q.Send(one, oneMeta, 0); err != nil || n != 1 {
			t.Fatalf("send: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Send: %v allocations per call", a)
	}
	batch := make([][]byte, 32)
	batchMeta := make([]packetio.Meta, 32)
	for i := range batch {
		batch[i] = make([]byte, 1400)
		batchMeta[i] = packetio.Meta{Remote: to, Flow: uint32(i)}
	}
	if a := testing.AllocsPerRun(runs/10, func() {
		if n, err := q.Send(batch, batchMeta, 0); err != nil || n != len(batch) {
			t.Fatalf("send: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Send of 32: %v allocations per call", a)
	}

	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addr6B, 0))
	for i := range runs + 1 {
		if _, err := sender.WriteToUDPAddrPort([]byte{'a', byte(i)}, netip.AddrPortFrom(addr6A, 8472)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the RX ring to fill", func() bool {
		return atomic.LoadUint32(q.x.rx.producer)-atomic.LoadUint32(q.x.rx.consumer) >= runs+1
	})
	bufs, sizes := makeBufs(1)
	meta := make([]packetio.Meta, 1)
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := q.Receive(bufs, sizes, meta, headroom); err != nil || n != 1 {
			t.Fatalf("receive: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Receive: %v allocations per call", a)
	}
}

// TestThroughputV6 measures, in bounded loops, how fast one queue sends on
// an IPv6 underlay (each packet's UDP checksum computed), for small and
// full-size payloads. It asserts nothing but that traffic flowed; compare
// with TestThroughput's IPv4 figure.
func TestThroughputV6(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("short")
	}
	p := newPair6(t)
	u := openIn(t, p.a, Config{Device: "veth0", NodeIP: addr6A, Port: 8472})
	q := u.Queues()[0]
	closeAfter(t, u, 30*time.Second)
	to := netip.AddrPortFrom(addr6B, 7777)
	udpConnIn(t, p.b, to)
	for _, size := range []int{64, 1400} {
		bufs := make([][]byte, 64)
		meta := make([]packetio.Meta, len(bufs))
		for i := range bufs {
			bufs[i] = make([]byte, size)
			meta[i] = packetio.Meta{Remote: to, Flow: uint32(i)}
		}
		if _, err := q.Send(bufs[:1], meta[:1], 0); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "B to be resolved", func() bool { return u.Stats().TxCompleted > 0 })
		start := time.Now()
		sent := 0
		for sent < 500_000 && time.Since(start) < 2*time.Second {
			n, err := q.Send(bufs, meta, 0)
			if err != nil {
				t.Fatal(err)
			}
			sent += n
		}
		el := time.Since(start)
		t.Logf("TX %d-byte payloads: %d packets in %v: %.0f packets/s", size, sent, el.Round(time.Millisecond), float64(sent)/el.Seconds())
		if sent == 0 {
			t.Fatal("nothing sent")
		}
	}
	quietAudit(t, u)
}

// A payload sent with its sum (Meta.HasSum, from an inner checksum vxdp
// wrote) gets the same outer checksum as one summed the long way; over
// IPv4, which carries no outer checksum, the sum changes nothing.
func TestOuterChecksumFromHeaders(t *testing.T) {
	inner := pkttest.IPv6{Src: netip.MustParseAddr("fd00:1:1::10"), Dst: netip.MustParseAddr("fd00:1:2::10")}.
		TCP(pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: pkttest.ACK, Window: 512}, []byte("segment data, 29 bytes long."))
	payload := pkttest.VXLAN(1000, pkttest.Ethernet(macB, macA, encap.EtherTypeIPv6, inner))
	sum, ok := encap.PayloadSum(payload, encap.VXLANLen+encap.EthernetLen)
	if !ok {
		t.Fatal("no sum from the headers")
	}
	for _, node := range []netip.Addr{addr6A, addrA} {
		peer := addr6B
		if node.Is4() {
			peer = addrB
		}
		u := newUnderlay(Config{Device: "fake0", NodeIP: node, Port: 8472})
		long, short := make([]byte, 2048), make([]byte, 2048)
		dst := netip.AddrPortFrom(peer, 8472)
		n1 := u.writeOuter(long, payload, dst, &packetio.Meta{Flow: 7, TOS: 0x28})
		n2 := u.writeOuter(short, payload, dst, &packetio.Meta{Flow: 7, TOS: 0x28, Sum: sum, HasSum: true})
		if n1 != n2 || !bytes.Equal(long[:n1], short[:n2]) {
			t.Fatalf("%v: frames differ\n% x\n% x", node, long[:u.outerLen], short[:u.outerLen])
		}
		if node.Is6() {
			if _, err := encap.ParseOuterV6(short[:n2], false); err != nil {
				t.Fatalf("the frame does not verify: %v", err)
			}
		}
	}
}
