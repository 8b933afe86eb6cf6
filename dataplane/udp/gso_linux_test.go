package udp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"golang.org/x/sys/unix"
)

// With GSO, runs of one flow leave in one sendmsg through a pool socket;
// every datagram must still arrive, intact, from one source port per flow
// in the dynamic range.
func TestWriteGSO(t *testing.T) {
	ns := underlayNetns(t)
	var d *Device
	inNetns(t, ns, func() (err error) {
		d, err = ListenWith(netip.AddrPortFrom(nodeIP, 8472), Options{GSO: true})
		return err
	})
	t.Cleanup(func() { d.Close() })
	if len(d.gso.socks) != gsoSockets {
		t.Fatalf("pool has %d sockets", len(d.gso.socks))
	}
	recv := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	recv.SetReadBuffer(8 << 20)
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

	const offset = 16
	want := map[string]int{} // payload -> flow
	var bufs [][]byte
	for flow := 0; flow < 3; flow++ {
		src := netip.AddrPortFrom(nodeIP, uint16(50000+flow*7))
		for i := 0; i < 40; i++ {
			payload := fmt.Sprintf("flow %d packet %04d", flow, i)
			if i == 39 {
				payload = fmt.Sprintf("f%d last", flow) // shorter: ends the run
			}
			want[payload] = flow
			bufs = append(bufs, append(make([]byte, offset), packet(src, dst, []byte(payload))...))
		}
	}
	bufs = append(bufs, make([]byte, offset+5)) // malformed: skipped
	n, err := d.Write(bufs, offset)
	if err != nil || n != 120 || d.TXErrors() != 1 {
		t.Fatalf("Write = %d, %v; TXErrors %d", n, err, d.TXErrors())
	}
	ports := map[int]uint16{}
	recv.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	for len(want) > 0 {
		m, src, err := recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d datagrams missing: %v", len(want), err)
		}
		flow, ok := want[string(buf[:m])]
		if !ok {
			t.Fatalf("unexpected or duplicate datagram %q", buf[:m])
		}
		delete(want, string(buf[:m]))
		if src.Port() < 49152 {
			t.Fatalf("source port %d below the dynamic range", src.Port())
		}
		if p, seen := ports[flow]; seen && p != src.Port() {
			t.Fatalf("flow %d left from ports %d and %d", flow, p, src.Port())
		}
		ports[flow] = src.Port()
	}
}

// A GSO run sent to a GRO socket arrives coalesced and is cut back into
// the original datagrams, in order, each behind its own headers.
func TestGSOToGRO(t *testing.T) {
	ns := underlayNetns(t)
	var tx, rx *Device
	inNetns(t, ns, func() (err error) {
		if tx, err = ListenWith(netip.AddrPortFrom(nodeIP, 8472), Options{GSO: true}); err != nil {
			return err
		}
		rx, err = ListenWith(netip.AddrPortFrom(nodeIP, 9472), Options{GRO: true})
		return err
	})
	t.Cleanup(func() { tx.Close(); rx.Close() })

	const offset = 32
	const count = 150 // more than one Read's batch: the rest waits for the next
	var bufs [][]byte
	src := netip.AddrPortFrom(nodeIP, 50001)
	dst := netip.AddrPortFrom(nodeIP, 9472)
	for i := 0; i < count; i++ {
		payload := make([]byte, 1200)
		copy(payload, fmt.Sprintf("datagram %04d", i))
		bufs = append(bufs, append(make([]byte, offset), packet(src, dst, payload)...))
	}
	if n, err := tx.Write(bufs, offset); err != nil || n != count {
		t.Fatalf("Write = %d, %v", n, err)
	}
	rbufs := make([][]byte, 64)
	sizes := make([]int, 64)
	for i := range rbufs {
		rbufs[i] = make([]byte, 2048)
	}
	got := 0
	deadline := time.Now().Add(waitFor)
	for got < count && time.Now().Before(deadline) {
		n, err := rx.Read(rbufs, sizes, offset)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			p := rbufs[i][offset : offset+sizes[i]]
			if sizes[i] != HeaderLen+1200 || p[0] != 0x45 || p[22] != 9472>>8 || p[23] != 9472&0xff {
				t.Fatalf("datagram %d: size %d header %x", got, sizes[i], p[:HeaderLen])
			}
			if want := fmt.Sprintf("datagram %04d", got); string(p[HeaderLen:HeaderLen+len(want)]) != want {
				t.Fatalf("got %q, want %q", p[HeaderLen:HeaderLen+len(want)], want)
			}
			got++
		}
	}
	if got != count {
		t.Fatalf("received %d of %d", got, count)
	}
	if d := rx.RXDropped(); d != 0 {
		t.Fatalf("%d datagrams dropped on receive", d)
	}
	// Both offloads say they are on and did the work: the sender's runs
	// left whole and the receiver got them coalesced.
	gso, gro := offload(t, tx, "udp-gso"), offload(t, rx, "udp-gro")
	if !gso.Active || gso.Count == 0 || gso.Largest <= 1500 {
		t.Errorf("udp-gso on the sender: %+v", gso)
	}
	if !gro.Active || gro.Count == 0 || gro.Largest <= 1500 {
		t.Errorf("udp-gro on the receiver: %+v", gro)
	}
}

func offload(t *testing.T, d *Device, name string) packetio.Offload {
	t.Helper()
	for _, o := range d.Offloads() {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("%s: no offload %q in %+v", d.Name(), name, d.Offloads())
	return packetio.Offload{}
}

// A kernel without UDP_GRO and UDP_SEGMENT (played by failing the socket
// options) does not stop the device: it sends and receives single
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
	var tx, rx *Device
	inNetns(t, ns, func() (err error) {
		if tx, err = ListenWith(netip.AddrPortFrom(nodeIP, 8472), Options{GSO: true, GRO: true}); err != nil {
			return err
		}
		rx, err = ListenWith(netip.AddrPortFrom(nodeIP, 9472), Options{GSO: true, GRO: true})
		return err
	})
	t.Cleanup(func() { tx.Close(); rx.Close() })
	for _, d := range []*Device{tx, rx} {
		for _, name := range []string{"udp-gso", "udp-gro"} {
			if o := offload(t, d, name); o.Active || !strings.Contains(o.Reason, "protocol not available") {
				t.Fatalf("%s after refusal: %+v", name, o)
			}
		}
	}

	const offset, count = 32, 40
	var bufs [][]byte
	for i := 0; i < count; i++ {
		payload := make([]byte, 1000)
		copy(payload, fmt.Sprintf("datagram %04d", i))
		bufs = append(bufs, append(make([]byte, offset), packet(netip.AddrPortFrom(nodeIP, 50001), netip.AddrPortFrom(nodeIP, 9472), payload)...))
	}
	if n, err := tx.Write(bufs, offset); err != nil || n != count {
		t.Fatalf("Write = %d, %v", n, err)
	}
	rbufs, sizes := make([][]byte, 64), make([]int, 64)
	for i := range rbufs {
		rbufs[i] = make([]byte, 2048)
	}
	got := 0
	deadline := time.Now().Add(waitFor)
	for got < count && time.Now().Before(deadline) {
		n, err := rx.Read(rbufs, sizes, offset)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			want := fmt.Sprintf("datagram %04d", got)
			if p := rbufs[i][offset+HeaderLen:]; sizes[i] != HeaderLen+1000 || string(p[:len(want)]) != want {
				t.Fatalf("got %d bytes %q, want %q", sizes[i], p[:len(want)], want)
			}
			got++
		}
	}
	if got != count {
		t.Fatalf("received %d of %d", got, count)
	}
	if o := offload(t, rx, "udp-gro"); o.Count != 0 {
		t.Fatalf("udp-gro counted work while off: %+v", o)
	}
}

// The kernel refuses a UDP_SEGMENT send with EIO when the route's device
// cannot checksum the segments (kernels before 6.x without checksum
// offload on that device) or an IPsec policy covers the destination; this
// one accepts both cases, so the refusal is played at the system call.
// The device then falls back to single datagrams for good, this run
// included, and nothing is lost.
func TestGSOFallsBackOnEIO(t *testing.T) {
	orig := sendmsg
	var refused int
	sendmsg = func(fd uintptr, msg *unix.Msghdr) unix.Errno {
		if msg.Controllen > 0 { // a UDP_SEGMENT run
			refused++
			return unix.EIO
		}
		return orig(fd, msg)
	}
	t.Cleanup(func() { sendmsg = orig })

	ns := underlayNetns(t)
	var d *Device
	inNetns(t, ns, func() (err error) {
		d, err = ListenWith(netip.AddrPortFrom(nodeIP, 8472), Options{GSO: true, GRO: true})
		return err
	})
	t.Cleanup(func() { d.Close() })
	recv := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

	const offset, count = 32, 10
	var bufs [][]byte
	for i := 0; i < count; i++ {
		payload := make([]byte, 1000)
		copy(payload, fmt.Sprintf("datagram %04d", i))
		bufs = append(bufs, append(make([]byte, offset), packet(netip.AddrPortFrom(nodeIP, 50001), dst, payload)...))
	}
	for round := 0; round < 2; round++ {
		if n, err := d.Write(bufs, offset); err != nil || n != count {
			t.Fatalf("round %d: Write = %d, %v (tx errors %d)", round, n, err, d.TXErrors())
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
	if o := offload(t, d, "udp-gso"); o.Active || !strings.Contains(o.Reason, "input/output error") {
		t.Fatalf("udp-gso after EIO: %+v", o)
	}
	if d.TXErrors() != 0 {
		t.Fatalf("%d tx errors", d.TXErrors())
	}
}

// Devices opened with ReusePort share the tunnel port and the kernel
// spreads flows over them.
func TestReusePort(t *testing.T) {
	ns := underlayNetns(t)
	var a, b *Device
	inNetns(t, ns, func() (err error) {
		if a, err = ListenWith(netip.AddrPortFrom(nodeIP, 8472), Options{GRO: true, ReusePort: true}); err != nil {
			return err
		}
		b, err = ListenWith(netip.AddrPortFrom(nodeIP, 8472), Options{GRO: true, ReusePort: true, Instance: 1})
		return err
	})
	t.Cleanup(func() { a.Close(); b.Close() })
	if a.Name() != "udp:192.0.2.1:8472" || b.Name() != "udp:192.0.2.1:8472#1" {
		t.Fatalf("names %q and %q", a.Name(), b.Name())
	}
	for i := 0; i < 32; i++ {
		c := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
		if _, err := c.WriteToUDPAddrPort([]byte("flow"), netip.AddrPortFrom(nodeIP, 8472)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []*Device{a, b} {
		closeAfter(t, d)
		bufs, sizes := [][]byte{make([]byte, 2048)}, make([]int, 1)
		n, err := d.Read(bufs, sizes, 0)
		if err != nil || n != 1 {
			t.Fatalf("%s: Read = %d, %v: the flows did not reach both sockets", d.Name(), n, err)
		}
	}
}
