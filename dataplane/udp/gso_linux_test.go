package udp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
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
}
