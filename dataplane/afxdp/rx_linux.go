package afxdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"golang.org/x/sys/unix"
)

// rxParkTimeout is how long Receive sleeps in the poller before it checks
// that its socket is still bound.
const rxParkTimeout = time.Second

// Receive copies up to min(len(bufs), BatchSize()) received tunnel
// payloads to bufs[i][offset:], sizes[i] = length, meta[i] = the sender's
// address and port and the local port (the outer headers, parsed and
// checked with encap, are not handed out). It blocks until at least one
// payload is there. meta[i].TOS is the outer IPv4 TOS or IPv6 traffic
// class. A frame that is not a valid UDP packet of the underlay's family
// (see payloadOfFrame: an unfragmented IPv4 one, or an IPv6 one without
// extension headers whose UDP checksum verifies), or whose payload does
// not fit its buffer, is dropped and counted (RXDropped), never truncated. Receive must not be called concurrently
// with itself (a mutex serialises such calls); the engine calls it from
// the queue's one worker.
func (q *Queue) Receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	bufs, err := packetio.ReceiveBatch(bufs, sizes, meta, offset, batchSize)
	if err != nil {
		return 0, fmt.Errorf("receive %s: %w", q.name, err)
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	q.rxMu.Lock()
	defer q.rxMu.Unlock()
	q.busy.Begin()
	n, err := q.receiveWait(bufs, sizes, meta, offset)
	q.busy.End(n > 0)
	return n, err
}

// receiveWait is Receive once the arguments are checked: it takes what
// the RX ring holds, busy-polls it or parks until there is something.
func (q *Queue) receiveWait(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	for {
		if q.closed.Load() || q.dead {
			return 0, q.closedErr("receive")
		}
		if q.u.gone.Load() {
			return 0, fmt.Errorf("receive %s: %w", q.name, packetio.ErrDeviceGone)
		}
		n, seen := q.receive(bufs, sizes, meta, offset)
		if n > 0 {
			return n, nil
		}
		if seen > 0 {
			continue // all dropped; look again before sleeping
		}
		if q.busy.Again(q.x.fd) {
			if q.x.fill.needWakeup() {
				q.x.kickRX()
				q.rc.kicks.Add(1)
			}
			continue
		}
		if err := q.waitRX(); err != nil {
			return 0, err
		}
	}
}

// receive takes what the RX ring holds, without blocking. It returns the
// payloads delivered and the frames consumed.
func (q *Queue) receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (out int, seen uint32) {
	x := q.x
	idx, n := x.rx.peek(uint32(len(bufs)))
	if n == 0 {
		return 0, 0
	}
	umem := x.umem
	var bytes, dropped, sums uint64
	for i := uint32(0); i < n; i++ {
		d := x.rx.desc(idx + i)
		addr, l := d.addr, uint64(d.len)
		q.rxFree = append(q.rxFree, addr&q.frameMask)
		if addr+l > uint64(len(umem)) || l > uint64(len(umem)) {
			dropped++
			continue
		}
		payload, m, ok := payloadOfFrame(umem[addr:addr+l], q.u.v6, q.u.partialCsum)
		dst := bufs[out][offset:]
		if !ok || len(payload) > len(dst) {
			dropped++
			continue
		}
		sizes[out] = copy(dst, payload)
		meta[out] = m
		if m.HasSum {
			sums++
		}
		bytes += uint64(len(payload))
		out++
	}
	// The slots go back to the kernel now; the frames, now on rxFree,
	// only through the fill ring.
	x.rx.release()
	q.rxKernel -= int(n)
	q.refill()
	q.rc.frames.Add(uint64(out))
	q.rc.bytes.Add(bytes)
	if dropped > 0 {
		q.rc.dropped.Add(dropped)
	}
	if sums > 0 {
		q.rc.sums.Add(sums)
	}
	q.publishRX()
	return out, n
}

// refill moves free RX frames to the fill ring.
func (q *Queue) refill() {
	if len(q.rxFree) == 0 {
		return
	}
	f := q.x.fill
	idx, n := f.reserve(uint32(len(q.rxFree)))
	for i := uint32(0); i < n; i++ {
		last := len(q.rxFree) - 1
		*f.addr(idx + i) = q.rxFree[last]
		q.rxFree = q.rxFree[:last]
	}
	f.submit()
	q.rxKernel += int(n)
	q.rc.refills.Add(uint64(n))
}

func (q *Queue) publishRX() {
	q.rc.free.Store(int64(len(q.rxFree)))
	q.rc.kernel.Store(int64(q.rxKernel))
}

// payloadOfFrame returns the UDP payload of an Ethernet frame holding a
// UDP packet of the underlay's family (short frames carry padding, which
// the lengths cut off), with the sender, the local port and the outer TOS
// or traffic class.
//
// IPv4 (encap.ParseOuterV4): unfragmented; the UDP checksum is not
// checked, as the kernel's vxlan sends none over IPv4. IPv6
// (encap.ParseOuterV6): no extension headers, and the UDP checksum must
// verify, which sums the payload: the sum goes on in the Meta (Sum,
// HasSum) for the engine to check the inner checksum by; zero, "no checksum", is refused: RFC 6935 and 6936 allow it only
// on a tunnel port configured to accept it, and vxdp configures none (its
// UDP sockets leave UDP_NO_CHECK6_RX off likewise), so both underlays take
// the same packets.
//
// partialOK (a veth underlay) also takes an IPv6 packet whose checksum
// field holds only the pseudo-header sum, finishing the checksum in the
// frame: a Linux sender on the same host leaves it so for the device to
// finish, a veth never does, and the kernel trusts the skb's "partial"
// flag instead, which does not survive the trip into an AF_XDP frame. The
// packet went from memory to memory with no wire to corrupt it. A real
// NIC finishes checksums, so on one the check stays strict.
func payloadOfFrame(f []byte, v6, partialOK bool) ([]byte, packetio.Meta, bool) {
	if len(f) < encap.EthernetLen {
		return nil, packetio.Meta{}, false
	}
	et, pkt := encap.Ethernet(f).EtherType(), f[encap.EthernetLen:]
	if v6 {
		if et != encap.EtherTypeIPv6 {
			return nil, packetio.Meta{}, false
		}
		o, err := encap.ParseOuterV6(pkt, false)
		if err == encap.ErrBadChecksum && partialOK && len(pkt) >= encap.OuterV6Len {
			// Finished in place; put back as it was should the packet be
			// refused after all (a length the UDP header disagrees
			// with), so that a refused frame is never changed.
			field := pkt[encap.IPv6Len+encap.UDPChecksumOffset : encap.IPv6Len+encap.UDPChecksumOffset+2]
			was := [2]byte{field[0], field[1]}
			if encap.CompletePartialChecksumV6(encap.IPv6(pkt)) {
				if o, err = encap.ParseOuterV6(pkt, false); err != nil {
					field[0], field[1] = was[0], was[1]
				}
			}
		}
		if err != nil {
			return nil, packetio.Meta{}, false
		}
		m := packetio.Meta{Remote: netip.AddrPortFrom(o.Src, o.SrcPort), LocalPort: o.DstPort, TOS: o.TrafficClass,
			Sum: o.PayloadSum, HasSum: o.SumValid}
		return pkt[o.Payload : o.Payload+o.PayloadLen], m, true
	}
	if et != encap.EtherTypeIPv4 {
		return nil, packetio.Meta{}, false
	}
	o, err := encap.ParseOuterV4(pkt)
	if err != nil {
		return nil, packetio.Meta{}, false
	}
	m := packetio.Meta{Remote: netip.AddrPortFrom(o.Src, o.SrcPort), LocalPort: o.DstPort, TOS: o.TOS}
	return pkt[o.Payload : o.Payload+o.PayloadLen], m, true
}

// waitRX parks until the RX ring has entries, the queue is closed or the
// socket fails.
func (q *Queue) waitRX() error {
	if q.x.fill.needWakeup() {
		// A zero-copy driver that ran dry waits for this before it
		// takes the frames refill put on the fill ring.
		q.x.kickRX()
		q.rc.kicks.Add(1)
	}
	q.rxWaited, q.rxErr = false, 0
	// The deadline is a safety net: a socket whose device went away
	// never becomes readable, and the link watcher may have missed it.
	q.x.file.SetReadDeadline(time.Now().Add(rxParkTimeout))
	err := q.x.raw.Read(q.rxWaitFn)
	if q.closed.Load() {
		return q.closedErr("read")
	}
	if err != nil {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read %s: %w", q.name, err)
		}
		if e := q.x.kickRX(); e == unix.ENXIO {
			return q.socketErr("read", e)
		}
		return nil
	}
	if q.rxErr != 0 {
		return q.socketErr("read", q.rxErr)
	}
	return nil
}

// rxReady is the poller callback of waitRX; false parks the goroutine
// until the socket signals.
func (q *Queue) rxReady(uintptr) bool {
	if q.x.rx.available() > 0 || q.closed.Load() || q.u.gone.Load() {
		return true
	}
	if q.rxWaited {
		// Signalled with nothing to read: an error on the socket, such
		// as the device going away, which unbinds it.
		switch e := q.x.kickRX(); e {
		case unix.ENXIO, unix.ENETDOWN, unix.ENODEV:
			q.rxErr = e
			return true
		}
		if v, err := unix.GetsockoptInt(q.x.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && v != 0 {
			q.rxErr = unix.Errno(v)
			return true
		}
	}
	q.rxWaited = true
	return false
}
