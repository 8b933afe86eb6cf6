package udp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/internal/nstest"
)

const waitFor = 5 * time.Second

var nodeIP = netip.MustParseAddr("192.0.2.1")

// underlayNetns makes a namespace whose node address 192.0.2.1/24 sits on
// one end of a veth pair with MTU 1280, so that the namespace has a local
// address, an on-link subnet, a small route MTU and no default route.
func underlayNetns(t *testing.T) *nstest.Netns {
	t.Helper()
	ns := newNetns(t)
	ipIn(t, ns, "link", "set", "lo", "up")
	ipIn(t, ns, "link", "add", "veth0", "mtu", "1280", "type", "veth", "peer", "name", "veth1")
	ipIn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "veth0")
	ipIn(t, ns, "link", "set", "veth0", "up")
	ipIn(t, ns, "link", "set", "veth1", "up")
	return ns
}

func listenIn(t *testing.T, ns *nstest.Netns, local netip.AddrPort) *Device {
	t.Helper()
	var d *Device
	inNetns(t, ns, func() error {
		var err error
		d, err = Listen(local)
		return err
	})
	t.Cleanup(func() { d.Close() })
	return d
}

func udpConnIn(t *testing.T, ns *nstest.Netns, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNetns(t, ns, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func sum16(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// packet builds an IPv4/UDP packet with valid checksums, as the engine
// would.
func packet(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = unix.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], sum16(p[:20], 0))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	var pseudo uint32
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(p[i])<<8 | uint32(p[i+1])
	}
	pseudo += unix.IPPROTO_UDP + uint32(len(u))
	c := sum16(u, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return p
}

// closeAfter closes d if the test is still running after waitFor, which
// unblocks any Read so that a missing packet fails the test instead of
// hanging it.
func closeAfter(t *testing.T, d *Device) {
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	t.Cleanup(func() { timer.Stop() })
}

func TestReadSynthesisesHeaders(t *testing.T) {
	ns := underlayNetns(t)
	d := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	local := d.LocalAddr()
	if local.Addr() != nodeIP || local.Port() == 0 {
		t.Fatalf("LocalAddr = %v", local)
	}
	if want := "udp:" + local.String(); d.Name() != want {
		t.Errorf("Name = %q, want %q", d.Name(), want)
	}
	sender := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	senderAddr := sender.LocalAddr().(*net.UDPAddr).AddrPort()

	payloads := [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{0x5a}, 1200), []byte("last")}
	for _, p := range payloads {
		if _, err := sender.WriteToUDPAddrPort(p, local); err != nil {
			t.Fatal(err)
		}
	}
	closeAfter(t, d)

	const offset = 10
	bufs := make([][]byte, d.BatchSize())
	for i := range bufs {
		bufs[i] = bytes.Repeat([]byte{0xee}, offset+HeaderLen+1500)
	}
	sizes := make([]int, len(bufs))
	var got [][]byte
	for len(got) < len(payloads) {
		n, err := d.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatalf("Read after %d datagrams: %v", len(got), err)
		}
		for i := 0; i < n; i++ {
			if !bytes.Equal(bufs[i][:offset], bytes.Repeat([]byte{0xee}, offset)) {
				t.Fatalf("headroom of buffer %d touched: %x", i, bufs[i][:offset])
			}
			got = append(got, bytes.Clone(bufs[i][offset:offset+sizes[i]]))
		}
	}
	for i, p := range got {
		want := payloads[i]
		if len(p) != HeaderLen+len(want) {
			t.Fatalf("packet %d: %d bytes, want %d", i, len(p), HeaderLen+len(want))
		}
		ip, u := p[:20], p[20:28]
		checks := []struct {
			what      string
			got, want any
		}{
			{"version/IHL", ip[0], byte(0x45)},
			{"total length", int(binary.BigEndian.Uint16(ip[2:])), len(p)},
			{"TTL", ip[8], byte(64)},
			{"protocol", ip[9], byte(unix.IPPROTO_UDP)},
			{"header checksum verifies", sum16(ip, 0), uint16(0)},
			{"source", netip.AddrFrom4([4]byte(ip[12:16])), senderAddr.Addr()},
			{"destination", netip.AddrFrom4([4]byte(ip[16:20])), local.Addr()},
			{"source port", binary.BigEndian.Uint16(u[0:]), senderAddr.Port()},
			{"destination port", binary.BigEndian.Uint16(u[2:]), local.Port()},
			{"UDP length", int(binary.BigEndian.Uint16(u[4:])), 8 + len(want)},
			{"UDP checksum", binary.BigEndian.Uint16(u[6:]), uint16(0)},
			{"payload", string(p[28:]), string(want)},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("packet %d: %s = %v, want %v", i, c.what, c.got, c.want)
			}
		}
	}
}

func TestReadDropsOversizedDatagram(t *testing.T) {
	ns := underlayNetns(t)
	d := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	sender := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	for _, p := range [][]byte{[]byte("a"), make([]byte, 500), []byte("b")} {
		if _, err := sender.WriteToUDPAddrPort(p, d.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	closeAfter(t, d)
	bufs := [][]byte{make([]byte, HeaderLen+100), make([]byte, HeaderLen+100), make([]byte, HeaderLen+100)}
	sizes := make([]int, 3)
	var got []string
	for len(got) < 2 {
		n, err := d.Read(bufs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			got = append(got, string(bufs[i][HeaderLen:sizes[i]]))
		}
	}
	if strings.Join(got, ",") != "a,b" || d.RXDropped() != 1 {
		t.Errorf("got %q, RXDropped %d; want [a b] and 1", got, d.RXDropped())
	}
}

func TestWriteBatch(t *testing.T) {
	ns := underlayNetns(t)
	d := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 8472))
	recv := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	recv.SetReadBuffer(4 << 20)
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

	const count = 100
	const offset = 16
	var bufs [][]byte
	want := map[string]bool{}
	bad := 0
	for i := 0; i < count; i++ {
		payload := fmt.Sprintf("packet %d", i)
		want[payload] = true
		src := netip.AddrPortFrom(nodeIP, uint16(40000+i))
		bufs = append(bufs, append(make([]byte, offset), packet(src, dst, []byte(payload))...))
		// Spread refused packets through the batch: each must cost only
		// itself.
		switch i % 25 {
		case 3:
			bufs = append(bufs, make([]byte, offset+10)) // shorter than a header
			bad++
		case 7:
			v6 := packet(src, dst, []byte("v6"))
			v6[0] = 0x60
			bufs = append(bufs, append(make([]byte, offset), v6...))
			bad++
		case 11:
			unroutable := netip.MustParseAddrPort("203.0.113.5:8472") // ENETUNREACH
			bufs = append(bufs, append(make([]byte, offset), packet(src, unroutable, []byte("x"))...))
			bad++
		case 13:
			onlink := netip.MustParseAddrPort("192.0.2.77:8472") // EMSGSIZE: route MTU 1280
			bufs = append(bufs, append(make([]byte, offset), packet(src, onlink, make([]byte, 1300))...))
			bad++
		}
	}
	n, err := d.Write(bufs, offset)
	if err != nil {
		t.Fatal(err)
	}
	if n != count || d.TXErrors() != uint64(bad) {
		t.Errorf("Write accepted %d, TXErrors %d; want %d and %d", n, d.TXErrors(), count, bad)
	}

	recv.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	for len(want) > 0 {
		m, src, err := recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d packets missing: %v", len(want), err)
		}
		payload := string(buf[:m])
		if !want[payload] {
			t.Fatalf("unexpected or duplicate payload %q", payload)
		}
		var i int
		fmt.Sscanf(payload, "packet %d", &i)
		if src != netip.AddrPortFrom(nodeIP, uint16(40000+i)) {
			t.Errorf("%q came from %v: the engine's source port was not kept", payload, src)
		}
		delete(want, payload)
	}
}

func TestConcurrentWrite(t *testing.T) {
	ns := underlayNetns(t)
	d := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	recv := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	recv.SetReadBuffer(4 << 20)
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()

	const writers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := make([][]byte, each)
			for i := range bufs {
				bufs[i] = packet(netip.AddrPortFrom(nodeIP, 1000), dst, []byte{byte(w), byte(i)})
			}
			if n, err := d.Write(bufs, 0); n != each || err != nil {
				errs <- fmt.Errorf("writer %d: Write = %d, %v", w, n, err)
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
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	ns := underlayNetns(t)
	d := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	peer := udpConnIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	peer.SetReadBuffer(4 << 20)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	const runs, batch = 100, 4
	// Queue enough datagrams that no measured Read ever blocks: AllocsPerRun
	// makes one extra warm-up call.
	for i := 0; i < batch*(runs+2); i++ {
		if _, err := peer.WriteToUDPAddrPort([]byte("datagram"), d.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	closeAfter(t, d)
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 64+HeaderLen+1500)
	}
	sizes := make([]int, batch)
	if a := testing.AllocsPerRun(runs, func() {
		if _, err := d.Read(bufs, sizes, 64); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Read: %v allocations per call", a)
	}

	out := make([][]byte, batch)
	for i := range out {
		out[i] = append(make([]byte, 64), packet(d.LocalAddr(), peerAddr, []byte("out"))...)
	}
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := d.Write(out, 64); n != batch || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Write: %v allocations per call", a)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	ns := underlayNetns(t)
	d := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	errc := make(chan error, 1)
	go func() {
		_, err := d.Read([][]byte{make([]byte, 2048)}, make([]int, 1), 0)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Read returned %v, want ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := d.Write([][]byte{packet(d.LocalAddr(), d.LocalAddr(), nil)}, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	ns := underlayNetns(t)
	taken := listenIn(t, ns, netip.AddrPortFrom(nodeIP, 0))
	inNetns(t, ns, func() error {
		cases := []struct {
			addr  netip.AddrPort
			errno error
			text  string
		}{
			{taken.LocalAddr(), unix.EADDRINUSE, "in use"},
			{netip.MustParseAddrPort("198.51.100.1:8472"), unix.EADDRNOTAVAIL, "not an address"},
			{netip.MustParseAddrPort("[2001:db8::1]:8472"), nil, "not supported yet"},
			{netip.MustParseAddrPort("0.0.0.0:8472"), nil, "unspecified"},
		}
		for _, c := range cases {
			d, err := Listen(c.addr)
			if err == nil {
				d.Close()
				return fmt.Errorf("Listen(%v) succeeded", c.addr)
			}
			if (c.errno != nil && !errors.Is(err, c.errno)) || !strings.Contains(err.Error(), c.text) {
				return fmt.Errorf("Listen(%v): unclear error %v", c.addr, err)
			}
		}
		return nil
	})
}
