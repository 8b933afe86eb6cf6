package afxdp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

const (
	headroom = 64
	bufSize  = headroom + 2048
)

func makeBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	return bufs, make([]int, n)
}

// readN reads until want packets arrived on q (or Read fails) and returns
// copies of them.
func readN(q *Queue, want int) ([][]byte, error) {
	bufs, sizes := makeBufs(q.BatchSize())
	var got [][]byte
	for len(got) < want {
		n, err := receivePackets(q, bufs, sizes, headroom)
		if err != nil {
			return got, err
		}
		for i := 0; i < n; i++ {
			got = append(got, bytes.Clone(bufs[i][headroom:headroom+sizes[i]]))
		}
	}
	return got, nil
}

// checkUDP verifies an IPv4/UDP packet (lengths, header checksum, no
// options) from src (any port when src's is 0) to dst and returns its
// payload.
func checkUDP(p []byte, src, dst netip.AddrPort) ([]byte, error) {
	ip := encap.IPv4(p)
	if len(p) < encap.OuterV4Len || !ip.IsValid(len(p)) || ip.HeaderLen() != encap.IPv4MinLen || ip.TotalLen() != len(p) || !ip.HeaderChecksumValid() {
		return nil, fmt.Errorf("not an IPv4/UDP packet of its length without options: % x", p[:min(len(p), 28)])
	}
	u, ok := pkttest.ParseUDP4(p)
	if !ok {
		return nil, fmt.Errorf("not UDP: % x", p[:28])
	}
	if u.Src.Addr() != src.Addr() || (src.Port() != 0 && u.Src.Port() != src.Port()) || u.Dst != dst {
		return nil, fmt.Errorf("%v -> %v, want %v -> %v", u.Src, u.Dst, src, dst)
	}
	if encap.UDP(p[encap.IPv4MinLen:]).Length() != len(p)-encap.IPv4MinLen {
		return nil, fmt.Errorf("UDP length %d, want %d", encap.UDP(p[encap.IPv4MinLen:]).Length(), len(p)-encap.IPv4MinLen)
	}
	return u.Payload, nil
}

// TestTraffic is the end-to-end test on a veth pair: tunnel traffic to
// the node reaches the queue, the rest the kernel, and packets written to
// the queue reach the peer, with ARP resolved on the way.
func TestTraffic(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	info := u.Info()
	t.Logf("info: %+v", info)
	if info.XDPMode != "native" || info.Bind != "copy" || info.Queues != 1 || info.Device != "veth0" {
		t.Errorf("info = %+v, want native, copy, 1 queue on veth0", info)
	}
	if shown, out := xdpShown(t, p.a, "veth0"); !shown || !strings.Contains(out, progName) {
		t.Errorf("ip link does not show %s attached:\n%s", progName, out)
	}
	qs := u.Queues()
	if len(qs) != 1 || qs[0].Name() != "afxdp:veth0/q0" {
		t.Fatalf("queues: %v", qs)
	}
	q := qs[0]
	closeAfter(t, u, 20*time.Second)

	// Receive: 200 datagrams to the tunnel port, from an ordinary socket.
	const count = 200
	node := netip.AddrPortFrom(addrA, 8472)
	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
	senderAddr := sender.LocalAddr().(*net.UDPAddr).AddrPort()

	// Kernel-bound traffic that must not be diverted.
	other := udpConnIn(t, p.a, netip.AddrPortFrom(addrA, 9999))
	var lis net.Listener
	inNetns(t, p.a, func() error {
		var err error
		lis, err = net.Listen("tcp4", "192.0.2.1:8080")
		return err
	})
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello over tcp"))
			c.Close()
		}
	}()

	type result struct {
		pkts [][]byte
		err  error
	}
	rxDone := make(chan result, 1)
	go func() {
		pkts, err := readN(q, count)
		rxDone <- result{pkts, err}
	}()
	for i := range count {
		if _, err := sender.WriteToUDPAddrPort(fmt.Appendf(nil, "rx-%03d", i), node); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sender.WriteToUDPAddrPort([]byte("to the kernel"), netip.AddrPortFrom(addrA, 9999)); err != nil {
		t.Fatal(err)
	}
	r := <-rxDone
	if r.err != nil {
		t.Fatalf("read after %d packets: %v", len(r.pkts), r.err)
	}
	seen := map[string]bool{}
	for _, pkt := range r.pkts {
		payload, err := checkUDP(pkt, senderAddr, node)
		if err != nil {
			t.Fatal(err)
		}
		seen[string(payload)] = true
	}
	for i := range count {
		if !seen[fmt.Sprintf("rx-%03d", i)] {
			t.Fatalf("datagram %d missing", i)
		}
	}

	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := other.Read(buf)
	if err != nil || string(buf[:n]) != "to the kernel" {
		t.Fatalf("UDP to port 9999 did not reach the kernel socket: %q, %v", buf[:n], err)
	}
	var reply []byte
	inNetns(t, p.b, func() error {
		c, err := net.DialTimeout("tcp4", "192.0.2.1:8080", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		reply, err = io.ReadAll(c)
		return err
	})
	if string(reply) != "hello over tcp" {
		t.Fatalf("TCP through the XDP program: got %q", reply)
	}
	if _, err := exec.LookPath("ping"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", p.b.Name, "ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.1").CombinedOutput()
		if err != nil {
			t.Fatalf("ping through the XDP program: %v\n%s", err, out)
		}
	}
	if st := u.Stats(); st.RxFrames != count || st.RxDropped != 0 {
		t.Fatalf("after receive: rx %d dropped %d, want %d and 0", st.RxFrames, st.RxDropped, count)
	}

	// Send: 200 packets to B's socket, starting with an empty neighbour
	// table so that the first ones wait for ARP.
	ipIn(t, p.a, "neigh", "flush", "dev", "veth0")
	if out := ipIn(t, p.a, "neigh", "show", "dev", "veth0"); strings.Contains(out, "lladdr") {
		t.Fatalf("neighbour table not empty:\n%s", out)
	}
	rcv := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 7777))
	from := netip.AddrPortFrom(addrA, 5555)
	to := netip.AddrPortFrom(addrB, 7777)
	pkts := make([][]byte, count)
	for i := range pkts {
		pkts[i] = udpPacket(from, to, fmt.Appendf(nil, "tx-%03d", i), headroom)
	}
	got := make(chan error, 1)
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, 2048)
		rcv.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(seen) < count {
			n, src, err := rcv.ReadFromUDPAddrPort(buf)
			if err != nil {
				got <- fmt.Errorf("after %d datagrams: %w", len(seen), err)
				return
			}
			// The flow's source port: the test's port is its flow.
			if want := netip.AddrPortFrom(from.Addr(), q.SourcePort(uint32(from.Port()))); src != want {
				got <- fmt.Errorf("datagram from %v, want %v", src, want)
				return
			}
			seen[string(buf[:n])] = true
		}
		got <- nil
	}()
	start := time.Now()
	accepted := 0
	for i := 0; i < count; i += 32 {
		n, err := sendPackets(q, pkts[i:min(i+32, count)], headroom)
		if err != nil {
			t.Fatal(err)
		}
		accepted += n
	}
	if accepted != count {
		t.Fatalf("Write accepted %d of %d", accepted, count)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("sent %d packets (ARP included) in %v: %.0f packets/s", count, elapsed, count/elapsed.Seconds())
	if out := ipIn(t, p.a, "neigh", "show", "192.0.2.2", "dev", "veth0"); !strings.Contains(out, "lladdr") {
		t.Errorf("kernel has no neighbour entry for B:\n%s", out)
	}

	// A second round goes out directly.
	for i := 0; i < count; i += 64 {
		if _, err := sendPackets(q, pkts[i:min(i+64, count)], headroom); err != nil {
			t.Fatal(err)
		}
	}
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range count {
		if _, err := rcv.Read(buf); err != nil {
			t.Fatalf("second round, datagram %d: %v", i, err)
		}
	}

	quietAudit(t, u)
	st := u.Stats()
	t.Logf("stats: %+v", st)
	switch {
	case st.TxFrames != 2*count || st.TxCompleted != 2*count:
		t.Errorf("tx frames %d completed %d, want %d", st.TxFrames, st.TxCompleted, 2*count)
	case st.ArpQueued == 0 || st.ArpFlushed != st.ArpQueued || st.ArpWaiting != 0:
		t.Errorf("ARP queued %d flushed %d waiting %d: want some queued, all flushed", st.ArpQueued, st.ArpFlushed, st.ArpWaiting)
	case st.ArpRequests == 0:
		t.Errorf("no neighbour resolution was requested")
	case st.TxNoNeighbour+st.TxNoRoute+st.TxRingFull+st.TxInvalid != 0:
		t.Errorf("drops: %+v", st)
	case st.RxFrames != count || st.RxBytes != uint64(count*6): // payloads only
		t.Errorf("rx frames %d bytes %d", st.RxFrames, st.RxBytes)
	case st.FramesFree+st.FramesFill+st.FramesTx+st.FramesWaiting != st.FramesTotal || st.FramesTx != 0:
		t.Errorf("frame accounting: %+v", st)
	case st.TxBytes != uint64(2*count*(14+28+6)):
		t.Errorf("tx bytes %d", st.TxBytes)
	}

	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if q.closeAudit != nil {
		t.Fatalf("frame accounting at close: %v", q.closeAudit)
	}
	if st := u.Stats(); st.FramesFree+st.FramesFill+st.FramesTx+st.FramesWaiting != st.FramesTotal {
		t.Errorf("frame accounting after close: %+v", st)
	}
	if shown, out := xdpShown(t, p.a, "veth0"); shown {
		t.Fatalf("XDP program still attached after Close:\n%s", out)
	}
	if _, err := receivePackets(q, bufsOf(1), make([]int, 1), headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := sendPackets(q, pkts[:1], headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func bufsOf(n int) [][]byte {
	b, _ := makeBufs(n)
	return b
}
