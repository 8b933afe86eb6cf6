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
