package udp

import (
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// BenchmarkSendReceive moves batches of tunnel-sized payloads from one
// underlay to another on the node's own address (the loopback device), as
// the engine does: one Send of a batch, Receives until it has all arrived.
// Per family, with the offloads on (the agent's setting) and off.
func BenchmarkSendReceive(b *testing.B) {
	for _, f := range families {
		for _, offloads := range []bool{true, false} {
			name := f.name + "/plain"
			if offloads {
				name = f.name + "/offloads"
			}
			b.Run(name, func(b *testing.B) { benchSendReceive(b, f, offloads) })
		}
	}
}

func benchSendReceive(b *testing.B, f family, offloads bool) {
	const batch, size, offset = 64, 1200, 64
	ns := underlayNetns(b)
	tx := openIn(b, ns, Config{Addr: f.node, GSO: offloads, GRO: offloads}).Queues()[0]
	rx := openIn(b, ns, Config{Addr: f.node, GSO: offloads, GRO: offloads}).Queues()[0]
	// A lost payload would block Receive: closing rx ends the run.
	watchdog := time.AfterFunc(waitFor, func() { rx.Close() })
	defer watchdog.Stop()
	out, meta := sizedPayloads(batch, size, offset, rx.LocalAddr(), 1)
	in := make([][]byte, batch)
	for i := range in {
		in[i] = make([]byte, offset+2048)
	}
	sizes, rmeta := make([]int, batch), make([]packetio.Meta, batch)
	b.SetBytes(batch * size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		watchdog.Reset(waitFor)
		if n, err := tx.Send(out, meta, offset); n != batch || err != nil {
			b.Fatalf("Send = %d, %v", n, err)
		}
		for got := 0; got < batch; {
			n, err := rx.Receive(in, sizes, rmeta, offset)
			if err != nil {
				b.Fatalf("Receive after %d of %d: %v", got, batch, err)
			}
			got += n
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "pps")
	if d := rx.RXDropped() + tx.TXErrors(); d != 0 {
		b.Fatalf("%d payloads lost", d)
	}
}
