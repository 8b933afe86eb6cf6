package afxdp

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"golang.org/x/sys/unix"
)

// maxKicks bounds the sendto calls one copy-mode flush of the TX ring may
// make (each sends up to the skb budget).
const maxKicks = 8

// Send sends every bufs[i][offset:], a tunnel payload, to meta[i].Remote:
// the outer IP and UDP headers of the node address's family (see
// writeOuter: from the node's address and the source port of
// meta[i].Flow, TOS or traffic class meta[i].TOS) and an Ethernet header
// from the device's MAC to the MAC of the next hop are written into a UMEM
// frame and the payload copied behind them, so the caller owns bufs again
// when Send returns; the headroom is not used.
//
// A payload counts as accepted when it is on the TX ring, or waiting (at
// most 256 over all queues, at most a second) for its next hop's MAC,
// which the kernel is then asked to resolve (ARP, or neighbour
// discovery over IPv6). Payloads whose frame would exceed the MTU or that
// go to an address not of the node address's family (TxInvalid),
// whose destination is not reached through the device (TxNoRoute), that
// find the ARP wait queue full (TxNoNeighbour) or no free frame even after
// the kernel was kicked (TxRingFull) are dropped and counted. The error is
// non-nil only when the queue is closed (net.ErrClosed) or the socket lost
// its device (packetio.ErrDeviceGone when the device was removed).
//
// Send is safe for concurrent use; calls on one queue take turns.
func (q *Queue) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	if q.closed.Load() {
		return 0, q.closedErr("send")
	}
	snap := q.u.nb.snap.Load()
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.dead {
		return 0, q.closedErr("send")
	}
	if q.u.gone.Load() {
		return 0, fmt.Errorf("send %s: %w", q.name, packetio.ErrDeviceGone)
	}
	x := q.x
	q.reap()
	if len(q.waiting) > 0 {
		// Older packets first, when their next hop has been resolved.
		q.flushLocked(snap, q.u.clock())
	}
	var (
		accepted, staged, invalid, noRoute int
		fromHeaders                        int
		bytes                              uint64
		lastDst                            netip.Addr
		lastHop                            hop
		lastOK                             bool
		haveLast                           bool
		lastReq                            netip.Addr
	)
	maxPayload := int(q.u.mtu.Load()) - q.u.outerLen
	for i, b := range bufs {
		dst, ok := q.u.remoteAddr(meta[i].Remote.Addr())
		if !ok || offset < 0 || offset > len(b) || len(b)-offset > maxPayload {
			invalid++
			continue
		}
		p := b[offset:]
		if !haveLast || dst != lastDst {
			lastDst, haveLast = dst, true
			lastHop, lastOK = snap.lookup(dst)
		}
		if lastOK && lastHop.noRoute {
			noRoute++
			continue
		}
		addr, ok := q.txFrame()
		if !ok {
			q.tc.ringFull.Add(1)
			continue
		}
		n := q.u.writeOuter(x.umem[addr+ethLen:addr+uint64(q.frameSize)], p, netip.AddrPortFrom(dst, meta[i].Remote.Port()), &meta[i])
		if meta[i].HasSum && q.u.v6 {
			fromHeaders++
		}
		if !lastOK {
			if q.enqueue(addr, n, dst, dst != lastReq) {
				accepted++
			}
			lastReq = dst
			continue
		}
		idx, got := x.tx.reserve(1)
		if got == 0 {
			// Cannot happen while every TX frame fits on the TX ring;
			// keep the frame rather than lose it.
			q.txFree = append(q.txFree, addr)
			q.tc.ringFull.Add(1)
			continue
		}
		frame := x.umem[addr : addr+uint64(ethLen+n)]
		q.writeEthernet(frame, &lastHop.mac)
		*x.tx.desc(idx) = xdpDesc{addr: addr, len: uint32(len(frame))}
		q.txKernel++
		staged++
		accepted++
		bytes += uint64(len(frame))
		if u := lastHop.used; u != nil && !u.Load() {
			u.Store(true)
		}
	}
	if x.tx.pending() > 0 {
		x.tx.submit()
		q.kick()
	}
	q.tc.frames.Add(uint64(staged))
	q.tc.bytes.Add(bytes)
	if invalid > 0 {
		q.tc.invalid.Add(uint64(invalid))
	}
	if noRoute > 0 {
		q.tc.noRoute.Add(uint64(noRoute))
	}
	if fromHeaders > 0 {
		q.tc.sumFromHeaders.Add(uint64(fromHeaders))
	}
	q.publishTX()
	if q.txErr != 0 {
		e := q.txErr
		q.txErr = 0
		return accepted, q.socketErr("send", e)
	}
	return accepted, nil
}

// writeOuter writes the outer IP and UDP headers of payload p to remote
// at the start of b, and p behind them; it returns the packet's length.
// The caller checked that p fits the MTU and that remote is of the node
// address's family (remoteAddr).
//
// IPv4 (encap.EncodeOuterV4): no UDP checksum, as the kernel's vxlan
// sends, and TOS tos. IPv6 (encap.EncodeOuterV6): a UDP checksum over the
// payload, as the kernel's vxlan and geneve send over IPv6 by default
// (RFC 6935 allows zero only towards receivers configured for it, and
// vxdp's own receivers are not); traffic class tos; and the flow label of
// the flow hash (RFC 6438), so that a fabric hashing on the label keeps
// the flow on one path as the source port does. The payload is copied
// before the IPv6 headers are written: their checksum covers it. Where
// the engine knows the payload's sum (m.HasSum: the inner checksum is one
// vxdp wrote), the checksum costs only the headers; otherwise it is a
// pass over the payload.
//
// m gives the flow hash (source port, flow label) and the TOS or traffic
// class; remote is m.Remote in the underlay's form.
func (u *Underlay) writeOuter(b, p []byte, remote netip.AddrPort, m *packetio.Meta) int {
	flow, tos := m.Flow, m.TOS
	src := netip.AddrPortFrom(u.cfg.NodeIP, encap.SourcePort(flow))
	if u.v6 {
		n := copy(b[encap.OuterV6Len:], p)
		if m.HasSum {
			encap.EncodeOuterV6Sum(b, src, remote, n, tos, encap.FlowLabel(flow), m.Sum)
		} else {
			encap.EncodeOuterV6(b, src, remote, n, tos, encap.FlowLabel(flow))
		}
		return encap.OuterV6Len + n
	}
	encap.EncodeOuterV4(b, src, remote, len(p))
	if tos != 0 {
		encap.IPv4(b[:encap.IPv4MinLen]).SetTOS(tos)
	}
	return encap.OuterV4Len + copy(b[encap.OuterV4Len:], p)
}

// remoteAddr is the destination a of a payload in the form the neighbour
// table and writeOuter take: a plain IPv4 address on an IPv4 underlay (an
// IPv4-mapped one unmapped), an IPv6 address that is not IPv4-mapped on an
// IPv6 one. ok is false for any other address: the underlay speaks one
// family.
func (u *Underlay) remoteAddr(a netip.Addr) (netip.Addr, bool) {
	if u.v6 {
		return a, a.Is6() && !a.Is4In6()
	}
	a = a.Unmap()
	return a, a.Is4()
}

func (q *Queue) writeEthernet(frame []byte, dst *[6]byte) {
	encap.Ethernet(frame[:encap.EthernetLen]).Encode(*dst, q.u.mac, q.u.etherType)
}

// txFrame pops a free TX frame. When none is left it makes the kernel
// send what is on the TX ring and reaps the completions, a few times.
func (q *Queue) txFrame() (uint64, bool) {
	if n := len(q.txFree); n > 0 {
		a := q.txFree[n-1]
		q.txFree = q.txFree[:n-1]
		return a, true
	}
	q.tc.exhausted.Add(1)
	for try := 0; try < 4; try++ {
		if q.x.tx.pending() > 0 {
			q.x.tx.submit()
		}
		q.kick()
		q.reap()
		if n := len(q.txFree); n > 0 {
			a := q.txFree[n-1]
			q.txFree = q.txFree[:n-1]
			return a, true
		}
		if q.txErr != 0 {
			break
		}
		// Zero-copy completions come from the driver's interrupt.
		runtime.Gosched()
	}
	return 0, false
}

// reap returns completed TX frames to the free stack.
func (q *Queue) reap() {
	c := q.x.comp
	idx, n := c.peek(c.size)
	if n == 0 {
		return
	}
	for i := uint32(0); i < n; i++ {
		q.txFree = append(q.txFree, *c.addr(idx + i)&q.frameMask)
	}
	c.release()
	q.txKernel -= int(n)
	q.tc.completed.Add(uint64(n))
}

// kick wakes the kernel for the TX ring. In copy mode the frames are
// turned into skbs and sent inside sendto, at most a budget per call;
// EAGAIN says more remain, EBUSY that one was dropped by the device, and
// the completions they produce must be reaped for the next call to go on.
func (q *Queue) kick() {
	x := q.x
	if x.zeroCopy {
		if x.needWakeup && !x.tx.needWakeup() {
			return
		}
		q.tc.kicks.Add(1)
		q.kickFailed(x.kickTX())
		return
	}
	for i := 0; i < maxKicks && x.tx.queued() > 0; i++ {
		q.tc.kicks.Add(1)
		if e := x.kickTX(); q.kickFailed(e) {
			return
		}
		q.reap()
	}
}

// kickFailed sorts the result of a TX wakeup: ENXIO means the socket lost
// its device, which Send reports; a device that is down (ENETDOWN) keeps
// the frames on the TX ring until it comes up, and is only counted.
func (q *Queue) kickFailed(e unix.Errno) bool {
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
		return false
	case unix.ENXIO:
		q.txErr = e
	default:
		q.tc.kickErrors.Add(1)
	}
	return true
}

// enqueue parks the packet of n bytes in TX frame addr (after room for
// the Ethernet header) on the waiting list until dst's next hop is
// resolved; ask says whether to (re)request the resolution. The frame is
// freed when the wait list is full.
func (q *Queue) enqueue(addr uint64, n int, dst netip.Addr, ask bool) bool {
	if !q.u.acquireWait() {
		q.txFree = append(q.txFree, addr)
		q.tc.noNeigh.Add(1)
		return false
	}
	q.waiting = append(q.waiting, waitingPkt{
		addr:     addr,
		len:      uint32(n),
		dst:      dst,
		deadline: q.u.clock() + waitTimeout,
	})
	q.tc.arpQueued.Add(1)
	if ask {
		q.u.nb.request(dst)
	}
	return true
}

// flushLocked sends the waiting packets whose next hop is now known and
// drops those past their deadline or without a route. It does not kick.
func (q *Queue) flushLocked(snap *neighSnap, now time.Duration) int {
	x := q.x
	kept := q.waiting[:0]
	sent, noRoute, expired := 0, 0, 0
	var bytes uint64
	for _, w := range q.waiting {
		h, ok := snap.lookup(w.dst)
		switch {
		case ok && !h.noRoute:
			idx, n := x.tx.reserve(1)
			if n == 0 {
				kept = append(kept, w)
				continue
			}
			frame := x.umem[w.addr : w.addr+uint64(ethLen)+uint64(w.len)]
			q.writeEthernet(frame, &h.mac)
			*x.tx.desc(idx) = xdpDesc{addr: w.addr, len: uint32(len(frame))}
			q.txKernel++
			sent++
			bytes += uint64(len(frame))
		case ok && h.noRoute:
			q.txFree = append(q.txFree, w.addr)
			noRoute++
		case now >= w.deadline:
			q.txFree = append(q.txFree, w.addr)
			expired++
		default:
			kept = append(kept, w)
		}
	}
	released := len(q.waiting) - len(kept)
	q.waiting = kept
	if released > 0 {
		q.u.releaseWaitN(released)
	}
	if sent > 0 {
		x.tx.submit()
		q.tc.frames.Add(uint64(sent))
		q.tc.bytes.Add(bytes)
		q.tc.arpFlushed.Add(uint64(sent))
	}
	if noRoute > 0 {
		q.tc.noRoute.Add(uint64(noRoute))
	}
	if expired > 0 {
		q.tc.noNeigh.Add(uint64(expired))
	}
	return sent
}

// flushWaiting is flushLocked for the neighbour goroutine.
func (q *Queue) flushWaiting() {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.dead || len(q.waiting) == 0 {
		return
	}
	q.reap()
	if q.flushLocked(q.u.nb.snap.Load(), q.u.clock()) > 0 {
		q.kick()
	}
	q.publishTX()
}

// dropWaiting frees every waiting packet, counting it as unresolved.
func (q *Queue) dropWaiting() {
	for _, w := range q.waiting {
		q.txFree = append(q.txFree, w.addr)
	}
	if n := len(q.waiting); n > 0 {
		q.tc.noNeigh.Add(uint64(n))
		q.u.releaseWaitN(n)
	}
	q.waiting = q.waiting[:0]
}

func (q *Queue) publishTX() {
	q.tc.free.Store(int64(len(q.txFree)))
	q.tc.kernel.Store(int64(q.txKernel))
	q.tc.waiting.Store(int64(len(q.waiting)))
}
