package udp

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// patterned returns count payloads of size bytes at offset, every byte
// telling payload and position apart, so that a payload put together from
// the wrong bytes shows.
func patterned(count, size, offset int, to netip.AddrPort) ([][]byte, []packetio.Meta) {
	bufs, meta := make([][]byte, count), make([]packetio.Meta, count)
	for i := range bufs {
		bufs[i] = make([]byte, offset+size)
		for j := range size {
			bufs[i][offset+j] = byte(i*31 + j*7 + j>>8)
		}
		meta[i] = packetio.Meta{Remote: to, Flow: 3}
	}
	return bufs, meta
}

// With UDP_GRO, a message that is one payload is handed over in the buffer
// it was received into, exchanged for the caller's; a coalesced run that
// then lies partly in that smaller buffer and partly in the overflow is
// cut back into its payloads byte for byte.
func TestGROExchange(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		tx := openIn(t, node, Config{Addr: f.node, Port: 8472, GSO: true}).Queues()[0]
		rx := openIn(t, peer, Config{Addr: f.peer, Port: 9472, GRO: true}).Queues()[0]
		closeAfter(t, rx)

		const offset, bufLen = 48, 48 + 1100
		bufs := make([][]byte, 8)
		own := make(map[*byte]bool)
		for i := range bufs {
			bufs[i] = make([]byte, bufLen)
			own[&bufs[i][0]] = true
		}
		sizes, meta := make([]int, len(bufs)), make([]packetio.Meta, len(bufs))
		check := func(what string, want [][]byte) (exchanged int) {
			t.Helper()
			for got := 0; got < len(want); {
				n, err := rx.Receive(bufs, sizes, meta, offset)
				if err != nil {
					t.Fatalf("%s: Receive after %d of %d: %v", what, got, len(want), err)
				}
				for i := range n {
					if len(bufs[i]) < bufLen {
						t.Fatalf("%s: buffer %d came back with %d bytes", what, i, len(bufs[i]))
					}
					if !own[&bufs[i][0]] {
						exchanged++
					}
					if p := bufs[i][offset : offset+sizes[i]]; !bytes.Equal(p, want[got][offset:]) {
						t.Fatalf("%s: payload %d: %d bytes, want %d; first difference at %d", what, got, len(p), len(want[got])-offset, firstDiff(p, want[got][offset:]))
					}
					got++
				}
			}
			return exchanged
		}
		send := func(p [][]byte, m []packetio.Meta) {
			t.Helper()
			if n, err := tx.Send(p, m, offset); err != nil || n != len(p) {
				t.Fatalf("Send = %d, %v", n, err)
			}
		}

		// One payload: the caller gets the driver's buffer.
		one, m1 := patterned(1, 1000, offset, rx.LocalAddr())
		send(one, m1)
		if x := check("single", one); x != 1 {
			t.Fatalf("single payload: %d buffers exchanged, want 1", x)
		}
		// A run of 20 into the first message, whose first piece is now
		// the caller's old 1100 bytes: payload 1 straddles the pieces.
		run, mr := patterned(20, 1000, offset, rx.LocalAddr())
		send(run, mr)
		check("run", run)
		if o := offload(t, rx, "udp-gro"); o.Count == 0 {
			t.Fatalf("the run did not arrive coalesced: %+v", o)
		}
		// Singles again, and a run of two after them: each single goes
		// out in an exchange, and the run into the slot's new first
		// piece is still cut right.
		var all [][]byte
		for i := range 3 {
			p, m := patterned(1, 700+100*i, offset, rx.LocalAddr())
			send(p, m)
			all = append(all, p...)
		}
		pair, mp := patterned(2, 1000, offset, rx.LocalAddr())
		send(pair, mp)
		all = append(all, pair...)
		check("singles and a pair", all)
		if d := rx.RXDropped(); d != 0 {
			t.Fatalf("RXDropped = %d", d)
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkReceiveWhole receives tunnel packets of 60,000 bytes, each one
// datagram, as a UDP_GRO socket gets a TCP super-packet that another node
// sent whole (tunnel-gso), over the loopback device.
func BenchmarkReceiveWhole(b *testing.B) {
	const batch, size, offset = 8, 60000, 64
	f := families[0]
	ns := underlayNetns(b)
	tx := openIn(b, ns, Config{Addr: f.node, GSO: true}).Queues()[0]
	rx := openIn(b, ns, Config{Addr: f.node, GRO: true}).Queues()[0]
	out, meta := sizedPayloads(batch, size, offset, rx.LocalAddr(), 1)
	in := make([][]byte, batch)
	for i := range in {
		in[i] = make([]byte, offset+65535+256)
	}
	sizes, rmeta := make([]int, batch), make([]packetio.Meta, batch)
	b.SetBytes(batch * size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if n, err := tx.Send(out, meta, offset); n != batch || err != nil {
			b.Fatalf("Send = %d, %v", n, err)
		}
		for got := 0; got < batch; {
			n, err := rx.Receive(in, sizes, rmeta, offset)
			if err != nil {
				b.Fatalf("Receive: %v", err)
			}
			for i := range n {
				if sizes[i] != size {
					b.Fatalf("payload of %d bytes", sizes[i])
				}
			}
			got += n
		}
	}
	b.StopTimer()
	if d := rx.RXDropped() + tx.TXErrors(); d != 0 {
		b.Fatalf("%d payloads lost", d)
	}
}
