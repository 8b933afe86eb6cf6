package udp

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// What putTOS and putSegment write, parseCmsgs reads back, in either order
// and for both families; a chain that runs past its buffer yields what
// came before the bad message.
func TestCmsgBuildParse(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, tos := range []uint8{0x00, 0x01, 0x02, 0x03, 0xb8, 0xbb, 0xff} {
			var b [sendOOBLen]byte
			n := putTOS(b[:], v6, tos)
			n += putSegment(b[n:], 1400)
			if n != sendOOBLen {
				t.Fatalf("two messages take %d bytes, the buffer has %d", n, sendOOBLen)
			}
			if seg, got := parseCmsgs(b[:n]); seg != 1400 || got != tos {
				t.Fatalf("v6=%v tos %#x: parsed segment %d tos %#x", v6, tos, seg, got)
			}
			var r [recvOOBLen]byte
			n = putSegment(r[:], 900)
			n += putTOS(r[n:], v6, tos)
			if seg, got := parseCmsgs(r[:n]); seg != 900 || got != tos {
				t.Fatalf("v6=%v tos %#x, segment first: parsed segment %d tos %#x", v6, tos, seg, got)
			}
		}
	}
	// The kernel reports an IPv4 TOS as one byte of data.
	var b [recvOOBLen]byte
	c := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	c.Level, c.Type = unix.IPPROTO_IP, unix.IP_TOS
	c.SetLen(unix.CmsgLen(1))
	b[unix.CmsgLen(0)] = 0x2a
	if _, tos := parseCmsgs(b[:unix.CmsgSpace(1)]); tos != 0x2a {
		t.Fatalf("one-byte IP_TOS: %#x", tos)
	}
	// Broken chains.
	n := putSegment(b[:], 1000)
	putTOS(b[n:], false, 0xb8)
	for _, bad := range []struct {
		name    string
		oob     []byte
		seg     int
		tos     uint8
		prepare func([]byte)
	}{
		{"second message cut short", b[:n+unix.CmsgLen(0)+2], 1000, 0, nil},
		{"length past the end", b[:2*n], 1000, 0, func(o []byte) {
			(*unix.Cmsghdr)(unsafe.Pointer(&o[n])).SetLen(4 * n)
		}},
		{"length under a header", b[:2*n], 0, 0, func(o []byte) {
			(*unix.Cmsghdr)(unsafe.Pointer(&o[0])).SetLen(3)
		}},
		{"empty", nil, 0, 0, nil},
		{"shorter than a header", b[:unix.SizeofCmsghdr-1], 0, 0, nil},
	} {
		o := append([]byte(nil), bad.oob...)
		if bad.prepare != nil {
			bad.prepare(o)
		}
		if seg, tos := parseCmsgs(o); seg != bad.seg || tos != bad.tos {
			t.Errorf("%s: segment %d tos %#x, want %d %#x", bad.name, seg, tos, bad.seg, bad.tos)
		}
	}
}

// sentMsg is one message a sendmmsg call was given: its payload count and
// the control messages it carried.
type sentMsg struct {
	segs     int
	seg      int
	tos      uint8
	controls int
}

// recordSends replaces sendmmsgFn with one that notes every message
// before the kernel sends it, for the length of the test.
func recordSends(t *testing.T) func() []sentMsg {
	orig := sendmmsgFn
	var mu sync.Mutex
	var msgs []sentMsg
	sendmmsgFn = func(fd uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno) {
		n, errno := orig(fd, hdrs)
		mu.Lock()
		for i := 0; i < n; i++ {
			h := &hdrs[i].Hdr
			m := sentMsg{segs: int(h.Iovlen), controls: int(h.Controllen)}
			if h.Controllen > 0 {
				m.seg, m.tos = parseCmsgs(unsafe.Slice(h.Control, h.Controllen))
			}
			msgs = append(msgs, m)
		}
		mu.Unlock()
		return n, errno
	}
	t.Cleanup(func() { sendmmsgFn = orig })
	return func() []sentMsg {
		mu.Lock()
		defer mu.Unlock()
		return append([]sentMsg(nil), msgs...)
	}
}

// Each payload leaves with its Meta.TOS in the outer header and the
// receiver reads it back into Meta.TOS, DSCP and all four ECN codepoints,
// over both families, with GSO and with GRO or without: a GSO run takes
// only payloads of one TOS, so the batch splits where the TOS changes, and
// GRO never coalesces datagrams of different TOS.
func TestTOSOnTheWire(t *testing.T) {
	sent := recordSends(t)
	// Runs of one TOS, each a GSO run of its own.
	runs := []struct {
		tos   uint8
		count int
	}{{0xb8 | 0b10, 8}, {0x02, 5}, {0x00, 6}, {0xb8 | 0b11, 7}, {0x20 | 0b01, 4}, {0x02, 1}, {0x00, 3}}
	forEachFamily(t, func(t *testing.T, f family) {
		for _, gro := range []bool{true, false} {
			t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
				node, peer := twoHosts(t)
				tx := openIn(t, node, Config{Addr: f.node, Port: 8472, GSO: true, SourcePorts: 1}).Queues()[0]
				rx := openIn(t, peer, Config{Addr: f.peer, Port: 9472, GRO: gro}).Queues()[0]
				const offset, size = 32, 1000
				var bufs [][]byte
				var meta []packetio.Meta
				for _, r := range runs {
					b, m := sizedPayloads(r.count, size, offset, rx.LocalAddr(), 7)
					for i := range m {
						m[i].TOS = r.tos
						copy(b[i][offset:], fmt.Sprintf("datagram %04d", len(bufs)+i))
					}
					bufs, meta = append(bufs, b...), append(meta, m...)
				}
				before := len(sent())
				if n, err := tx.Send(bufs, meta, offset); err != nil || n != len(bufs) {
					t.Fatalf("Send = %d, %v (tx errors %d)", n, err, tx.TXErrors())
				}
				msgs := sent()[before:]
				if len(msgs) != len(runs) {
					t.Fatalf("%d messages for %d runs of one TOS: %+v", len(msgs), len(runs), msgs)
				}
				for i, r := range runs {
					m := msgs[i]
					wantSeg := 0
					if r.count > 1 {
						wantSeg = size
					}
					if m.segs != r.count || m.tos != r.tos || m.seg != wantSeg {
						t.Fatalf("message %d: %+v, want %d payloads of TOS %#x", i, m, r.count, r.tos)
					}
					if r.tos == 0 && r.count == 1 && m.controls != 0 {
						t.Fatalf("message %d: control messages for a single datagram of TOS 0: %+v", i, m)
					}
				}
				got, metas := receiveN(t, rx, len(bufs), offset, 2048)
				for i, p := range got {
					want := fmt.Sprintf("datagram %04d", i)
					if string(p[:len(want)]) != want {
						t.Fatalf("payload %d: %q", i, p[:len(want)])
					}
					if metas[i].TOS != meta[i].TOS {
						t.Fatalf("payload %d: received TOS %#x, sent %#x", i, metas[i].TOS, meta[i].TOS)
					}
				}
			})
		}
	})
}

// A datagram from an ordinary socket that sets no TOS arrives with TOS 0,
// and one whose sender set the TOS on its socket arrives with it: what
// the receiver reports is the IP header, not something the pool wrote.
func TestReceiveTOSFromOthers(t *testing.T) {
	forEachFamily(t, func(t *testing.T, f family) {
		node, peer := twoHosts(t)
		rx := queueIn(t, node, f.node, 0)
		c := peer.ListenUDP(t, netip.AddrPortFrom(f.peer, 0))
		send := func(tos int) {
			raw, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var serr error
			raw.Control(func(fd uintptr) {
				if f.node.Is6() {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, tos)
				}
			})
			if serr != nil {
				t.Fatal(serr)
			}
			if _, err := c.WriteToUDPAddrPort([]byte("x"), rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		send(0)
		send(0x88 | 0b11)
		_, metas := receiveN(t, rx, 2, 0, 64)
		if metas[0].TOS != 0 || metas[1].TOS != 0x8b {
			t.Fatalf("received TOS %#x and %#x, want 0 and 0x8b", metas[0].TOS, metas[1].TOS)
		}
	})
}
