package tun

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
)

func TestReadBatch(t *testing.T) {
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	const count = 20
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	for i := 0; i < count; i++ {
		if _, err := c.WriteToUDPAddrPort([]byte{byte(i)}, remote); err != nil {
			t.Fatal(err)
		}
	}

	bufs := make([][]byte, d.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(bufs))
	// All packets are queued before the first Read, so one call must drain
	// them all; a stray packet of another kind would only add to the count.
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	defer timer.Stop()
	n, err := d.Read(bufs, sizes, 16)
	if err != nil {
		t.Fatal(err)
	}
	var seen []byte
	for i := 0; i < n; i++ {
		if u, ok := parseUDP4(bufs[i][16 : 16+sizes[i]]); ok && u.dst == remote {
			seen = append(seen, u.payload...)
		}
	}
	if len(seen) != count {
		t.Fatalf("one Read returned %d packets with %d of ours (%v), want all %d", n, len(seen), seen, count)
	}
	for i, b := range seen {
		if int(b) != i {
			t.Fatalf("order: %v", seen)
		}
	}
}

func TestReadDropsOversizedPacket(t *testing.T) {
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort(make([]byte, 1000), remote); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort([]byte("small"), remote); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	defer timer.Stop()
	bufs := [][]byte{make([]byte, 200)}
	sizes := make([]int, 1)
	n, err := d.Read(bufs, sizes, 0)
	if err != nil || n != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	u, ok := parseUDP4(bufs[0][:sizes[0]])
	if !ok || string(u.payload) != "small" {
		t.Fatalf("read %d bytes %x, want the small packet", sizes[0], bufs[0][:sizes[0]])
	}
	if d.RXDropped() != 1 {
		t.Errorf("RXDropped = %d, want 1", d.RXDropped())
	}
}

func TestReadUnblocksOnClose(t *testing.T) {
	ns := newNetns(t)
	d := createIn(t, ns, "vxdpt0")
	errc := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 1500)}
		_, err := d.Read(bufs, make([]int, 1), 0)
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
	if _, err := d.Read([][]byte{make([]byte, 100)}, make([]int, 1), 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := d.Write([][]byte{make([]byte, 100)}, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitLinkGone(t, routeHandleT(t, ns), "vxdpt0")
}

// A pod that sends with UDP_SEGMENT hands the TUN one UDP super-packet
// (USO); Read cuts it into the datagrams the application meant, each with
// its own valid headers and checksum.
func TestReadUSO(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	if o := offloads(d)["tun-uso"]; !o.Active {
		t.Skipf("kernel without USO on TUN: %s", o.Reason) // before Linux 6.2
	}
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 100) })
	if serr != nil {
		t.Fatalf("UDP_SEGMENT: %v", serr)
	}
	payload := make([]byte, 950)
	for i := range payload {
		payload[i] = byte(i / 100)
	}
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort(payload, remote); err != nil {
		t.Fatal(err)
	}
	ch := reader(d)
	for i := 0; i < 10; i++ {
		var p []byte
		select {
		case p = <-ch:
		case <-time.After(waitFor):
			t.Fatalf("datagram %d missing", i)
		}
		u, ok := parseUDP4(p)
		if !ok || u.dst != remote {
			i--
			continue // kernel noise
		}
		want := payload[i*100 : min(i*100+100, len(payload))]
		if !bytes.Equal(u.payload, want) {
			t.Fatalf("datagram %d: %d bytes %x, want %d bytes", i, len(u.payload), u.payload[:min(4, len(u.payload))], len(want))
		}
		ihl := int(p[0]&0xf) * 4
		if checksum(p[:ihl], 0) != 0 {
			t.Fatalf("datagram %d: bad IPv4 checksum", i)
		}
		if encap.Checksum(p[ihl:], encap.PseudoHeaderSumV4([4]byte(p[12:16]), [4]byte(p[16:20]), encap.ProtoUDP, uint16(len(p)-ihl))) != 0 {
			t.Fatalf("datagram %d: bad UDP checksum", i)
		}
	}
	if o := offloads(d)["tun-uso"]; o.Count != 1 || o.Largest != 20+8+950 {
		t.Fatalf("tun-uso: %+v, want one super-packet of 978 bytes", o)
	}
}

// ReadChecked says which packets carry a checksum the driver computed:
// the datagrams cut from a pod's UDP super-packet and a single datagram
// whose checksum the pod's kernel left to the device; on a device opened
// without offloads, none. Every packet it vouches for verifies.
func TestReadChecked(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    Options
		segment int // UDP_SEGMENT size, 0 for none
		want    bool
	}{
		{"offloads, one datagram", Options{Offload: true}, 0, true},
		{"offloads, a super-packet", Options{Offload: true}, 100, true},
		{"no offloads", Options{}, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, nsB := podDevice(t, c.opts, "192.0.2.10/32")
			if c.segment > 0 {
				if o := offloads(d)["tun-uso"]; !o.Active {
					t.Skipf("kernel without USO on TUN: %s", o.Reason)
				}
			}
			conn := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
			if c.segment > 0 {
				rc, err := conn.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var serr error
				rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, c.segment) })
				if serr != nil {
					t.Fatalf("UDP_SEGMENT: %v", serr)
				}
			}
			remote := netip.MustParseAddrPort("198.51.100.1:9")
			if _, err := conn.WriteToUDPAddrPort(make([]byte, 450), remote); err != nil {
				t.Fatal(err)
			}
			bufs := make([][]byte, d.BatchSize())
			for i := range bufs {
				bufs[i] = make([]byte, 16+1500)
			}
			sizes, checked := make([]int, len(bufs)), make([]bool, len(bufs))
			if _, err := d.ReadChecked(bufs, sizes, checked[:1], 16); err == nil {
				t.Fatal("fewer checked flags than buffers accepted")
			}
			timer := time.AfterFunc(waitFor, func() { d.Close() })
			defer timer.Stop()
			seen := 0
			for seen == 0 {
				n, err := d.ReadChecked(bufs, sizes, checked, 16)
				if err != nil {
					t.Fatalf("after %d of ours: %v", seen, err)
				}
				for i := range n {
					p := bufs[i][16 : 16+sizes[i]]
					if u, ok := parseUDP4(p); !ok || u.dst != remote {
						continue // kernel noise
					}
					seen++
					if checked[i] != c.want {
						t.Errorf("datagram %d: checked %v, want %v", seen, checked[i], c.want)
					}
					if checked[i] && encap.Checksum(p[20:], encap.PseudoHeaderSumV4([4]byte(p[12:16]), [4]byte(p[16:20]), encap.ProtoUDP, uint16(len(p)-20))) != 0 {
						t.Errorf("datagram %d vouched for with a bad checksum", seen)
					}
				}
			}
			if want := (450 + c.segment - 1) / max(c.segment, 1); c.segment > 0 && seen != want {
				t.Fatalf("%d datagrams of the super-packet in one read, want %d", seen, want)
			}
		})
	}
}

// A device with offloads holds a scratch buffer only while a super-packet
// waits in it: a USO run of ten datagrams read three at a time keeps it
// across Reads until the last datagram is out, then gives it back, and an
// opened device that has read nothing has none.
func TestReadScratchHeldOnlyWhilePending(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	if o := offloads(d)["tun-uso"]; !o.Active {
		t.Skipf("kernel without USO on TUN: %s", o.Reason) // before Linux 6.2
	}
	if d.scratchP != nil {
		t.Fatal("a new device holds a scratch buffer")
	}
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 100) })
	if serr != nil {
		t.Fatalf("UDP_SEGMENT: %v", serr)
	}
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort(make([]byte, 1000), remote); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	defer timer.Stop()
	bufs := [][]byte{make([]byte, 1500), make([]byte, 1500), make([]byte, 1500)}
	sizes := make([]int, len(bufs))
	ours, heldWhilePending := 0, false
	for ours < 10 {
		n, err := d.Read(bufs, sizes, 0)
		if err != nil {
			t.Fatalf("after %d of 10 datagrams: %v", ours, err)
		}
		for i := range n {
			if u, ok := parseUDP4(bufs[i][:sizes[i]]); ok && u.dst == remote {
				ours++
			}
		}
		if (d.pend != nil) != (d.scratchP != nil) {
			t.Fatalf("after %d of 10 datagrams: pending %v, holding a scratch buffer %v", ours, d.pend != nil, d.scratchP != nil)
		}
		heldWhilePending = heldWhilePending || d.pend != nil
	}
	if !heldWhilePending || d.scratchP != nil {
		t.Fatalf("scratch buffer kept across Reads %v, still held after the last datagram %v", heldWhilePending, d.scratchP != nil)
	}
}
