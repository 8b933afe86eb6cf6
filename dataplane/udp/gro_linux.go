package udp

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// Receiving with UDP_GRO: the kernel hands over runs of datagrams of one
// flow as one buffer (and a sender's UDP_SEGMENT run arrives whole over a
// virtual link), with the segment size in a control message. Receive cuts
// them apart again into single payloads, so the engine sees what it always
// sees; what does not fit in one Receive waits in the scratch buffers for
// the next.
//
// A message is received into two pieces: a buffer as long as the
// caller's (from the caller's offset on), then an overflow buffer for the
// rest of a long run. A message that is one payload and fits the first
// piece is not copied: Receive exchanges that buffer for the caller's
// (the Underlay contract allows it; the two are of one length), so a
// tunnel packet of 64 KiB that a sender handed over whole (tunnel-gso)
// costs no copy in user space.

const (
	udpGRO    = 104 // UDP_GRO
	groMsgs   = 8   // coalesced messages per recvmmsg
	groBufLen = 256 << 10
)

type groState struct {
	bufs [groMsgs][]byte // first pieces, received into from offset on
	over [groMsgs][]byte // overflow pieces
	iov  [groMsgs][2]unix.Iovec
	rx   mmsgBatch
	// offset is where the messages now held start in bufs.
	offset int
	n      int // messages received and not yet handed out
	cur    int // message being handed out
	off    int // offset in it
	block  bool
	errno  unix.Errno
}

func (q *Queue) openGRO(fd int, v6 bool) error {
	if err := setsockoptInt(fd, solUDP, udpGRO, 1); err != nil {
		return fmt.Errorf("UDP_GRO: %w", err)
	}
	g := &groState{}
	g.rx.init(v6)
	for i := range g.bufs {
		// A coalesced run can exceed 64 KiB where the device allows
		// big GRO; truncation would lose the whole run. The overflow
		// piece alone holds the longest, as the first ones are made
		// as long as the caller's buffers when Receive first runs.
		// Pages never written stay unmapped.
		g.over[i] = make([]byte, groBufLen)
	}
	q.gro = g
	q.groFn = q.recvGRO
	return nil
}

// receiveGRO is Receive for a queue with UDP_GRO.
func (q *Queue) receiveGRO(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	g := q.gro
	out := 0
	for {
		out = q.emitGRO(bufs, sizes, meta, offset, out)
		if out == len(bufs) {
			return out, nil
		}
		if q.closed.Load() {
			return 0, q.closedErr("receive")
		}
		for i := range g.bufs {
			if len(g.bufs[i]) < len(bufs[0]) {
				// Once for a caller whose buffers are of one length.
				g.bufs[i] = make([]byte, len(bufs[0]))
			}
			g.set(i, offset)
		}
		g.offset = offset
		g.block, g.n, g.cur, g.off, g.errno = out == 0, 0, 0, 0, 0
		err := q.raw.Read(q.groFn)
		if err != nil {
			if q.closed.Load() {
				return 0, q.closedErr("receive")
			}
			return out, fmt.Errorf("receive %s: %w", q.name, err)
		}
		if g.errno != 0 {
			return out, fmt.Errorf("receive %s: recvmmsg: %w", q.name, g.errno)
		}
		if g.n == 0 {
			return out, nil // nothing more queued; out > 0 here
		}
	}
}

// set points message i at its first piece from offset on (nothing of it
// when offset is beyond it) and then its overflow piece, and resets the
// fields the kernel overwrites.
func (g *groState) set(i, offset int) {
	iov := &g.iov[i]
	first := g.bufs[i][min(offset, len(g.bufs[i])):]
	nv := 0
	if len(first) > 0 {
		iov[nv].Base = &first[0]
		iov[nv].SetLen(len(first))
		nv++
	}
	iov[nv].Base = &g.over[i][0]
	iov[nv].SetLen(groBufLen)
	nv++
	h := &g.rx.hdrs[i]
	h.Hdr.Iov = &iov[0]
	h.Hdr.SetIovlen(nv)
	h.Hdr.Namelen = g.rx.namelen
	h.Hdr.SetControllen(recvOOBLen)
	h.Hdr.Flags = 0
	h.Len = 0
}

// firstLen is how much of message i its first piece holds.
func (g *groState) firstLen(i int) int { return max(len(g.bufs[i])-g.offset, 0) }

// copyOut copies n bytes of message i from off on into dst, across the
// two pieces.
func (g *groState) copyOut(dst []byte, i, off, n int) int {
	fl := g.firstLen(i)
	c := 0
	if off < fl {
		c = copy(dst[:n], g.bufs[i][g.offset+off:g.offset+min(off+n, fl)])
	}
	if c < n {
		o := off + c - fl
		c += copy(dst[c:n], g.over[i][o:o+n-c])
	}
	return c
}

func (q *Queue) recvGRO(fd uintptr) bool {
	g := q.gro
	for {
		n, errno := recvmmsg(fd, g.rx.hdrs[:groMsgs])
		switch errno {
		case 0:
			g.n = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if g.block && q.busy.Again(int(fd)) {
				continue
			}
			return !g.block
		default:
			g.errno = errno
			return true
		}
	}
}

// emitGRO hands out the received datagrams, cut at their segment size,
// into bufs from index out on, and returns the new count.
func (q *Queue) emitGRO(bufs [][]byte, sizes []int, meta []packetio.Meta, offset, out int) int {
	g := q.gro
	for g.cur < g.n && out < len(bufs) {
		h := &g.rx.hdrs[g.cur]
		total := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			q.rxDropped.Add(1)
			g.cur, g.off = g.cur+1, 0
			continue
		}
		// Datagrams that differ in TOS are never coalesced (the kernel's
		// GRO flushes on a different TOS or traffic class): the one TOS
		// holds for every segment of the run.
		seg, tos := g.rx.cmsgs(g.cur)
		m := packetio.Meta{Remote: g.rx.remote(g.cur), LocalPort: q.local.Port(), TOS: tos}
		if total == 0 {
			// An empty datagram is handed out too, so the engine counts
			// it like any other bad one.
			sizes[out], meta[out] = 0, m
			out++
			g.cur, g.off = g.cur+1, 0
			continue
		}
		if seg <= 0 || seg > total {
			seg = total
		}
		if g.off == 0 && seg < total {
			q.groRuns.Add(1)
			if t := uint64(total); t > q.groMax.Load() {
				q.groMax.Store(t) // one receiver at a time (rmu)
			}
		}
		if g.off == 0 && seg == total && offset == g.offset && total <= g.firstLen(g.cur) &&
			len(g.bufs[g.cur]) == len(bufs[out]) {
			// One payload, all in the first piece: the caller takes
			// that buffer, and its own becomes the first piece.
			bufs[out], g.bufs[g.cur] = g.bufs[g.cur], bufs[out]
			sizes[out], meta[out] = total, m
			out++
			g.cur++
			continue
		}
		for g.off < total && out < len(bufs) {
			n := min(seg, total-g.off)
			dst := bufs[out][offset:]
			if len(dst) < n {
				q.rxDropped.Add(1)
			} else {
				sizes[out] = g.copyOut(dst, g.cur, g.off, n)
				meta[out] = m
				out++
			}
			g.off += n
		}
		if g.off >= total {
			g.cur, g.off = g.cur+1, 0
		}
	}
	return out
}
