package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// fakeTunnelGSO records what WriteTunnel is given.
type fakeTunnelGSO struct {
	pkt            []byte // buf[start:] of the last write
	inner, l4, gso int
	v6, ecn        bool
	writes         int
	err            error
	closed         bool
	roomSeen       int

	probeMu   sync.Mutex
	probeErr  error
	probeHang bool // a probe waits for its deadline or a cancel
	probes    []netip.Addr
}

func (f *fakeTunnelGSO) WriteTunnel(buf []byte, start, inner, l4, gso int, v6, ecn bool) error {
	if f.err != nil {
		return f.err
	}
	f.pkt = append(f.pkt[:0], buf[start:]...)
	f.inner, f.l4, f.gso, f.v6, f.ecn = inner, l4, gso, v6, ecn
	f.roomSeen = start
	f.writes++
	return nil
}

func (f *fakeTunnelGSO) Offload() packetio.Offload {
	return packetio.Offload{Name: "tunnel-gso", Active: true, Count: uint64(f.writes)}
}

func (f *fakeTunnelGSO) Close() error { f.closed = true; return nil }

func (f *fakeTunnelGSO) Probe(ctx context.Context, src, dst netip.Addr) error {
	f.probeMu.Lock()
	f.probes = append(f.probes, dst)
	err, hang := f.probeErr, f.probeHang
	f.probeMu.Unlock()
	if hang {
		// As a probe whose reply does not come: until the deadline.
		<-ctx.Done()
		if ctx.Err() == context.DeadlineExceeded {
			return errors.New("no echo reply within the timeout")
		}
		return ctx.Err()
	}
	return err
}

func (f *fakeTunnelGSO) setProbeErr(err error) {
	f.probeMu.Lock()
	f.probeErr = err
	f.probeMu.Unlock()
}

func (f *fakeTunnelGSO) probed() []netip.Addr {
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	return slices.Clone(f.probes)
}

// superTCP4 builds an IPv4 TCP super-packet of payload bytes from src to
// dst, TTL 64, its TCP checksum partial as a TSO read leaves it, at
// SuperRoom in a buffer of its own.
func superTCP4(src, dst [4]byte, payload int) ([]byte, int, int) {
	n := encap.IPv4MinLen + encap.TCPMinLen + payload
	buf := make([]byte, packetio.SuperRoom+n)
	pkt := buf[packetio.SuperRoom:]
	encap.IPv4(pkt).Encode(&encap.IPv4Fields{TotalLen: uint16(n), TTL: 64, DontFrag: true, Protocol: encap.ProtoTCP, Source: src, Destination: dst})
	encap.TCP(pkt[20:]).Encode(&encap.TCPFields{SrcPort: 40000, DstPort: 5201, SeqNum: 1, AckNum: 1, Flags: encap.TCPFlagACK, Window: 512})
	for i := range payload {
		pkt[40+i] = byte(i)
	}
	sum := encap.IPv4(pkt).PseudoHeaderSum(encap.ProtoTCP, n-20)
	binary.BigEndian.PutUint16(pkt[36:], encap.Fold(sum))
	return buf, packetio.SuperRoom, n
}

func newSuperEngine(t testing.TB, g packetio.TunnelGSO) (*Engine, *worker) {
	t.Helper()
	e, err := New(Config{
		NodeIP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		PodCIDR6:   netip.MustParsePrefix("2001:db8:1:1::/64"),
		TunnelPort: 8472, UnderlayMTU: 1500, TunnelGSO: g,
	}, nil, []packetio.Underlay{&nopUnderlay{nopDevice{"u"}}}, &nopDevice{"h"}, func(EndpointSpec, int) (packetio.Device, error) { return &nopDevice{"p"}, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	// As if a probe had passed (TestTunnelGSOProbe).
	e.tunnelGSOReady.Store(true)
	if err := e.AddNode(NodeSpec{Name: "n2", IP: netip.MustParseAddr("192.0.2.2"), PodCIDR: netip.MustParsePrefix("10.1.2.0/24"),
		PodCIDR6: netip.MustParsePrefix("2001:db8:1:2::/64")}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []EndpointSpec{
		{Name: "a", IP: netip.MustParseAddr("10.1.1.10"), IP6: netip.MustParseAddr("2001:db8:1:1::10"), Identity: 1000},
		{Name: "b", IP: netip.MustParseAddr("10.1.1.11")},
	} {
		if err := e.AddEndpoint(s); err != nil {
			t.Fatal(err)
		}
	}
	return e, newWorker(e, &nopDevice{"p"}, nil, &DeviceStats{}, sourcePod, e.endpoints["a"])
}

// A pod's TCP super-packet for another node's pod leaves whole: one
// tunnel packet, outer IPv4 and UDP to the node's tunnel port, VXLAN with
// the pod's identity, the inner packet with its TTL lowered, and the
// offsets and segment size the kernel segments it by. It counts as the
// segments it makes.
func TestSuperPacketLeavesWhole(t *testing.T) {
	g := &fakeTunnelGSO{}
	e, w := newSuperEngine(t, g)
	buf, start, n := superTCP4([4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 10000)
	orig := bytes.Clone(buf[start : start+n])
	if !w.fromSuper(buf, start, n, 1398, true) {
		t.Fatal("super-packet to a remote pod not taken")
	}
	if g.writes != 1 || g.gso != 1398 || g.v6 || !g.ecn {
		t.Fatalf("writes %d gso %d v6 %v ecn %v, want 1 1398 false true", g.writes, g.gso, g.v6, g.ecn)
	}
	if g.roomSeen < packetio.TunnelGSORoom {
		t.Fatalf("%d bytes of room in front of the outer header, want at least %d", g.roomSeen, packetio.TunnelGSORoom)
	}
	outer, err := encap.ParseOuterV4(g.pkt)
	if err != nil {
		t.Fatal(err)
	}
	if outer.Src != netip.MustParseAddr("192.0.2.1") || outer.Dst != netip.MustParseAddr("192.0.2.2") || outer.DstPort != 8472 {
		t.Fatalf("outer %+v", outer)
	}
	if outer.SrcPort != w.e.underlays[0].dev.SourcePort(encap.FlowHashV4(encap.IPv4(orig))) {
		t.Errorf("outer source port %d is not the underlay's for the flow", outer.SrcPort)
	}
	if want := encap.OuterV4Len + encap.VXLANLen + encap.EthernetLen; g.inner != want || g.l4 != want+20 {
		t.Fatalf("inner at %d, TCP at %d; want %d and %d", g.inner, g.l4, want, want+20)
	}
	vx := encap.VXLAN(g.pkt[outer.Payload:])
	if id, err := identity.FromVNI(vx.VNI()); err != nil || id != 1000 {
		t.Errorf("VNI %d carries identity %v (%v), want 1000", vx.VNI(), id, err)
	}
	inner := encap.IPv4(g.pkt[g.inner:])
	if len(inner) != n || inner.TTL() != 63 || !inner.HeaderChecksumValid() {
		t.Fatalf("inner: %d bytes, TTL %d, header checksum valid %v", len(inner), inner.TTL(), inner.HeaderChecksumValid())
	}
	if !bytes.Equal(inner[20:], orig[20:]) {
		t.Error("the TCP segment changed on the way")
	}
	if got := w.stats.RxPackets.Load(); got != 8 { // ceil(10000/1398)
		t.Errorf("pod rx packets %d, want 8", got)
	}
	if got := e.underlays[0].stats.TxPackets.Load(); got != 8 {
		t.Errorf("underlay tx packets %d, want 8", got)
	}
}

// Whatever the engine would not send as one tunnel packet stays with the
// device, unchanged, for it to cut up: a packet for a local pod, for no
// known place, with a spoofed source, with segments too large for the
// tunnel, refused by the device, and everything on an engine without the
// way out.
func TestSuperPacketDeclined(t *testing.T) {
	for _, c := range []struct {
		name     string
		src, dst [4]byte
		gso      int
		err      error
		noGSO    bool
	}{
		{"local pod", [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 1, 11}, 1398, nil, false},
		{"no route", [4]byte{10, 1, 1, 10}, [4]byte{10, 9, 9, 9}, 1398, nil, false},
		{"spoofed source", [4]byte{10, 1, 1, 99}, [4]byte{10, 1, 2, 20}, 1398, nil, false},
		{"segments beyond the tunnel MTU", [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 1411, nil, false},
		{"segments too small", [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 535, nil, false},
		{"device refuses", [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 1398, errors.New("refused"), false},
		{"no tunnel-gso", [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 1398, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &fakeTunnelGSO{err: c.err}
			var e *Engine
			var w *worker
			if c.noGSO {
				e, w = newSuperEngine(t, nil)
			} else {
				e, w = newSuperEngine(t, g)
			}
			buf, start, n := superTCP4(c.src, c.dst, 5000)
			orig := bytes.Clone(buf[start : start+n])
			if w.fromSuper(buf, start, n, c.gso, false) {
				t.Fatal("taken")
			}
			if !bytes.Equal(buf[start:start+n], orig) {
				t.Error("a declined super-packet was changed")
			}
			if g.writes != 0 || w.stats.RxPackets.Load() != 0 || e.underlays[0].stats.TxPackets.Load() != 0 {
				t.Errorf("writes %d, rx %d, tx %d; want none", g.writes, w.stats.RxPackets.Load(), e.underlays[0].stats.TxPackets.Load())
			}
		})
	}
}

// The engine closes the tunnel-gso way out with itself, and shows it (not
// yet probed here) or why there is none among the first underlay queue's
// offloads.
func TestTunnelGSOLifecycle(t *testing.T) {
	g := &fakeTunnelGSO{}
	e, _ := newSuperEngine(t, g)
	found := false
	for _, o := range e.Stats().Devices[0].Offloads {
		found = found || o.Name == "tunnel-gso" && strings.Contains(o.Reason, "no probe yet")
	}
	if !found {
		t.Error("stats lack the tunnel-gso offload")
	}
	e.Close()
	if !g.closed {
		t.Error("Close left the tunnel-gso device open")
	}

	e2, err := New(Config{NodeIP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), UnderlayMTU: 1500, TunnelGSOOff: "tunnel-gso is off"},
		nil, []packetio.Underlay{&nopUnderlay{nopDevice{"u"}}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	found = false
	for _, o := range e2.Stats().Devices[0].Offloads {
		found = found || o.Name == "tunnel-gso" && !o.Active && o.Reason == "tunnel-gso is off"
	}
	if !found {
		t.Error("stats lack why tunnel-gso is off")
	}
}

// The engine lets the tunnel-gso way out carry nothing until a probe
// through it reached a node: with no node it waits for one, a failed
// probe is tried again, and the stats say why it is not in use yet. In
// use, it is probed again, and a failed recheck takes it out of use.
func TestTunnelGSOProbe(t *testing.T) {
	defer func(d time.Duration) { tunnelGSORecheck = d }(tunnelGSORecheck)
	tunnelGSORecheck = 100 * time.Millisecond
	g := &fakeTunnelGSO{probeErr: errors.New("no echo reply")}
	e, err := New(Config{NodeIP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), UnderlayMTU: 1500, TunnelGSO: g},
		nil, []packetio.Underlay{&nopUnderlay{nopDevice{"u"}}}, nil, func(EndpointSpec, int) (packetio.Device, error) { return &nopDevice{"p"}, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	reason := func() string {
		for _, o := range e.Stats().Devices[0].Offloads {
			if o.Name == "tunnel-gso" {
				if o.Active {
					return ""
				}
				return o.Reason
			}
		}
		t.Fatal("no tunnel-gso offload")
		return ""
	}
	if r := reason(); !strings.Contains(r, "no probe yet") {
		t.Fatalf("before Start: %q", r)
	}
	e.Start()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (reason %q, probes %v)", what, reason(), g.probed())
			}
		}
	}
	waitFor("waiting for a node", func() bool { return strings.Contains(reason(), "waiting for a node") })
	if err := e.AddNode(NodeSpec{Name: "n2", IP: netip.MustParseAddr("192.0.2.2"), PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	waitFor("a failed probe", func() bool { return strings.Contains(reason(), "no echo reply") })
	if e.tunnelGSOReady.Load() {
		t.Fatal("ready after a failed probe")
	}
	if err := e.AddEndpoint(EndpointSpec{Name: "a", IP: netip.MustParseAddr("10.1.1.10")}); err != nil {
		t.Fatal(err)
	}
	w := newWorker(e, &nopDevice{"p"}, nil, &DeviceStats{}, sourcePod, e.endpoints["a"])
	buf, start, n := superTCP4([4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 5000)
	if w.fromSuper(buf, start, n, 1398, false) {
		t.Fatal("a super-packet left through an unproven way out")
	}
	g.setProbeErr(nil)
	waitFor("a passed probe", func() bool { return reason() == "" && e.tunnelGSOReady.Load() })
	if p := g.probed(); p[len(p)-1] != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("probed %v, want the node 192.0.2.2", p)
	}
	if !w.fromSuper(buf, start, n, 1398, false) {
		t.Fatal("a super-packet cut up once the way out is proven")
	}
	// A firewall that comes later: the next recheck fails, and the way
	// out carries nothing more.
	g.setProbeErr(errors.New("no echo reply, later"))
	waitFor("a failed recheck", func() bool { return strings.Contains(reason(), "later") && !e.tunnelGSOReady.Load() })
	buf, start, n = superTCP4([4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 5000)
	if w.fromSuper(buf, start, n, 1398, false) {
		t.Fatal("a super-packet left through a way out whose recheck failed")
	}
}

// A stop while a probe waits for its reply cuts the probe short: Close
// does not wait out the probe's timeout, and the probe cut short is not
// reported as a failed one.
func TestTunnelGSOProbeStop(t *testing.T) {
	g := &fakeTunnelGSO{probeHang: true}
	core, logs := observer.New(zap.InfoLevel)
	e, err := New(Config{NodeIP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), UnderlayMTU: 1500, TunnelGSO: g},
		zap.New(core), []packetio.Underlay{&nopUnderlay{nopDevice{"u"}}}, nil, func(EndpointSpec, int) (packetio.Device, error) { return &nopDevice{"p"}, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.AddNode(NodeSpec{Name: "n2", IP: netip.MustParseAddr("192.0.2.2"), PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	e.Start()
	for deadline := time.Now().Add(5 * time.Second); len(g.probed()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no probe started")
		}
	}
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > tunnelGSOProbeTimeout/2 {
		t.Errorf("Close took %v with a probe waiting; want it cut short, not waited out (timeout %v)", took, tunnelGSOProbeTimeout)
	}
	for _, l := range logs.All() {
		if strings.Contains(l.Message, "tunnel-gso") {
			t.Errorf("logged during the stop: %s %s", l.Level, l.Message)
		}
	}
}

// An IPv6 pod's super-packet leaves the same way over the IPv4 underlay,
// its hop limit lowered, the kernel told the inner packet is IPv6.
func TestSuperPacketIPv6LeavesWhole(t *testing.T) {
	g := &fakeTunnelGSO{}
	_, w := newSuperEngine(t, g)
	seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: pkttest.ACK, Window: 512, Partial: true}
	src, dst := netip.MustParseAddr("2001:db8:1:1::10"), netip.MustParseAddr("2001:db8:1:2::20")
	pkt := pkttest.IPv6{Src: src, Dst: dst, HopLimit: 64}.TCP(seg, make([]byte, 8000))
	buf := make([]byte, packetio.SuperRoom+len(pkt))
	copy(buf[packetio.SuperRoom:], pkt)
	if !w.fromSuper(buf, packetio.SuperRoom, len(pkt), 1370, false) {
		t.Fatal("IPv6 super-packet to a remote pod not taken")
	}
	want := encap.OuterV4Len + encap.VXLANLen + encap.EthernetLen
	if !g.v6 || g.inner != want || g.l4 != want+encap.IPv6Len || g.gso != 1370 {
		t.Fatalf("v6 %v inner %d l4 %d gso %d", g.v6, g.inner, g.l4, g.gso)
	}
	inner := encap.IPv6(g.pkt[g.inner:])
	if len(inner) != len(pkt) || inner.HopLimit() != 63 || inner.DestinationAddr() != dst {
		t.Fatalf("inner: %d bytes, hop limit %d, to %s", len(inner), inner.HopLimit(), inner.DestinationAddr())
	}
	// One with a hop limit of 1 stays with the device (Time Exceeded
	// comes from the usual path), unchanged.
	pkt = pkttest.IPv6{Src: src, Dst: dst, HopLimit: 1}.TCP(seg, make([]byte, 8000))
	copy(buf[packetio.SuperRoom:], pkt)
	if w.fromSuper(buf, packetio.SuperRoom, len(pkt), 1370, false) || !bytes.Equal(buf[packetio.SuperRoom:], pkt) {
		t.Fatal("a super-packet with hop limit 1 was taken or changed")
	}
}

// FuzzSuperPacket hands whatever a pod's device could offer as a
// super-packet to the handler. Nothing may panic; a packet declined is
// left exactly as it was (the device cuts it up next), and one taken is
// written once, whole, with its inner packet and TCP header inside what
// was written.
func FuzzSuperPacket(f *testing.F) {
	seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: pkttest.ACK, Window: 512, Partial: true}
	f.Add(pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.10"), Dst: netip.MustParseAddr("10.1.2.20"), DF: true}.TCP(seg, make([]byte, 3000)), uint16(1398), false)
	f.Add(pkttest.IPv6{Src: netip.MustParseAddr("2001:db8:1:1::10"), Dst: netip.MustParseAddr("2001:db8:1:2::20"), HopLimit: 64}.TCP(seg, make([]byte, 3000)), uint16(1370), true)
	f.Add(pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.10"), Dst: netip.MustParseAddr("10.1.1.11")}.TCP(seg, make([]byte, 3000)), uint16(1398), false)
	f.Add([]byte{0x45}, uint16(0), false)
	g := &fakeTunnelGSO{}
	_, w := newSuperEngine(f, g)
	f.Fuzz(func(t *testing.T, pkt []byte, gso uint16, ecn bool) {
		if len(pkt) > 65535 {
			return
		}
		buf := make([]byte, packetio.SuperRoom+len(pkt))
		copy(buf[packetio.SuperRoom:], pkt)
		before := g.writes
		if !w.fromSuper(buf, packetio.SuperRoom, len(pkt), int(gso), ecn) {
			if !bytes.Equal(buf[packetio.SuperRoom:], pkt) {
				t.Fatal("a declined super-packet was changed")
			}
			if g.writes != before {
				t.Fatal("declined, yet written")
			}
			return
		}
		if g.writes != before+1 {
			t.Fatalf("taken with %d writes", g.writes-before)
		}
		if g.inner < 0 || g.l4 <= g.inner || g.l4+encap.TCPMinLen > len(g.pkt) || len(g.pkt)-g.inner != len(pkt) {
			t.Fatalf("inner at %d, TCP at %d, %d bytes written for a %d-byte packet", g.inner, g.l4, len(g.pkt), len(pkt))
		}
		if int(gso) < minSuperGSO {
			t.Fatalf("taken with segments of %d bytes", gso)
		}
	})
}

// What the node's kernel sends through the host device leaves whole too:
// from the host address with the remote-node identity, forwarded for
// someone else with the world's; the source is not a pod's to check.
func TestSuperPacketFromHost(t *testing.T) {
	g := &fakeTunnelGSO{}
	e, _ := newSuperEngine(t, g)
	w := newWorker(e, &nopDevice{"h"}, nil, &DeviceStats{}, sourceHost, nil)
	for _, c := range []struct {
		src  [4]byte
		want identity.ID
	}{{[4]byte{10, 1, 1, 1}, identity.RemoteNode}, {[4]byte{203, 0, 113, 7}, identity.World}} {
		buf, start, n := superTCP4(c.src, [4]byte{10, 1, 2, 20}, 5000)
		if !w.fromSuper(buf, start, n, 1398, false) {
			t.Fatalf("from %v: not taken", c.src)
		}
		outer, err := encap.ParseOuterV4(g.pkt)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := identity.FromVNI(encap.VXLAN(g.pkt[outer.Payload:]).VNI()); err != nil || id != c.want {
			t.Errorf("from %v: identity %v (%v), want %v", c.src, id, err, c.want)
		}
	}
}
