package udp

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

func offload(t *testing.T, q *Queue, name string) packetio.Offload {
	t.Helper()
	for _, o := range q.Offloads() {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("%s: no offload %q in %+v", q.Name(), name, q.Offloads())
	return packetio.Offload{}
}

// sizedPayloads makes count payloads of size bytes, numbered.
func sizedPayloads(count, size, offset int, to netip.AddrPort, flow uint32) ([][]byte, []packetio.Meta) {
	bufs, meta := make([][]byte, count), make([]packetio.Meta, count)
	for i := range bufs {
		bufs[i] = make([]byte, offset+size)
		copy(bufs[i][offset:], fmt.Sprintf("datagram %04d", i))
		meta[i] = packetio.Meta{Remote: to, Flow: flow}
	}
	return bufs, meta
}

// A GSO run leaves as segmented messages and crosses the veth whole; a
// GRO socket receives it coalesced and cuts it back into the original
// payloads, a plain one gets the datagrams the kernel cut, in order either
// way, the last, shorter one included.
func TestGSOToGRO(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		for _, gro := range []bool{true, false} {
			t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
				node, peer := twoHosts(t)
				tx := openIn(t, node, Config{Addr: f.node, Port: 8472, GSO: true}).Queues()[0]
				rx := openIn(t, peer, Config{Addr: f.peer, Port: 9472, GRO: gro}).Queues()[0]

				const offset = 32
				const count = 150 // more than one Receive's batch: the rest waits for the next
				const size, last = 1200, 700
				bufs, meta := sizedPayloads(count, size, offset, rx.LocalAddr(), 7)
				bufs[count-1] = bufs[count-1][:offset+last]
				if n, err := tx.Send(bufs, meta, offset); err != nil || n != count {
					t.Fatalf("Send = %d, %v (tx errors %d)", n, err, tx.TXErrors())
				}
				got, metas := receiveN(t, rx, count, offset, 2048)
				for i, p := range got {
					want, wantLen := fmt.Sprintf("datagram %04d", i), size
					if i == count-1 {
						wantLen = last
					}
					if len(p) != wantLen || string(p[:len(want)]) != want {
						t.Fatalf("payload %d: %d bytes %q, want %d bytes %q", i, len(p), p[:min(len(p), len(want))], wantLen, want)
					}
					if metas[i].Remote != netip.AddrPortFrom(f.node, tx.SourcePort(7)) || metas[i].LocalPort != 9472 {
						t.Fatalf("payload %d meta %+v", i, metas[i])
					}
				}
				if d := rx.RXDropped(); d != 0 {
					t.Fatalf("%d datagrams dropped on receive", d)
				}
				if gso := offload(t, tx, "udp-gso"); !gso.Active || gso.Count == 0 || gso.Largest <= routeMTU {
					t.Errorf("udp-gso on the sender: %+v", gso)
				}
				groOK := func(o packetio.Offload) bool { return o.Active && o.Count > 0 && o.Largest > routeMTU }
				if !gro {
					groOK = func(o packetio.Offload) bool { return !o.Active && o.Count == 0 }
				}
				if o := offload(t, rx, "udp-gro"); !groOK(o) {
					t.Errorf("udp-gro on the receiver: %+v", o)
				}
			})
		}
	})
}

// A kernel without UDP_GRO and UDP_SEGMENT (played by failing the socket
// options) does not stop the underlay: it sends and receives single
// datagrams and says why each offload is off.
func TestOffloadsRefused(t *testing.T) {
	orig := setsockoptInt
	setsockoptInt = func(fd, level, opt, value int) error {
		if level == solUDP && (opt == udpGRO || opt == udpSegment) {
			return unix.ENOPROTOOPT
		}
		return orig(fd, level, opt, value)
	}
	t.Cleanup(func() { setsockoptInt = orig })

	forEachFamily(t, func(t *testing.T, f family) {
		ns := underlayNetns(t)
		tx := openIn(t, ns, Config{Addr: f.node, Port: 8472, GSO: true, GRO: true}).Queues()[0]
		rx := openIn(t, ns, Config{Addr: f.node, Port: 9472, GSO: true, GRO: true}).Queues()[0]
		for _, q := range []*Queue{tx, rx} {
			for _, name := range []string{"udp-gso", "udp-gro"} {
				if o := offload(t, q, name); o.Active || !strings.Contains(o.Reason, "protocol not available") {
					t.Fatalf("%s after refusal: %+v", name, o)
				}
			}
		}
		const offset, count = 32, 40
		bufs, meta := sizedPayloads(count, 1000, offset, rx.LocalAddr(), 1)
		if n, err := tx.Send(bufs, meta, offset); err != nil || n != count {
			t.Fatalf("Send = %d, %v", n, err)
		}
		got, _ := receiveN(t, rx, count, offset, 2048)
		for i, p := range got {
			want := fmt.Sprintf("datagram %04d", i)
			if len(p) != 1000 || string(p[:len(want)]) != want {
				t.Fatalf("got %d bytes %q, want %q", len(p), p[:len(want)], want)
			}
		}
		if o := offload(t, rx, "udp-gro"); o.Count != 0 {
			t.Fatalf("udp-gro counted work while off: %+v", o)
		}
		if o := offload(t, tx, "udp-gso"); o.Count != 0 {
			t.Fatalf("udp-gso counted work while off: %+v", o)
		}
	})
}

// The kernel refuses a UDP_SEGMENT send with EIO when the route's device
// cannot checksum the segments (kernels before 6.x without checksum
// offload on that device) or an IPsec policy covers the destination; this
// one accepts both cases, so the refusal is played at the system call.
// The pool then falls back to single datagrams for good, this send
// included, and nothing is lost.
func TestGSOFallsBackOnEIO(t *testing.T) {
	orig := sendmmsgFn
	var refused int
	sendmmsgFn = func(fd uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno) {
		if hdrs[0].Hdr.Controllen > 0 { // a UDP_SEGMENT message first
			refused++
			return 0, unix.EIO
		}
		return orig(fd, hdrs)
	}
	t.Cleanup(func() { sendmmsgFn = orig })

	forEachFamily(t, func(t *testing.T, f family) {
		refused = 0
		ns := underlayNetns(t)
		q := openIn(t, ns, Config{Addr: f.node, Port: 8472, GSO: true, GRO: true}).Queues()[0]
		recv := ns.ListenUDP(t, netip.AddrPortFrom(f.node, 0))
		dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

		const offset, count = 32, 10
		bufs, meta := sizedPayloads(count, 1000, offset, dst, 3)
		for round := 0; round < 2; round++ {
			if n, err := q.Send(bufs, meta, offset); err != nil || n != count {
				t.Fatalf("round %d: Send = %d, %v (tx errors %d)", round, n, err, q.TXErrors())
			}
			recv.SetReadDeadline(time.Now().Add(waitFor))
			buf := make([]byte, 2048)
			for i := 0; i < count; i++ {
				n, err := recv.Read(buf)
				want := fmt.Sprintf("datagram %04d", i)
				if err != nil || n != 1000 || string(buf[:len(want)]) != want {
					t.Fatalf("round %d datagram %d: %d bytes %q, %v", round, i, n, buf[:min(n, len(want))], err)
				}
			}
		}
		if refused != 1 {
			t.Fatalf("%d UDP_SEGMENT sends tried, want 1 (then no more)", refused)
		}
		o := offload(t, q, "udp-gso")
		if o.Active || !strings.Contains(o.Reason, "input/output error") || !strings.Contains(o.Reason, dst.String()) {
			t.Fatalf("udp-gso after EIO to %v: %+v", dst, o)
		}
		if q.TXErrors() != 0 {
			t.Fatalf("%d tx errors", q.TXErrors())
		}
	})
}

// A payload too big for the route: over IPv4, whose sockets send without
// DF like the kernel's vxlan, the kernel fragments it; over IPv6, where
// nothing fragments a tunnel packet, it is refused (EMSGSIZE) and counted.
// One above the largest UDP datagram is refused over both. The payloads
// around them still go.
func TestSendTooBig(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		q := openIn(t, node, Config{Addr: f.node, GSO: true, SourcePorts: 2}).Queues()[0]
		recv := peer.ListenUDP(t, netip.AddrPortFrom(f.peer, 0))
		recv.SetReadBuffer(4 << 20)
		dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

		const offset = 8
		const aboveMTU, aboveMax = routeMTU + 200, 65600
		var bufs [][]byte
		var meta []packetio.Meta
		// The big ones take a socket of their own (flow 1), so that no
		// small one joins them in a segmented message.
		for i, size := range []int{0, aboveMTU, 0, aboveMax, 0} {
			b := make([]byte, offset+size)
			flow := uint32(1)
			if size == 0 {
				b, flow = append(b, fmt.Sprintf("small %d", i)...), 0
			}
			bufs, meta = append(bufs, b), append(meta, packetio.Meta{Remote: dst, Flow: flow})
		}
		want := map[int]int{len("small 0"): 3} // datagrams expected at the peer, by size
		refused := 2
		if f.node.Is4() {
			want[aboveMTU], refused = 1, 1
		}
		n, err := q.Send(bufs, meta, offset)
		if err != nil || n != len(bufs)-refused || q.TXErrors() != uint64(refused) {
			t.Fatalf("Send = %d, %v, TXErrors %d; want %d, nil, %d", n, err, q.TXErrors(), len(bufs)-refused, refused)
		}
		recv.SetReadDeadline(time.Now().Add(waitFor))
		got := map[int]int{}
		buf := make([]byte, 1<<16)
		for k := 0; k < n; k++ {
			m, _, err := recv.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("received %v of %d: %v", got, n, err)
			}
			got[m]++
		}
		recv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if m, _, err := recv.ReadFromUDPAddrPort(buf); err == nil {
			got[m]++
		}
		if !maps.Equal(got, want) {
			t.Fatalf("received datagrams by size %v, want %v", got, want)
		}
	})
}
