package dataplane

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// fzWrite is one packet a worker handed to a device or underlay, exactly
// as handed: the slice still aliases the worker's buffer, so the checks
// can tell which buffer it came from and where in it it lies.
type fzWrite struct {
	dev    *fzDevice
	pkt    []byte
	offset int
	meta   packetio.Meta // underlay sends
}

// fzDevice records what the engine writes to it. Its Read reports a closed
// device at once, so the workers the engine itself spawns for endpoints
// end immediately and the fuzz target drives its own workers alone.
type fzDevice struct {
	name string
	kind string // "underlay", "host" or "pod"
	log  *fzLog
}

// fzLog collects the writes of every device of one engine.
type fzLog struct {
	mu     sync.Mutex
	writes []fzWrite
}

func (d *fzDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) { return 0, net.ErrClosed }
func (d *fzDevice) BatchSize() int                                           { return 4 }
func (d *fzDevice) Name() string                                             { return d.name }
func (d *fzDevice) Close() error                                             { return nil }

func (d *fzDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.log.mu.Lock()
	defer d.log.mu.Unlock()
	for _, b := range bufs {
		d.log.writes = append(d.log.writes, fzWrite{dev: d, pkt: b, offset: offset})
	}
	return len(bufs), nil
}

// fzUnderlay records what the engine sends through it; like fzDevice it
// has nothing to receive.
type fzUnderlay struct{ fzDevice }

func (u *fzUnderlay) Receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	return 0, net.ErrClosed
}
func (u *fzUnderlay) SourcePort(flow uint32) uint16 { return encap.SourcePort(flow) }
func (u *fzUnderlay) SourcePorts() packetio.SourcePorts {
	return packetio.SourcePorts{Count: 1 << 14, Min: encap.SourcePortMin, Max: encap.SourcePortMax}
}

func (u *fzUnderlay) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	u.log.mu.Lock()
	defer u.log.mu.Unlock()
	for i, b := range bufs {
		u.log.writes = append(u.log.writes, fzWrite{dev: &u.fzDevice, pkt: b, offset: offset, meta: meta[i]})
	}
	return len(bufs), nil
}

func (l *fzLog) take() []fzWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

// The fuzz node: 192.0.2.1 with pods 10.1.1.10 and 2001:db8:1:1::10
// (identity 1000) and 10.1.1.11 and 2001:db8:1:1::11 (which admits
// identity 1000 only), a peer node 192.0.2.2 with 10.1.2.0/24 and
// 2001:db8:1:2::/64, and a VTEP 192.0.2.36 standing for 10.9.1.0/24.
var (
	fzPodA6     = netip.MustParseAddr("2001:db8:1:1::10")
	fzPodB6     = netip.MustParseAddr("2001:db8:1:1::11")
	fzPeerPod6  = netip.MustParseAddr("2001:db8:1:2::20")
	fzHost6     = netip.MustParseAddr("2001:db8:1:1::1")
	fzPeerHost6 = netip.MustParseAddr("2001:db8:1:2::1")

	fzNodeIP   = netip.MustParseAddr("192.0.2.1")
	fzPeerIP   = netip.MustParseAddr("192.0.2.2")
	fzVTEPIP   = netip.MustParseAddr("192.0.2.36")
	fzVTEPMAC  = encap.MAC{0x82, 0x36, 0x4c, 0x98, 0x2e, 0x56}
	fzVTEPCIDR = netip.MustParsePrefix("10.9.1.0/24")
	fzPodA     = netip.MustParseAddr("10.1.1.10")
	fzPodB     = netip.MustParseAddr("10.1.1.11")
	fzPeerPod  = netip.MustParseAddr("10.1.2.20")
	fzVTEPHost = netip.MustParseAddr("10.9.1.236")
)

type fzRig struct {
	e       *Engine
	log     *fzLog
	workers []*worker
	names   []string
}

func newFuzzRig(tb testing.TB) *fzRig {
	tb.Helper()
	log := &fzLog{}
	newDev := func(name, kind string) *fzDevice { return &fzDevice{name: name, kind: kind, log: log} }
	pods := map[string]*fzDevice{}
	e, err := New(Config{
		NodeIP:       fzNodeIP,
		PodCIDR:      netip.MustParsePrefix("10.1.1.0/24"),
		PodCIDR6:     netip.MustParsePrefix("2001:db8:1:1::/64"),
		ClusterCIDR:  netip.MustParsePrefix("10.1.0.0/16"),
		ClusterCIDR6: netip.MustParsePrefix("2001:db8:1::/48"),
		TunnelPort:   encap.VXLANPort, UnderlayMTU: 1500,
	}, nil,
		// Two underlay queues, so that the flow hash picks between them.
		[]packetio.Underlay{&fzUnderlay{*newDev("u0", "underlay")}, &fzUnderlay{*newDev("u1", "underlay")}},
		newDev("vxdp_host", "host"),
		func(s EndpointSpec, mtu int) (packetio.Device, error) {
			d := newDev(s.Name, "pod")
			pods[s.Name] = d
			return d, nil
		}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	steps := []error{
		e.AddNode(NodeSpec{Name: "peer", IP: fzPeerIP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:2::/64")}),
		e.AddEndpoint(EndpointSpec{Name: "a", IP: fzPodA, IP6: fzPodA6, Identity: 1000}),
		// A policy, so that policy_denied is one of the outcomes.
		e.AddEndpoint(EndpointSpec{Name: "b", IP: fzPodB, IP6: fzPodB6, AllowFrom: []identity.ID{1000}}),
		e.SetVTEPs([]VTEPSpec{{CIDR: fzVTEPCIDR, Endpoint: fzVTEPIP, MAC: fzVTEPMAC}}),
	}
	for _, err := range steps {
		if err != nil {
			tb.Fatal(err)
		}
	}
	r := &fzRig{e: e, log: log}
	var st [3]DeviceStats
	r.workers = []*worker{
		newWorker(e, nil, e.underlays[0].dev, &st[0], sourceUnderlay, nil),
		newWorker(e, e.endpoints["a"].dev, nil, &st[1], sourcePod, e.endpoints["a"]),
		newWorker(e, e.host, nil, &st[2], sourceHost, nil),
	}
	r.names = []string{"underlay", "pod a", "host"}
	return r
}

func (r *fzRig) totalDrops() uint64 {
	var n uint64
	for i := range r.e.drops {
		n += r.e.drops[i].Load()
	}
	return n
}

// fzSenders are who an underlay input comes from, chosen by its first
// byte: the peer, the VTEP, a stranger, the peer to the VTEP port.
var fzSenders = [...]packetio.Meta{
	{Remote: netip.AddrPortFrom(fzPeerIP, 50000), LocalPort: encap.VXLANPort},
	{Remote: netip.AddrPortFrom(fzVTEPIP, 40000), LocalPort: encap.VXLANPort},
	{Remote: netip.MustParseAddrPort("192.0.2.99:50000"), LocalPort: encap.VXLANPort},
	{Remote: netip.AddrPortFrom(fzPeerIP, 50000), LocalPort: 4789},
}

// load puts an input into worker w's first buffer as one packet read: for
// the underlay worker the first byte picks the sender (fzSenders, its low
// two bits) and the outer ECN field (the next two), and the rest is the
// payload; the others read the whole input.
func (w *worker) load(pkt []byte) int {
	if w.under != nil {
		w.meta[0] = fzSenders[0]
		if len(pkt) > 0 {
			w.meta[0] = fzSenders[int(pkt[0])%len(fzSenders)]
			w.meta[0].TOS = pkt[0] >> 2 & 0b11
			pkt = pkt[1:]
		}
	}
	size := copy(w.bufs[0][encap.Headroom:], pkt)
	w.sizes[0] = size
	return size
}

// run feeds pkt to worker wi as a single packet read from its device and
// checks everything the worker wrote.
func (r *fzRig) run(t *testing.T, wi int, pkt []byte) {
	w := r.workers[wi]
	size := w.load(pkt)
	r.log.take()
	dropsBefore := r.totalDrops()
	icmpsBefore := r.e.icmps.Load()

	w.process(1)

	drops := r.totalDrops() - dropsBefore
	icmps := r.e.icmps.Load() - icmpsBefore
	writes := r.log.take()
	forwarded := 0
	for _, wr := range writes {
		if r.checkWrite(t, w, wr, size) {
			forwarded++
		}
	}
	// The packet path's own rule: each packet is either sent on (once) or
	// counted as exactly one drop, never both, never neither. An ICMP error
	// is the one extra packet a drop may cause.
	if drops+uint64(forwarded) != 1 {
		t.Fatalf("%s: %d drops and %d forwarded packets for one packet read", r.names[wi], drops, forwarded)
	}
	if uint64(len(writes)-forwarded) != icmps {
		t.Fatalf("%s: %d packets from scratch buffers, %d ICMP errors counted", r.names[wi], len(writes)-forwarded, icmps)
	}
	if icmps > 0 && drops == 0 {
		t.Fatalf("%s: an ICMP error for a packet that was not dropped", r.names[wi])
	}
	if w.nqueues != 0 || w.nscratch != 0 {
		t.Fatalf("%s: worker state left after the batch: %d queues, %d scratch", r.names[wi], w.nqueues, w.nscratch)
	}
}

// owner finds the buffer b was sliced from and b's offset in it, or
// returns nil.
func owner(b []byte, bufs [][]byte) ([]byte, int) {
	if len(b) == 0 {
		return nil, 0
	}
	for _, o := range bufs {
		start := cap(o) - cap(b)
		if start < 0 || start >= len(o) {
			continue
		}
		if &o[start] == &b[0] {
			return o, start
		}
	}
	return nil, 0
}

// checkWrite checks one written packet and reports whether it came from
// the buffer the packet was read into (as opposed to a scratch buffer
// holding an ICMP error the worker made).
func (r *fzRig) checkWrite(t *testing.T, w *worker, wr fzWrite, size int) bool {
	t.Helper()
	if want := linkRoom; wr.dev.kind == "underlay" && wr.offset != 0 || wr.dev.kind != "underlay" && wr.offset != want || wr.offset > len(wr.pkt) {
		t.Fatalf("write to %s with offset %d for %d bytes", wr.dev.name, wr.offset, len(wr.pkt))
	}
	pkt := wr.pkt[wr.offset:]
	fromRead := true
	o, start := owner(wr.pkt, w.bufs[:1])
	if o == nil {
		o, start = owner(wr.pkt, w.scratch)
		fromRead = false
	}
	if o == nil {
		t.Fatalf("write to %s of %d bytes lies in no buffer of the worker", wr.dev.name, len(wr.pkt))
	}
	end := start + len(wr.pkt)
	if end > len(o) {
		t.Fatalf("write to %s runs to %d, past its buffer of %d", wr.dev.name, end, len(o))
	}
	if fromRead && end > encap.Headroom+size {
		// Headers may be written in front of the packet read, but nothing
		// behind it may go out: those bytes are left over from earlier
		// packets.
		t.Fatalf("write to %s ends at %d, %d bytes past the %d-byte packet read", wr.dev.name, end, end-encap.Headroom-size, size)
	}
	switch wr.dev.kind {
	case "pod", "host":
		dst := fzCheckIP(t, wr.dev.name, pkt, fromRead)
		// RFC 6040: what leaves a tunnel that was marked CE is CE.
		if w.under != nil && fromRead && encap.ECNOf(w.meta[0].TOS) == encap.ECNCE && fzECN(pkt) != encap.ECNCE {
			t.Fatalf("outer CE, delivered to %s with ECN %v", wr.dev.name, fzECN(pkt))
		}
		if wr.dev.kind == "pod" {
			if ep := r.e.endpoints[wr.dev.name]; ep == nil || dst != ep.IP && dst != ep.IP6 {
				t.Fatalf("packet for %s written to pod %s", dst, wr.dev.name)
			}
		}
	case "underlay":
		fzCheckTunnel(t, wr.dev.name, pkt, wr.meta, fromRead)
	default:
		t.Fatalf("write to unknown device %s", wr.dev.name)
	}
	return fromRead
}

// fzCheckIP checks a packet written to a device: a valid IPv4 or IPv6
// packet of its length and, when the worker made it, an ICMP or ICMPv6
// error. It returns the destination.
func fzCheckIP(t *testing.T, dev string, pkt []byte, fromRead bool) netip.Addr {
	t.Helper()
	if encap.IPVersion(pkt) == encap.IPv6Version {
		ip := encap.IPv6(pkt)
		if !ip.IsValid(len(pkt)) || ip.TotalLen() != len(pkt) {
			t.Fatalf("write to %s is not a valid IPv6 packet of its length: % x", dev, pkt[:min(len(pkt), 40)])
		}
		if !fromRead {
			fzCheckICMPv6Error(t, dev, ip)
		}
		return ip.DestinationAddr()
	}
	ip := encap.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.TotalLen() != len(pkt) {
		t.Fatalf("write to %s is not a valid IPv4 packet of its length: % x", dev, pkt[:min(len(pkt), 40)])
	}
	if !fromRead {
		fzCheckICMPError(t, dev, ip)
	}
	return ip.DestinationAddr()
}

// fzECN is the ECN field of an IPv4 or IPv6 packet.
func fzECN(pkt []byte) encap.ECN {
	if encap.IPVersion(pkt) == encap.IPv6Version {
		return encap.IPv6(pkt).ECN()
	}
	return encap.IPv4(pkt).ECN()
}

// fzCheckICMPv6Error checks an ICMPv6 error the worker made: from the
// host's IPv6 address, a valid checksum, an error type, at most the IPv6
// minimum MTU, quoting a packet that was allowed an answer.
func fzCheckICMPv6Error(t *testing.T, dev string, ip encap.IPv6) {
	t.Helper()
	if ip.NextHeader() != encap.ProtoICMPv6 || len(ip) < encap.IPv6Len+encap.ICMPv6Len || len(ip) > encap.IPv6MinMTU ||
		!encap.ICMPv6ChecksumValid(ip, encap.ICMPv6(ip.Payload())) || ip.SourceAddr() != fzHost6 {
		t.Fatalf("ICMPv6 error to %s malformed: % x", dev, ip[:min(len(ip), 48)])
	}
	ic := encap.ICMPv6(ip.Payload())
	if !encap.IsICMPv6Error(ic.Type()) {
		t.Fatalf("ICMPv6 message type %d to %s is not an error", ic.Type(), dev)
	}
	if q := ic.InvokingPacket(); len(q) < encap.IPv6Len || encap.IPv6(q).SourceAddr() != ip.DestinationAddr() {
		t.Fatalf("ICMPv6 error to %s quotes % x", ip.DestinationAddr(), q[:min(len(q), 40)])
	}
}

// fzCheckICMPError checks an error the worker made: correct checksums, and
// sent from the host address.
func fzCheckICMPError(t *testing.T, dev string, ip encap.IPv4) {
	t.Helper()
	if ip.Protocol() != encap.ProtoICMP || !ip.HeaderChecksumValid() || encap.Checksum(ip.Payload(), 0) != 0 {
		t.Fatalf("ICMP error to %s malformed: % x", dev, ip[:min(len(ip), 40)])
	}
	if !encap.IsICMPv4Error(ip.Payload()[0]) {
		t.Fatalf("ICMP message type %d to %s is not an error", ip.Payload()[0], dev)
	}
}

// fzCheckTunnel checks a tunnel payload the node sends: a known peer or
// VTEP at its tunnel port as destination, a VXLAN header whose VNI names a
// valid identity (2 for a VTEP), and a consistent inner frame.
func fzCheckTunnel(t *testing.T, dev string, pkt []byte, m packetio.Meta, fromRead bool) {
	t.Helper()
	if m.Remote.Port() != encap.VXLANPort {
		t.Fatalf("tunnel payload on %s to %v", dev, m.Remote)
	}
	vx := encap.VXLAN(pkt)
	if len(vx) < encap.VXLANLen+encap.EthernetLen || vx.Validate(0) != nil {
		t.Fatalf("tunnel payload on %s: bad VXLAN header % x", dev, []byte(vx[:min(len(vx), 8)]))
	}
	if _, err := identity.FromVNI(vx.VNI()); err != nil {
		t.Fatalf("tunnel payload on %s with VNI %d", dev, vx.VNI())
	}
	dst := m.Remote.Addr()
	switch dst {
	case fzPeerIP:
	case fzVTEPIP:
		if vx.VNI() != uint32(identity.World) {
			t.Fatalf("VNI %d to a VTEP", vx.VNI())
		}
	default:
		t.Fatalf("tunnel payload on %s to unknown %s", dev, dst)
	}
	eth := encap.Ethernet(vx[encap.VXLANLen:])
	if eth.Source() != encap.TunnelMAC(fzNodeIP) {
		t.Fatalf("inner source MAC %s is not ours", eth.Source())
	}
	inner := eth[encap.EthernetLen:]
	switch eth.EtherType() {
	case encap.EtherTypeIPv4:
		ip := encap.IPv4(inner)
		if !ip.IsValid(len(inner)) || ip.TotalLen() != len(inner) {
			t.Fatalf("inner packet on %s not valid IPv4 of its length", dev)
		}
		if ip.TotalLen() > 1450 {
			t.Fatalf("inner packet of %d bytes exceeds the tunnel MTU", ip.TotalLen())
		}
		if !fromRead {
			fzCheckICMPError(t, dev, ip)
		}
	case encap.EtherTypeIPv6:
		ip := encap.IPv6(inner)
		if dst != fzPeerIP || !ip.IsValid(len(inner)) || ip.TotalLen() != len(inner) {
			t.Fatalf("inner IPv6 packet on %s to %s not valid of its length", dev, dst)
		}
		if ip.TotalLen() > 1450 {
			t.Fatalf("inner packet of %d bytes exceeds the tunnel MTU", ip.TotalLen())
		}
		if !fromRead {
			fzCheckICMPv6Error(t, dev, ip)
		}
	case encap.EtherTypeARP:
		a := encap.ARP(inner)
		if dst != fzVTEPIP || len(inner) != encap.ARPLen || !a.IsValid() || a.Operation() != encap.ARPReply {
			t.Fatalf("ARP on %s to %s malformed: % x", dev, dst, []byte(inner))
		}
		if a.SenderMAC() != encap.TunnelMAC(fzNodeIP) || (a.SenderIP() != fzPodA && a.SenderIP() != fzPodB) || !fzVTEPCIDR.Contains(a.TargetIP()) {
			t.Fatalf("ARP reply says %s is at %s, to %s", a.SenderIP(), a.SenderMAC(), a.TargetIP())
		}
	default:
		t.Fatalf("inner ethertype %#x sent on %s", eth.EtherType(), dev)
	}
}

// fzUDP builds an IPv4/UDP packet with correct checksums.
func fzUDP(src, dst netip.Addr, dport uint16, ttl uint8, df bool, payloadLen int) []byte {
	payload := make([]byte, payloadLen)
	for i := range payload {
		payload[i] = byte(encap.IPv4MinLen + encap.UDPLen + i)
	}
	return pkttest.IPv4{Src: src, Dst: dst, TTL: ttl, DF: df, ID: 0x4242}.UDP(40000, dport, payload)
}

// fzFromPeer wraps inner as the peer node sends it to us: the sender
// byte (fzSenders) and the VXLAN payload.
func fzFromPeer(vni uint32, inner []byte) []byte {
	et := uint16(encap.EtherTypeIPv4)
	if encap.IPVersion(inner) == encap.IPv6Version {
		et = encap.EtherTypeIPv6
	}
	frame := pkttest.Ethernet(encap.TunnelMAC(fzNodeIP), encap.TunnelMAC(fzPeerIP), et, inner)
	return append([]byte{0}, pkttest.VXLAN(vni, frame)...)
}

// fzCE marks an underlay input (its sender byte) as arriving with an
// outer CE.
func fzCE(in []byte) []byte {
	in[0] |= uint8(encap.ECNCE) << 2
	return in
}

// fzECT makes an IPv4 or IPv6 packet ECN-capable: ECT(0).
func fzECT(pkt []byte) []byte {
	if encap.IPVersion(pkt) == encap.IPv6Version {
		encap.IPv6(pkt).SetECN(encap.ECNECT0)
	} else {
		encap.IPv4(pkt).SetECN(encap.ECNECT0)
	}
	return pkt
}

// fzUDP6 builds an IPv6/UDP packet with a correct checksum behind the
// extension headers ext.
func fzUDP6(src, dst netip.Addr, dport uint16, hopLimit uint8, payloadLen int, ext ...pkttest.Ext) []byte {
	payload := make([]byte, payloadLen)
	for i := range payload {
		payload[i] = byte(encap.IPv6Len + encap.UDPLen + i)
	}
	return pkttest.IPv6{Src: src, Dst: dst, HopLimit: hopLimit, Ext: ext}.UDP(40000, dport, payload)
}

// fzIPv6Seeds are IPv6 inputs for every worker: from the peer (the sender
// byte first) and from a pod or the host.
func fzIPv6Seeds() [][]byte {
	hole := netip.MustParseAddr("2001:db8:1:9::9")
	frag := pkttest.IPv6{Src: fzPodA6, Dst: fzPeerPod6, Ext: []pkttest.Ext{pkttest.Fragment(1232, false, 7)}}.Packet(encap.ProtoUDP, make([]byte, 64))
	many := make([]pkttest.Ext, 9)
	for i := range many {
		many[i] = pkttest.DestOpts(1)
	}
	icmpErr := make([]byte, encap.ICMPv6ErrorMaxLen)
	icmpErr = icmpErr[:encap.BuildICMPv6Error(icmpErr, encap.IPv6(fzUDP6(fzPeerPod6, fzPodA6, 1, 64, 8)), fzPodA6.As16(), encap.ICMPv6DestUnreach, 4, 0)]
	return [][]byte{
		// From the peer: delivered, policy-denied, for the host, for a
		// missing endpoint, spoofed, hop limit running out, behind
		// extension headers, a later fragment, too many headers.
		fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 32)),
		fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodB6, 5201, 64, 32)),
		fzFromPeer(uint32(identity.RemoteNode), fzUDP6(fzPeerHost6, fzHost6, 53, 64, 8)),
		fzFromPeer(2000, fzUDP6(fzPeerPod6, netip.MustParseAddr("2001:db8:1:1::99"), 5201, 64, 8)),
		fzFromPeer(2000, fzUDP6(hole, fzPodA6, 5201, 64, 8)),
		fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodA6, 5201, 1, 8)),
		fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 8, pkttest.HopByHop(1), pkttest.DestOpts(2), pkttest.Fragment(0, true, 3))),
		fzFromPeer(2000, pkttest.IPv6{Src: fzPeerPod6, Dst: fzPodA6, Ext: []pkttest.Ext{pkttest.Fragment(8, false, 3)}}.Packet(encap.ProtoUDP, make([]byte, 16))),
		fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 8, many...)),
		// From pod a: across the tunnel, to the other pod, to the world,
		// into a hole, too big, hop limit 1, spoofed, link-local,
		// multicast, an ICMPv6 error, a later fragment, behind headers.
		fzUDP6(fzPodA6, fzPeerPod6, 5201, 64, 100),
		fzUDP6(fzPodA6, fzPodB6, 5201, 64, 100),
		fzUDP6(fzPodA6, netip.MustParseAddr("2001:db8:ee::1"), 53, 64, 30),
		fzUDP6(fzPodA6, hole, 5201, 64, 10),
		fzUDP6(fzPodA6, fzPeerPod6, 5201, 64, 1460-48),
		fzUDP6(fzPodA6, fzPeerPod6, 5201, 1, 10),
		fzUDP6(fzPodB6, fzPeerPod6, 5201, 64, 10),
		fzUDP6(netip.MustParseAddr("fe80::1"), fzPeerPod6, 5201, 64, 10),
		pkttest.IPv6{Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::2"), HopLimit: 255}.ICMPv6(133, 0, make([]byte, 4)),
		icmpErr,
		frag,
		fzUDP6(fzPodA6, fzPeerPod6, 5201, 64, 10, pkttest.DestOpts(1), pkttest.Fragment(0, true, 4)),
		// From the host: the node itself and the world.
		fzUDP6(fzHost6, fzPeerPod6, 5201, 64, 10),
		fzUDP6(netip.MustParseAddr("2001:db8:ee::7"), fzPodA6, 5201, 64, 10),
		{0x60},
		make([]byte, 40),
	}
}

// fzFromVTEP wraps an Ethernet frame the way the VTEP's Linux vxlan
// device sends it.
func fzFromVTEP(vni uint32, frame []byte) []byte {
	return append([]byte{1}, pkttest.VXLAN(vni, frame)...)
}

func fzARPRequest(target netip.Addr) []byte {
	f := make([]byte, encap.EthernetLen+encap.ARPLen)
	encap.Ethernet(f).Encode(encap.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, fzVTEPMAC, encap.EtherTypeARP)
	encap.ARP(f[encap.EthernetLen:]).EncodeRequest(fzVTEPMAC, fzVTEPHost.As4(), target.As4())
	return f
}

func fzVTEPIPv4(dst netip.Addr) []byte {
	return pkttest.Ethernet(encap.TunnelMAC(fzNodeIP), fzVTEPMAC, encap.EtherTypeIPv4, fzUDP(fzVTEPHost, dst, 5201, 64, false, 16))
}

func fzMutate(b []byte, f func(b []byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

// FuzzReceivePath feeds each input, as one packet, to the underlay worker,
// a pod's worker and the host worker of an engine on recording devices.
// Nothing may panic; every packet written must lie inside the worker's
// buffers and within the bytes read, pod and host devices only ever get
// valid IPv4, tunnel packets are well-formed, and every packet read is
// either forwarded once or counted as exactly one drop.
func FuzzReceivePath(f *testing.F) {
	// From the peer node: delivered, policy-denied, for the host, for a
	// missing endpoint, spoofed inner source, TTL running out.
	good := fzFromPeer(2000, fzUDP(fzPeerPod, fzPodA, 5201, 64, false, 32))
	seeds := [][]byte{
		good,
		fzFromPeer(2000, fzUDP(fzPeerPod, fzPodB, 5201, 64, false, 32)),
		fzFromPeer(uint32(identity.RemoteNode), fzUDP(fzPeerIP, netip.MustParseAddr("10.1.1.1"), 53, 64, false, 8)),
		fzFromPeer(2000, fzUDP(fzPeerPod, netip.MustParseAddr("10.1.1.99"), 5201, 64, false, 8)),
		fzFromPeer(2000, fzUDP(netip.MustParseAddr("10.1.9.9"), fzPodA, 5201, 64, false, 8)),
		fzFromPeer(2000, fzUDP(fzPeerPod, fzPodA, 5201, 1, false, 8)),
		// From the VTEP: ARP for a local pod, ARP for nobody, IPv4, wrong VNI.
		fzFromVTEP(2, fzARPRequest(fzPodA)),
		fzFromVTEP(2, fzARPRequest(netip.MustParseAddr("10.1.1.200"))),
		fzFromVTEP(2, fzVTEPIPv4(fzPodA)),
		fzFromVTEP(3, fzARPRequest(fzPodA)),
		// From pod a: across the tunnel, to the other pod, to the VTEP, to
		// the host, to a tunnel port, into the void, too big with DF, TTL 1,
		// with someone else's address.
		fzUDP(fzPodA, fzPeerPod, 5201, 64, false, 100),
		fzUDP(fzPodA, fzPodB, 5201, 64, false, 100),
		fzUDP(fzPodA, netip.MustParseAddr("10.9.1.5"), 5201, 64, false, 100),
		fzUDP(fzPodA, netip.MustParseAddr("198.51.100.1"), 53, 64, false, 30),
		fzUDP(fzPodA, fzPeerIP, encap.VXLANPort, 64, false, 60),
		fzUDP(fzPodA, netip.MustParseAddr("10.1.3.3"), 5201, 64, false, 10),
		fzUDP(fzPodA, fzPeerPod, 5201, 64, true, 1480-28),
		fzUDP(fzPodA, fzPeerPod, 5201, 1, false, 10),
		fzUDP(fzPodB, fzPeerPod, 5201, 64, false, 10),
		// From the host: the node itself and someone it forwards for.
		fzUDP(netip.MustParseAddr("10.1.1.1"), fzPeerPod, 5201, 64, false, 10),
		fzUDP(netip.MustParseAddr("203.0.113.7"), fzPodA, 5201, 64, false, 10),
		// Broken headers (offsets after the sender byte).
		fzMutate(good, func(b []byte) { b[1] = 0 }),                   // I flag clear
		fzMutate(good, func(b []byte) { b[2] = 0x80 }),                // reserved bit
		fzMutate(good, func(b []byte) { b[8] = 1 }),                   // last reserved byte
		fzMutate(good, func(b []byte) { b[5], b[6], b[7] = 0, 0, 0 }), // VNI 0
		fzMutate(good, func(b []byte) { b[21], b[22] = 0x81, 0x00 }),  // inner VLAN tag
		fzMutate(good, func(b []byte) { b[23] = 0x44 }),               // inner IHL 4
		fzMutate(good, func(b []byte) { b[25] = 0x7f }),               // inner length lies
		fzMutate(good, func(b []byte) { b[0] = 2 }),                   // from a stranger
		fzMutate(good, func(b []byte) { b[0] = 3 }),                   // to the VTEP port
		fzMutate(good, func(b []byte) { b[0] = 0b1100 }),              // CE over Not-ECT
		fzCE(fzFromPeer(2000, fzECT(fzUDP(fzPeerPod, fzPodA, 5201, 64, false, 32)))),
		fzCE(fzFromPeer(2000, fzECT(fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 32)))),
		fzCE(fzFromVTEP(2, fzVTEPIPv4(fzPodA))),
		{},
		{0x45},
		{0x60, 0, 0, 0},
	}
	for _, n := range []int{1, 5, 8, 9, 15, 22, 23, 42, 43} {
		seeds = append(seeds, good[:n])
	}
	seeds = append(seeds, fzIPv6Seeds()...)
	for _, s := range seeds {
		f.Add(s)
	}

	r := newFuzzRig(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for wi := range r.workers {
			r.run(t, wi, pkt)
		}
	})
}

// TestFuzzRigOutcomes pins down what some seeds do, so the fuzz rig is
// known to reach delivery, encapsulation, the VTEP responder and the
// drop paths rather than rejecting everything early.
func TestFuzzRigOutcomes(t *testing.T) {
	r := newFuzzRig(t)
	tests := []struct {
		name   string
		worker int
		pkt    []byte
		dev    string     // device that gets the packet, "" for a drop
		drop   DropReason // when dev is ""
	}{
		{"peer to pod", 0, fzFromPeer(2000, fzUDP(fzPeerPod, fzPodA, 5201, 64, false, 32)), "a", 0},
		{"peer denied by policy", 0, fzFromPeer(2000, fzUDP(fzPeerPod, fzPodB, 5201, 64, false, 32)), "", DropPolicyDenied},
		{"vtep arp", 0, fzFromVTEP(2, fzARPRequest(fzPodA)), "u0", 0},
		{"vtep ipv4", 0, fzFromVTEP(2, fzVTEPIPv4(fzPodA)), "a", 0},
		{"vtep wrong vni", 0, fzFromVTEP(3, fzARPRequest(fzPodA)), "", DropInvalidVNI},
		{"outer CE over Not-ECT", 0, fzCE(fzFromPeer(2000, fzUDP(fzPeerPod, fzPodA, 5201, 64, false, 32))), "", DropECNCENotECT},
		{"outer CE over ECT(0)", 0, fzCE(fzFromPeer(2000, fzECT(fzUDP(fzPeerPod, fzPodA, 5201, 64, false, 32)))), "a", 0},
		{"outer CE over IPv6 Not-ECT", 0, fzCE(fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 32))), "", DropECNCENotECT},
		{"outer CE over IPv6 ECT(0)", 0, fzCE(fzFromPeer(2000, fzECT(fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 32)))), "a", 0},
		{"spoofed inner source", 0, fzFromPeer(2000, fzUDP(netip.MustParseAddr("10.1.9.9"), fzPodA, 5201, 64, false, 8)), "", DropSpoofedInnerSource},
		{"pod to pod", 1, fzUDP(fzPodA, fzPodB, 5201, 64, false, 100), "b", 0},
		{"pod to tunnel port", 1, fzUDP(fzPodA, fzPeerIP, encap.VXLANPort, 64, false, 60), "", DropEncapProhibited},
		{"pod spoofing", 1, fzUDP(fzPodB, fzPeerPod, 5201, 64, false, 10), "", DropInvalidSource},
		{"pod to world", 1, fzUDP(fzPodA, netip.MustParseAddr("198.51.100.1"), 53, 64, false, 30), "vxdp_host", 0},
		{"host to peer pod", 2, fzUDP(netip.MustParseAddr("10.1.1.1"), fzPeerPod, 5201, 64, false, 10), "", 0},
		{"peer to pod over IPv6", 0, fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodA6, 5201, 64, 32)), "a", 0},
		{"peer to host over IPv6", 0, fzFromPeer(6, fzUDP6(fzPeerHost6, fzHost6, 53, 64, 8)), "vxdp_host", 0},
		{"peer denied by policy over IPv6", 0, fzFromPeer(2000, fzUDP6(fzPeerPod6, fzPodB6, 5201, 64, 32)), "", DropPolicyDenied},
		{"spoofed inner IPv6 source", 0, fzFromPeer(2000, fzUDP6(fzPodB6, fzPodA6, 5201, 64, 8)), "", DropSpoofedInnerSource},
		{"pod to pod over IPv6", 1, fzUDP6(fzPodA6, fzPodB6, 5201, 64, 100), "b", 0},
		{"pod to peer pod over IPv6", 1, fzUDP6(fzPodA6, fzPeerPod6, 5201, 64, 100), "", 0},
		{"pod later fragment", 1, pkttest.IPv6{Src: fzPodA6, Dst: fzPeerPod6, Ext: []pkttest.Ext{pkttest.Fragment(1232, false, 7)}}.Packet(encap.ProtoUDP, make([]byte, 64)), "", 0},
		{"pod IPv6 spoofing", 1, fzUDP6(fzPodB6, fzPeerPod6, 5201, 64, 10), "", DropInvalidSource},
		{"pod link-local", 1, fzUDP6(netip.MustParseAddr("fe80::1"), fzPeerPod6, 5201, 64, 10), "", DropLinkLocal},
		{"pod multicast", 1, fzUDP6(fzPodA6, netip.MustParseAddr("ff02::1"), 5201, 64, 10), "", DropMulticast},
		{"pod too many headers", 1, fzUDP6(fzPodA6, fzPeerPod6, 5201, 64, 10, pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1),
			pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1)), "", DropInvalidExtHeaders},
		{"pod IPv6 to world", 1, fzUDP6(fzPodA6, netip.MustParseAddr("2001:db8:ee::1"), 53, 64, 30), "vxdp_host", 0},
		{"host IPv6 to peer pod", 2, fzUDP6(fzHost6, fzPeerPod6, 5201, 64, 10), "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := make([]uint64, numDropReasons)
			for i := range before {
				before[i] = r.e.drops[i].Load()
			}
			// run checks the invariants but not the outcome: look at the
			// writes of a direct call first.
			w := r.workers[tt.worker]
			w.load(tt.pkt)
			r.log.take()
			w.process(1)
			writes := r.log.take()
			switch {
			case tt.dev == "" && tt.drop == 0:
				// Encapsulated towards the peer: one write on an underlay queue.
				if len(writes) != 1 || writes[0].dev.kind != "underlay" {
					t.Fatalf("want one tunnel packet, got %d writes", len(writes))
				}
			case tt.dev != "":
				if len(writes) != 1 || writes[0].dev.name != tt.dev {
					t.Fatalf("want one packet to %s, got %d writes", tt.dev, len(writes))
				}
			default:
				if len(writes) != 0 {
					t.Fatalf("dropped packet wrote %d packets", len(writes))
				}
				if got := r.e.drops[tt.drop].Load() - before[tt.drop]; got != 1 {
					t.Fatalf("%s rose by %d", tt.drop, got)
				}
			}
			// Then the full invariant check on the same input.
			r.run(t, tt.worker, tt.pkt)
		})
	}
}
