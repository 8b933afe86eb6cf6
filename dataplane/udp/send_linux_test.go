package udp

import (
	"fmt"
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

// A GSO run sent to a GRO socket leaves as segmented messages, arrives
// coalesced and is cut back into the original payloads, in order.
func TestGSOToGRO(t *testing.T) {
	ns := underlayNetns(t)
	tx := openIn(t, ns, Config{Port: 8472, GSO: true}).Queues()[0]
	rx := openIn(t, ns, Config{Port: 9472, GRO: true}).Queues()[0]

	const offset = 32
	const count = 150 // more than one Receive's batch: the rest waits for the next
	bufs, meta := sizedPayloads(count, 1200, offset, rx.LocalAddr(), 7)
	if n, err := tx.Send(bufs, meta, offset); err != nil || n != count {
		t.Fatalf("Send = %d, %v", n, err)
	}
	got, metas := receiveN(t, rx, count, offset, 2048)
	for i, p := range got {
		want := fmt.Sprintf("datagram %04d", i)
		if len(p) != 1200 || string(p[:len(want)]) != want {
			t.Fatalf("payload %d: %d bytes %q", i, len(p), p[:min(len(p), len(want))])
		}
		if metas[i].Remote != netip.AddrPortFrom(nodeIP, tx.SourcePort(7)) || metas[i].LocalPort != 9472 {
			t.Fatalf("payload %d meta %+v", i, metas[i])
		}
	}
	if d := rx.RXDropped(); d != 0 {
		t.Fatalf("%d datagrams dropped on receive", d)
	}
	gso, gro := offload(t, tx, "udp-gso"), offload(t, rx, "udp-gro")
	if !gso.Active || gso.Count == 0 || gso.Largest <= 1500 {
		t.Errorf("udp-gso on the sender: %+v", gso)
	}
	if !gro.Active || gro.Count == 0 || gro.Largest <= 1500 {
		t.Errorf("udp-gro on the receiver: %+v", gro)
	}
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

	ns := underlayNetns(t)
	tx := openIn(t, ns, Config{Port: 8472, GSO: true, GRO: true}).Queues()[0]
	rx := openIn(t, ns, Config{Port: 9472, GSO: true, GRO: true}).Queues()[0]
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

	ns := underlayNetns(t)
	q := openIn(t, ns, Config{Port: 8472, GSO: true, GRO: true}).Queues()[0]
	recv := ns.ListenUDP(t, netip.AddrPortFrom(nodeIP, 0))
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
	if o := offload(t, q, "udp-gso"); o.Active || !strings.Contains(o.Reason, "input/output error") {
		t.Fatalf("udp-gso after EIO: %+v", o)
	}
	if q.TXErrors() != 0 {
		t.Fatalf("%d tx errors", q.TXErrors())
	}
}
