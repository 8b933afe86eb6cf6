package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
)

// A run of TCP segments written to an offloading device reaches the pod's
// stack as one super-packet carrying every payload byte in order: what
// the merge's writev assembles is checked on the receiving interface.
func TestWriteMergedSuperPacket(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "10.1.2.20/32")
	var fd int
	inNetns(t, nsB, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(waitFor))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	payload := make([]byte, 5*1398+700)
	for i := range payload {
		payload[i] = byte(i*13 + i>>8)
	}
	const off = 64
	bufs := cutSegments(superPacket(payload, 0x18), 1398, off)
	segs := len(bufs)
	if n, err := d.Write(bufs, off); err != nil || n != segs {
		t.Fatalf("Write: %d of %d, %v", n, segs, err)
	}
	if got := d.merged.Load(); got != uint64(segs) {
		t.Fatalf("%d segments merged, want %d", got, segs)
	}
	if !raceEnabled {
		if a := testing.AllocsPerRun(20, func() { d.Write(bufs, off) }); a != 0 {
			t.Errorf("merged Write: %v allocs per call", a)
		}
	}
	buf := make([]byte, 70000)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("no super-packet seen on eth0: %v", err)
		}
		p := buf[:n]
		if n < 40 || p[9] != unix.IPPROTO_TCP || [4]byte(p[16:20]) != [4]byte{10, 1, 2, 20} {
			continue // something else the kernel sent or received
		}
		if n != 40+len(payload) || !bytes.Equal(p[40:], payload) {
			t.Fatalf("received %d bytes, want one packet of %d with the payload in order", n, 40+len(payload))
		}
		if p[33] != 0x18 || binary.BigEndian.Uint32(p[24:]) != 0xfffff000 {
			t.Fatalf("flags %#x seq %#x", p[33], binary.BigEndian.Uint32(p[24:]))
		}
		return
	}
}

// Datagrams of one UDP flow written in a batch leave as one UDP GSO
// super-packet, and the pod's socket still receives each datagram as sent;
// a datagram of another flow ends the run and arrives too.
func TestWriteMergedUDP(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	c.SetReadBuffer(4 << 20)
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	flowA := netip.MustParseAddrPort("198.51.100.1:4000")
	flowB := netip.MustParseAddrPort("198.51.100.2:4000")

	const off = 64
	var bufs [][]byte
	var want []string
	add := func(src netip.AddrPort, payload string) {
		p := udp4(src, dst, []byte(payload))
		bufs = append(bufs, append(make([]byte, off), p...))
		want = append(want, payload)
	}
	for i := 0; i < 30; i++ {
		add(flowA, fmt.Sprintf("flow A datagram %03d ........", i)) // all the same size
	}
	add(flowA, "A short last")
	add(flowB, "flow B alone")
	if n, err := d.Write(bufs, off); err != nil || n != len(bufs) {
		t.Fatalf("Write: %d of %d, %v", n, len(bufs), err)
	}
	o := offloads(d)["tun-udp-gro"]
	if !o.Active || o.Count != 31 {
		t.Fatalf("tun-udp-gro: %+v, want 31 datagrams merged", o)
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	for i, w := range want {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if string(buf[:n]) != w {
			t.Fatalf("datagram %d from %v: %q, want %q", i, src, buf[:n], w)
		}
	}
	if !raceEnabled {
		if a := testing.AllocsPerRun(20, func() { d.Write(bufs, off) }); a != 0 {
			t.Errorf("merged UDP Write: %v allocs per call", a)
		}
	}
}

// A kernel that refuses UDP GSO writes (played at the system call with
// EINVAL) costs nothing: that run goes out datagram by datagram, later
// ones are not merged at all, and Offloads says why.
func TestWriteMergedUDPRefused(t *testing.T) {
	orig := writev
	var refused int
	writev = func(fd uintptr, iovs []unix.Iovec) unix.Errno {
		if hdr := unsafe.Slice(iovs[0].Base, vnetHdrLen); hdr[1] == vnetGSOUDPL4 {
			refused++
			return unix.EINVAL
		}
		return orig(fd, iovs)
	}
	t.Cleanup(func() { writev = orig })

	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	const off = 64
	var bufs [][]byte
	for i := 0; i < 10; i++ {
		p := udp4(netip.MustParseAddrPort("198.51.100.1:4000"), dst, fmt.Appendf(nil, "datagram %02d", i))
		bufs = append(bufs, append(make([]byte, off), p...))
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	for round := 0; round < 2; round++ {
		if n, err := d.Write(bufs, off); err != nil || n != len(bufs) {
			t.Fatalf("round %d: Write %d of %d, %v (tx errors %d)", round, n, len(bufs), err, d.TXErrors())
		}
		for i := range bufs {
			n, err := c.Read(buf)
			if want := fmt.Sprintf("datagram %02d", i); err != nil || string(buf[:n]) != want {
				t.Fatalf("round %d: got %q, %v; want %q", round, buf[:n], err, want)
			}
		}
	}
	if refused != 1 || d.TXErrors() != 0 {
		t.Fatalf("%d UDP GSO writes tried (want 1), %d tx errors", refused, d.TXErrors())
	}
	if o := offloads(d)["tun-udp-gro"]; o.Active || !strings.Contains(o.Reason, "invalid argument") {
		t.Fatalf("tun-udp-gro after refusal: %+v", o)
	}
}

// tcpSegments cuts a super-packet of n payload bytes (ACK) into segments
// of 1398 bytes behind off bytes of headroom.
func tcpSegments(n, off int) [][]byte {
	return cutSegments(superPacket(make([]byte, n), byte(encap.TCPFlagACK)), 1398, off)
}

// retouchTCP changes the TCP segment p with fn and fixes its checksum.
func retouchTCP(p []byte, fn func(encap.TCP)) []byte {
	ip := encap.IPv4(p)
	t := encap.TCP(ip.Payload())
	fn(t)
	t.SetChecksum(0)
	t.SetChecksum(encap.Checksum(t, ip.PseudoHeaderSum(encap.ProtoTCP, len(t))))
	return p
}

// The run builder takes what may merge and stops where the run must end,
// for TCP and UDP alike.
func TestCollectRun(t *testing.T) {
	const off = 8
	src, dst := netip.MustParseAddrPort("198.51.100.1:4000"), netip.MustParseAddrPort("192.0.2.10:5000")
	dgram := func(from netip.AddrPort, n int) []byte {
		return append(make([]byte, off), udp4(from, dst, make([]byte, n))...)
	}
	dgrams := func(count, n int) [][]byte {
		var bufs [][]byte
		for range count {
			bufs = append(bufs, dgram(src, n))
		}
		return bufs
	}
	cases := []struct {
		name    string
		bufs    func() [][]byte
		start   int
		usoOff  bool
		wantOK  bool
		wantRun int
	}{
		{"a whole TCP run", func() [][]byte { return tcpSegments(5*1398+100, off) }, 0, false, true, 6},
		{"from the middle", func() [][]byte { return tcpSegments(5*1398+100, off) }, 2, false, true, 4},
		{"PSH ends a TCP run", func() [][]byte {
			b := tcpSegments(5*1398+100, off)
			retouchTCP(b[2][off:], func(t encap.TCP) { t.SetFlags(encap.TCPFlagACK | encap.TCPFlagPSH) })
			return b
		}, 0, false, true, 3},
		{"a sequence gap", func() [][]byte {
			b := tcpSegments(5*1398+100, off)
			return append(b[:2], b[3:]...)
		}, 0, false, true, 2},
		{"another TCP flow", func() [][]byte {
			b := tcpSegments(5*1398+100, off)
			retouchTCP(b[3][off:], func(t encap.TCP) { binary.BigEndian.PutUint16(t[encap.TCPDestinationPortOffset:], 5202) })
			return b
		}, 0, false, true, 3},
		{"another window", func() [][]byte {
			b := tcpSegments(5*1398+100, off)
			retouchTCP(b[1][off:], func(t encap.TCP) { binary.BigEndian.PutUint16(t[encap.TCPWindowOffset:], 1) })
			return b
		}, 0, false, true, 1},
		{"a buffer without room", func() [][]byte {
			b := tcpSegments(5*1398+100, off)
			b[2] = b[2][:off]
			return b
		}, 0, false, true, 2},
		{"a TCP segment without ACK", func() [][]byte {
			b := tcpSegments(3*1398, off)
			retouchTCP(b[0][off:], func(t encap.TCP) { t.SetFlags(encap.TCPFlagSYN) })
			return b
		}, 0, false, false, 0},
		{"a UDP run", func() [][]byte { return dgrams(10, 100) }, 0, false, true, 10},
		{"a shorter datagram ends a UDP run", func() [][]byte {
			return append(append(dgrams(2, 100), dgram(src, 50)), dgrams(2, 100)...)
		}, 0, false, true, 3},
		{"a longer datagram does not join", func() [][]byte {
			return append(dgrams(2, 100), dgram(src, 150))
		}, 0, false, true, 2},
		{"another UDP flow", func() [][]byte {
			return append(append(dgrams(2, 100), dgram(netip.MustParseAddrPort("198.51.100.1:4001"), 100)), dgrams(2, 100)...)
		}, 0, false, true, 2},
		{"at most groMaxSegs", func() [][]byte { return dgrams(groMaxSegs+6, 100) }, 0, false, true, groMaxSegs},
		{"at most groMaxLen bytes", func() [][]byte { return dgrams(60, 1400) }, 0, false, true, (groMaxLen - 28) / 1400},
		{"UDP merging off", func() [][]byte { return dgrams(10, 100) }, 0, true, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &Device{}
			d.run = make([][]byte, 0, groMaxSegs)
			if c.usoOff {
				reason := "refused"
				d.usoOff.Store(&reason)
			}
			bufs := c.bufs()
			f, ok := d.mergeStart(bufs[c.start][off:], false)
			if ok != c.wantOK {
				t.Fatalf("mergeStart = %v, want %v", ok, c.wantOK)
			}
			if !ok {
				return
			}
			j := d.collectRun(bufs, nil, off, c.start, f)
			if len(d.run) != c.wantRun || j != c.start+c.wantRun {
				t.Fatalf("run of %d, next %d; want %d, %d", len(d.run), j, c.wantRun, c.start+c.wantRun)
			}
			for k, p := range d.run {
				if &p[0] != &bufs[c.start+k][off] {
					t.Fatalf("run member %d is not bufs[%d]", k, c.start+k)
				}
			}
		})
	}
}

// WriteChecked takes the engine's word for a checksum: segments marked
// checked merge without a check of their own (one whose checksum field
// is wrong merges too, which is how the test sees that no check was
// made), while Write, which checks, keeps such a segment out of the run.
func TestWriteCheckedTrustsTheEngine(t *testing.T) {
	d, _ := podDevice(t, Options{Offload: true}, "10.1.2.20/32")
	payload := make([]byte, 5*1398+700)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	const off = 64
	bufs := cutSegments(superPacket(payload, 0x18), 1398, off)
	segs := len(bufs)
	// The third segment's checksum field is off by one: as if the
	// engine's word were wrong, or as a corrupted segment looks to Write.
	tcp := bufs[2][off+encap.IPv4MinLen:]
	binary.BigEndian.PutUint16(tcp[encap.TCPChecksumOffset:], binary.BigEndian.Uint16(tcp[encap.TCPChecksumOffset:])+1)

	if n, err := d.Write(bufs, off); err != nil || n != segs {
		t.Fatalf("Write: %d of %d, %v", n, segs, err)
	}
	if got := d.merged.Load(); got >= uint64(segs) || d.checkedMerged.Load() != 0 {
		t.Fatalf("Write merged %d of %d segments (%d on the engine's word), want the bad one left out", got, segs, d.checkedMerged.Load())
	}
	before := d.merged.Load()
	checked := make([]bool, segs)
	for i := range checked {
		checked[i] = true
	}
	if n, err := d.WriteChecked(bufs, checked, off); err != nil || n != segs {
		t.Fatalf("WriteChecked: %d of %d, %v", n, segs, err)
	}
	if got := d.merged.Load() - before; got != uint64(segs) || d.checkedMerged.Load() != uint64(segs) {
		t.Fatalf("WriteChecked merged %d of %d segments, %d on the engine's word", got, segs, d.checkedMerged.Load())
	}
	if o := offloads(d)["tun-csum-complete"]; !o.Active || o.Count != uint64(segs) {
		t.Fatalf("tun-csum-complete offload %+v, want active with count %d", o, segs)
	}
	// Marked unchecked, the bad segment is checked and kept out again.
	checked[2] = false
	before, beforeChecked := d.merged.Load(), d.checkedMerged.Load()
	if n, err := d.WriteChecked(bufs, checked, off); err != nil || n != segs {
		t.Fatalf("WriteChecked: %d of %d, %v", n, segs, err)
	}
	if got := d.merged.Load() - before; got >= uint64(segs) || d.checkedMerged.Load()-beforeChecked != got {
		t.Fatalf("merged %d of %d with one unchecked bad segment, %d on the engine's word", got, segs, d.checkedMerged.Load()-beforeChecked)
	}
	if _, err := d.WriteChecked(bufs, checked[:1], off); err == nil {
		t.Fatal("fewer checked flags than packets accepted")
	}
	if !raceEnabled {
		checked[2] = true
		if a := testing.AllocsPerRun(20, func() { d.WriteChecked(bufs, checked, off) }); a != 0 {
			t.Errorf("WriteChecked: %v allocs per call", a)
		}
	}
}
