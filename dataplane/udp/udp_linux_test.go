package udp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/internal/nstest"
)

const waitFor = 5 * time.Second

// openIn opens an underlay in ns, closed when the test ends.
func openIn(t testing.TB, ns *nstest.Netns, c Config) *Underlay {
	t.Helper()
	var u *Underlay
	inNetns(t, ns, func() (err error) {
		u, err = Open(c)
		return err
	})
	t.Cleanup(func() { u.Close() })
	return u
}

// queueIn opens an underlay of one queue on addr in ns, on port (0: any).
func queueIn(t testing.TB, ns *nstest.Netns, addr netip.Addr, port uint16) *Queue {
	t.Helper()
	return openIn(t, ns, Config{Addr: addr, Port: port}).Queues()[0]
}

// closeAfter closes q if the test is still running after waitFor, which
// unblocks any Receive so that a missing datagram fails the test instead
// of hanging it.
func closeAfter(t testing.TB, q *Queue) {
	timer := time.AfterFunc(waitFor, func() { q.Close() })
	t.Cleanup(func() { timer.Stop() })
}

// receiveN receives until n payloads arrived, and returns them with their
// metadata. The driver may exchange a buffer for one of its own (with
// UDP_GRO); one of the test's own buffers must come back with its headroom
// untouched, and none may come back shorter.
func receiveN(t *testing.T, q *Queue, n, offset, size int) ([][]byte, []packetio.Meta) {
	t.Helper()
	closeAfter(t, q)
	bufs := make([][]byte, q.BatchSize())
	own := make(map[*byte]bool)
	for i := range bufs {
		bufs[i] = bytes.Repeat([]byte{0xee}, offset+size)
		own[&bufs[i][0]] = true
	}
	sizes, meta := make([]int, len(bufs)), make([]packetio.Meta, len(bufs))
	var got [][]byte
	var metas []packetio.Meta
	for len(got) < n {
		k, err := q.Receive(bufs, sizes, meta, offset)
		if err != nil {
			t.Fatalf("Receive after %d payloads: %v", len(got), err)
		}
		for i := 0; i < k; i++ {
			if len(bufs[i]) < offset+size {
				t.Fatalf("buffer %d exchanged for one of %d bytes, shorter than %d", i, len(bufs[i]), offset+size)
			}
			if own[&bufs[i][0]] && !bytes.Equal(bufs[i][:offset], bytes.Repeat([]byte{0xee}, offset)) {
				t.Fatalf("headroom of buffer %d touched: %x", i, bufs[i][:offset])
			}
			got = append(got, bytes.Clone(bufs[i][offset:offset+sizes[i]]))
			metas = append(metas, meta[i])
		}
	}
	return got, metas
}

// Receive hands out each datagram's payload at the offset, with the
// sender's address and port (a plain address of the underlay's family,
// never IPv4-mapped) and the local port, and nothing else.
func TestReceive(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		q := queueIn(t, node, f.node, 0)
		local := q.LocalAddr()
		if local.Addr() != f.node || local.Port() == 0 {
			t.Fatalf("LocalAddr = %v", local)
		}
		if want := "udp:" + local.String(); q.Name() != want {
			t.Errorf("Name = %q, want %q", q.Name(), want)
		}
		sender := peer.ListenUDP(t, netip.AddrPortFrom(f.peer, 0))
		from := netip.AddrPortFrom(f.peer, sender.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		payloads := [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{0x5a}, 1200), []byte("last")}
		for _, p := range payloads {
			if _, err := sender.WriteToUDPAddrPort(p, local); err != nil {
				t.Fatal(err)
			}
		}
		got, meta := receiveN(t, q, len(payloads), 10, 1500)
		for i, p := range got {
			if !bytes.Equal(p, payloads[i]) {
				t.Errorf("payload %d = %q, want %q", i, p, payloads[i])
			}
			if want := (packetio.Meta{Remote: from, LocalPort: local.Port()}); meta[i] != want {
				t.Errorf("payload %d meta = %+v, want %+v", i, meta[i], want)
			}
			if a := meta[i].Remote.Addr(); a.Is4() != f.node.Is4() || a.Is4In6() || a.Zone() != "" {
				t.Errorf("payload %d: remote %v is not a plain %s address", i, a, f.name)
			}
		}
	})
}

func TestReceiveDropsOversizedDatagram(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		q := queueIn(t, ns, f.node, 0)
		sender := ns.ListenUDP(t, netip.AddrPortFrom(f.node, 0))
		for _, p := range [][]byte{[]byte("a"), make([]byte, 500), []byte("b")} {
			if _, err := sender.WriteToUDPAddrPort(p, q.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := receiveN(t, q, 2, 0, 100)
		if string(got[0]) != "a" || string(got[1]) != "b" || q.RXDropped() != 1 {
			t.Errorf("got %q, RXDropped %d; want [a b] and 1", got, q.RXDropped())
		}
	})
}

// Send takes a batch for many destinations and flows; a payload the
// kernel refuses, or one to a remote of the other address family, costs
// only itself; each flow leaves from one port of the pool.
func TestSendBatch(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		u := openIn(t, node, Config{Addr: f.node, Port: 8472, SourcePorts: 8})
		q := u.Queues()[0]
		recv := peer.ListenUDP(t, netip.AddrPortFrom(f.peer, 0))
		recv.SetReadBuffer(4 << 20)
		dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

		const count = 100
		const offset = 16
		var bufs [][]byte
		var meta []packetio.Meta
		want := map[string]uint32{} // payload -> flow
		bad := 0
		add := func(payload []byte, to netip.AddrPort, flow uint32) {
			bufs = append(bufs, append(bytes.Repeat([]byte{0xee}, offset), payload...))
			meta = append(meta, packetio.Meta{Remote: to, Flow: flow})
		}
		for i := 0; i < count; i++ {
			payload := fmt.Sprintf("packet %d", i)
			flow := uint32(i % 5)
			want[payload] = flow
			add([]byte(payload), dst, flow)
			// Spread refused payloads through the batch.
			switch i % 25 {
			case 11:
				add([]byte("x"), f.unreachable, flow) // ENETUNREACH
			case 13:
				add(nil, dst, flow) // empty: nothing to send
			case 17:
				add([]byte("y"), f.other(), flow) // not this underlay's family
			case 19:
				add([]byte("z"), netip.AddrPort{}, flow) // no address at all
			default:
				continue
			}
			bad++
		}
		n, err := q.Send(bufs, meta, offset)
		if err != nil {
			t.Fatal(err)
		}
		if n != count || q.TXErrors() != uint64(bad) {
			t.Errorf("Send accepted %d, TXErrors %d; want %d and %d", n, q.TXErrors(), count, bad)
		}
		for _, b := range bufs {
			if !bytes.Equal(b[:offset], bytes.Repeat([]byte{0xee}, offset)) {
				t.Fatalf("Send touched the headroom: %x", b[:offset])
			}
		}
		recv.SetReadDeadline(time.Now().Add(waitFor))
		buf := make([]byte, 2048)
		ports := map[uint32]uint16{}
		for len(want) > 0 {
			m, src, err := recv.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%d payloads missing: %v", len(want), err)
			}
			flow, ok := want[string(buf[:m])]
			if !ok {
				t.Fatalf("unexpected or duplicate payload %q", buf[:m])
			}
			delete(want, string(buf[:m]))
			if src.Addr() != f.node || src.Port() != q.SourcePort(flow) {
				t.Fatalf("flow %d came from %v, SourcePort says %d", flow, src, q.SourcePort(flow))
			}
			ports[flow] = src.Port()
		}
		distinct := map[uint16]bool{}
		for _, p := range ports {
			distinct[p] = true
		}
		if len(distinct) < 2 {
			t.Errorf("5 flows left from %d port(s): %v", len(distinct), ports)
		}
		recv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if m, src, err := recv.ReadFromUDPAddrPort(buf); err == nil {
			t.Errorf("unexpected datagram %q from %v", buf[:m], src)
		}
	})
}

// The pool has the ports it says, spread over the dynamic range, and a
// taken port is skipped, not fatal.
func TestSourcePorts(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		ns.ListenUDP(t, netip.AddrPortFrom(f.node, 49152)) // takes the first port of the range
		u := openIn(t, ns, Config{Addr: f.node, SourcePorts: 64})
		sp := u.SourcePorts()
		if sp.Count != 64 || sp.Min != 49153 || sp.Max < 65000 {
			t.Fatalf("SourcePorts = %+v, want 64 ports from 49153 to about 65535", sp)
		}
		seen := map[uint16]bool{}
		q := u.Queues()[0]
		if q.SourcePorts() != sp {
			t.Fatalf("queue's SourcePorts %+v, underlay's %+v", q.SourcePorts(), sp)
		}
		for flow := uint32(0); flow < 64; flow++ {
			p := q.SourcePort(flow)
			if p < sp.Min || p > sp.Max {
				t.Fatalf("flow %d: port %d outside %+v", flow, p, sp)
			}
			if q.SourcePort(flow) != p {
				t.Fatalf("flow %d: port not stable", flow)
			}
			seen[p] = true
		}
		if len(seen) != 64 {
			t.Fatalf("64 flows used %d ports", len(seen))
		}
		var err error
		inNetns(t, ns, func() error {
			_, err = Open(Config{Addr: f.node, SourcePorts: MaxSourcePorts + 1})
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "source ports") {
			t.Fatalf("Open with %d source ports: %v", MaxSourcePorts+1, err)
		}
	})
}

func TestConcurrentSend(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		q := queueIn(t, ns, f.node, 0)
		recv := ns.ListenUDP(t, netip.AddrPortFrom(f.node, 0))
		recv.SetReadBuffer(4 << 20)
		dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

		const writers, each = 4, 50
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bufs, meta := make([][]byte, each), make([]packetio.Meta, each)
				for i := range bufs {
					bufs[i] = []byte{byte(w), byte(i)}
					meta[i] = packetio.Meta{Remote: dst, Flow: uint32(i % 3)}
				}
				if n, err := q.Send(bufs, meta, 0); n != each || err != nil {
					errs <- fmt.Errorf("writer %d: Send = %d, %v", w, n, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		recv.SetReadDeadline(time.Now().Add(waitFor))
		seen := map[[2]byte]bool{}
		buf := make([]byte, 64)
		for len(seen) < writers*each {
			m, _, err := recv.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("received %d of %d: %v", len(seen), writers*each, err)
			}
			if m == 2 {
				seen[[2]byte(buf[:2])] = true
			}
		}
	})
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		u := openIn(t, ns, Config{Addr: f.node, GSO: true})
		q := u.Queues()[0]
		peer := ns.ListenUDP(t, netip.AddrPortFrom(f.node, 0))
		peer.SetReadBuffer(4 << 20)
		peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

		const runs, batch = 100, 4
		// Queue enough datagrams that no measured Receive ever blocks:
		// AllocsPerRun makes one extra warm-up call.
		for i := 0; i < batch*(runs+2); i++ {
			if _, err := peer.WriteToUDPAddrPort([]byte("datagram"), q.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		closeAfter(t, q)
		bufs := make([][]byte, batch)
		for i := range bufs {
			bufs[i] = make([]byte, 64+1500)
		}
		sizes, meta := make([]int, batch), make([]packetio.Meta, batch)
		if a := testing.AllocsPerRun(runs, func() {
			if _, err := q.Receive(bufs, sizes, meta, 64); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("Receive: %v allocations per call", a)
		}
		out := make([][]byte, batch)
		for i := range out {
			out[i] = append(make([]byte, 64), "out"...)
			// A TOS per payload: the control messages cost nothing either.
			meta[i] = packetio.Meta{Remote: peerAddr, Flow: uint32(i), TOS: uint8(i) | 0b10}
		}
		if a := testing.AllocsPerRun(runs, func() {
			if n, err := q.Send(out, meta, 64); n != batch || err != nil {
				t.Fatalf("Send = %d, %v", n, err)
			}
		}); a != 0 {
			t.Errorf("Send: %v allocations per call", a)
		}
		// A refused payload costs no allocation either.
		meta[0].Remote = f.other()
		if a := testing.AllocsPerRun(runs, func() {
			if n, err := q.Send(out, meta, 64); n != batch-1 || err != nil {
				t.Fatalf("Send = %d, %v", n, err)
			}
		}); a != 0 {
			t.Errorf("Send with a refused payload: %v allocations per call", a)
		}
	})
}

func TestCloseUnblocksReceive(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		q := queueIn(t, ns, f.node, 0)
		errc := make(chan error, 1)
		go func() {
			_, err := q.Receive([][]byte{make([]byte, 2048)}, make([]int, 1), make([]packetio.Meta, 1), 0)
			errc <- err
		}()
		time.Sleep(100 * time.Millisecond)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked Receive returned %v, want net.ErrClosed", err)
			}
		case <-time.After(waitFor):
			t.Fatal("Receive still blocked after Close")
		}
		if _, err := q.Send([][]byte{[]byte("x")}, []packetio.Meta{{Remote: q.LocalAddr()}}, 0); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Send after Close: %v", err)
		}
		if err := q.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ns := underlayNetns(t)
	taken4 := queueIn(t, ns, ipv4.node, 0)
	taken6 := queueIn(t, ns, ipv6.node, 0)
	inNetns(t, ns, func() error {
		cases := []struct {
			addr  string
			errno error
			text  string
		}{
			{taken4.LocalAddr().String(), unix.EADDRINUSE, "in use"},
			{taken6.LocalAddr().String(), unix.EADDRINUSE, "in use"},
			{"198.51.100.1:8472", unix.EADDRNOTAVAIL, "not an address"},
			{"[2001:db8:1::9]:8472", unix.EADDRNOTAVAIL, "not an address"},
			{"0.0.0.0:8472", nil, "unspecified"},
			{"[::]:8472", nil, "unspecified"},
			{"[fe80::1]:8472", nil, "link-local"},
			{"[fe80::1%veth0]:8472", nil, "link-local"},
		}
		for _, c := range cases {
			a := netip.MustParseAddrPort(c.addr)
			u, err := Open(Config{Addr: a.Addr(), Port: a.Port()})
			if err == nil {
				u.Close()
				return fmt.Errorf("Open(%v) succeeded", a)
			}
			if (c.errno != nil && !errors.Is(err, c.errno)) || !strings.Contains(err.Error(), c.text) {
				return fmt.Errorf("Open(%v): unclear error %v", a, err)
			}
		}
		if _, err := Open(Config{}); err == nil || !strings.Contains(err.Error(), "no address") {
			return fmt.Errorf("Open without an address: %v", err)
		}
		return nil
	})
}

// An IPv4-mapped IPv6 address is the IPv4 address: its underlay has IPv4
// sockets.
func TestOpenMappedAddr(t *testing.T) {
	ns := underlayNetns(t)
	q := queueIn(t, ns, netip.AddrFrom16(ipv4.node.As16()), 0)
	if a := q.LocalAddr().Addr(); a != ipv4.node {
		t.Fatalf("LocalAddr %v, want %v", a, ipv4.node)
	}
}

// Every socket of an IPv6 underlay is IPv6 only and leaves UDP checksums
// on in both directions; the send sockets never fragment. (The tests of
// Receive, the checksums and TestSendTooBig show what that does.)
func TestIPv6SocketOptions(t *testing.T) {
	ns := underlayNetns(t)
	u := openIn(t, ns, Config{Addr: ipv6.node, Sockets: 2, ExtraPorts: []uint16{4789}, SourcePorts: 4, GSO: true, GRO: true})
	want := map[[2]int]int{
		{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}: 1,
		{solUDP, unix.UDP_NO_CHECK6_TX}:       0,
		{solUDP, unix.UDP_NO_CHECK6_RX}:       0,
	}
	check := func(name string, fd int, want map[[2]int]int) error {
		for opt, v := range want {
			got, err := unix.GetsockoptInt(fd, opt[0], opt[1])
			if err != nil || got != v {
				return fmt.Errorf("%s: option %d/%d = %d, %v; want %d", name, opt[0], opt[1], got, err, v)
			}
		}
		return nil
	}
	for _, q := range u.Queues() {
		var err error
		if cerr := q.raw.Control(func(fd uintptr) { err = check(q.Name(), int(fd), want) }); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Error(err)
		}
	}
	want[[2]int{unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER}] = unix.IPV6_PMTUDISC_DO
	for _, s := range u.pool.socks {
		if err := s.control(func(fd int) error { return check(fmt.Sprintf("send socket %d", s.port), fd, want) }); err != nil {
			t.Error(err)
		}
	}
}

// The sockets of one underlay share the tunnel port and the kernel
// spreads flows over them; an extra port gets a queue of its own; closing
// the queues one by one closes the pool with the last.
func TestQueues(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		u := openIn(t, ns, Config{Addr: f.node, Port: 8472, Sockets: 2, ExtraPorts: []uint16{4789}, GRO: true})
		qs := u.Queues()
		tunnel, vtep := netip.AddrPortFrom(f.node, 8472), netip.AddrPortFrom(f.node, 4789)
		names := []string{"udp:" + tunnel.String(), "udp:" + tunnel.String() + "#1", "udp:" + vtep.String()}
		if len(qs) != 3 || qs[0].Name() != names[0] || qs[1].Name() != names[1] || qs[2].Name() != names[2] {
			t.Fatalf("queues %v, want %v", qs, names)
		}
		for i := 0; i < 32; i++ {
			c := ns.ListenUDP(t, netip.AddrPortFrom(f.node, 0))
			if _, err := c.WriteToUDPAddrPort([]byte("flow"), tunnel); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if _, err := c.WriteToUDPAddrPort([]byte("vtep"), vtep); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, q := range qs {
			_, meta := receiveN(t, q, 1, 0, 2048)
			if meta[0].LocalPort != q.LocalAddr().Port() {
				t.Fatalf("%s: local port %d", q.Name(), meta[0].LocalPort)
			}
		}
		for i, q := range qs {
			q.Close()
			last := i == len(qs)-1
			s := u.pool.socks[0]
			err := s.control(func(int) error { return nil })
			if last != (err != nil) {
				t.Fatalf("after closing %d of %d queues the pool is open=%v", i+1, len(qs), err == nil)
			}
		}
	})
}

// With a busy-poll budget, a Receive that finds the socket empty keeps
// trying: a datagram that comes within the budget is taken while it
// tries, and the busy-poll offload counts it. Without one it parks at
// once and counts nothing. Both receive paths: plain recvmmsg and UDP_GRO.
func TestBusyPoll(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			ns := underlayNetns(t)
			q := openIn(t, ns, Config{Addr: ipv4.node, GRO: gro}).Queues()[0]
			if (q.gro != nil) != gro {
				t.Fatalf("UDP_GRO on = %v, want %v", q.gro != nil, gro)
			}
			sender := ns.ListenUDP(t, netip.AddrPortFrom(ipv4.node, 0))
			busy := func() packetio.Offload {
				for _, o := range q.Offloads() {
					if o.Name == "busy-poll" {
						return o
					}
				}
				t.Fatal("no busy-poll offload")
				return packetio.Offload{}
			}
			if o := busy(); o.Active || o.Count != 0 {
				t.Fatalf("busy-poll before a budget: %+v", o)
			}
			// One datagram 30 ms into the Receive, with the given budget.
			late := func(budget time.Duration) {
				t.Helper()
				q.SetBusyPoll(budget)
				timer := time.AfterFunc(30*time.Millisecond, func() { sender.WriteToUDPAddrPort([]byte("late"), q.LocalAddr()) })
				defer timer.Stop()
				got, _ := receiveN(t, q, 1, 0, 100)
				if string(got[0]) != "late" {
					t.Fatalf("got %q", got[0])
				}
			}
			late(5 * time.Second)
			if o := busy(); !o.Active || o.Count != 1 || o.Reason != "budget 5s" {
				t.Errorf("busy-poll after a datagram within the budget: %+v, want active, count 1", o)
			}
			late(5 * time.Millisecond) // spent before the datagram comes
			late(0)
			if o := busy(); o.Active || o.Count != 1 {
				t.Errorf("busy-poll after datagrams past the budget and without one: %+v, want inactive, count 1", o)
			}
		})
	}
}

// TestKernelDropped fills a queue's receive buffer without receiving:
// what does not fit the kernel drops and KernelDropped counts.
func TestKernelDropped(t *testing.T) {
	ns := underlayNetns(t)
	q := openIn(t, ns, Config{Addr: ipv4.node}).Queues()[0]
	sender := ns.ListenUDP(t, netip.AddrPortFrom(ipv4.node, 0))
	if n, err := q.KernelDropped(); err != nil || n != 0 {
		t.Fatalf("before: %d, %v; want 0", n, err)
	}
	// A 1,400-byte datagram takes over 2 KiB of the buffer, which holds
	// 8 MiB (sockBuf, doubled by the kernel): room for under 4,000.
	const sent = 8000
	payload := make([]byte, 1400)
	for i := 0; i < sent; i++ {
		if _, err := sender.WriteToUDPAddrPort(payload, q.LocalAddr()); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	n, err := q.KernelDropped()
	if err != nil || n < sent/4 || n > sent {
		t.Errorf("after %d datagrams unread: %d, %v; want at least %d", sent, n, err, sent/4)
	}
	q.Close()
	if _, err := q.KernelDropped(); err == nil {
		t.Error("KernelDropped of a closed queue: no error")
	}
}
