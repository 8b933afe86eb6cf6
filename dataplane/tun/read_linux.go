package tun

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"golang.org/x/sys/unix"
)

// readState is what Read works with. It lives in the Device, and readFn
// is bound once, so that handing a callback to the runtime poller
// allocates nothing.
type readState struct {
	rmu    sync.Mutex // serialises Read; guards the fields up to the counters
	rbufs  [][]byte
	rsizes []int
	// rchecked, when ReadChecked passed it, gets per packet whether its
	// TCP or UDP checksum is one this driver wrote: a segment cut from
	// a super-packet, or a checksum the kernel left partial.
	rchecked []bool
	roff     int
	rn       int
	rerr     error
	readFn   func(fd uintptr) bool
	// busy is the reader's busy-poll (SetBusyPoll).
	busy packetio.BusyPoll

	// With offloads, reads land in scratch first; a super-packet stays
	// there while its segments are handed out, across Read calls if one
	// batch cannot take them all. scratch comes from scratchPool when
	// packets arrive and goes back once nothing refers to it.
	scratch  []byte
	scratchP *scratchBuf
	pend     []byte // the super-packet being segmented, in scratch
	pendHdr  int
	pendL4   int // where its transport header starts (IPv6)
	pendGSO  int
	pendSegs int
	pendNext int
	pendKind superKind
	// pendWhole says the pending super-packet goes to super first, at the
	// start of the next Read; pendECN is its GSO type's ECN flag.
	pendWhole bool
	pendECN   bool
	// super, when set, is offered each TCP super-packet whole
	// (SetSuperHandler); superTaken counts those it took.
	super      packetio.SuperHandler
	superOn    atomic.Bool
	superTaken atomic.Uint64

	rxDropped atomic.Uint64
	// Super-packets read, TCP and UDP, and the largest of each.
	superReads atomic.Uint64
	superMax   atomic.Uint64
	usoReads   atomic.Uint64
	usoMax     atomic.Uint64
}

// scratchBuf holds the largest read of a device with offloads: the
// virtio_net_hdr and a 64 KiB super-packet, behind packetio.SuperRoom
// bytes of room for a tunnel's headers when the packet goes on whole.
type scratchBuf [packetio.SuperRoom + vnetHdrLen + 65535]byte

// superStart is where a super-packet starts in a scratchBuf.
const superStart = packetio.SuperRoom + vnetHdrLen

// scratchPool shares the scratch buffers of all devices with offloads. A
// device holds one only while it reads and while a super-packet waits in
// it, so a node with many idle pods, each with queues of its own, does not
// keep 64 KiB per queue.
var scratchPool = sync.Pool{New: func() any { return new(scratchBuf) }}

// takeScratch gives the device a scratch buffer if it has none.
func (d *Device) takeScratch() {
	if d.scratchP == nil {
		d.scratchP = scratchPool.Get().(*scratchBuf)
		d.scratch = d.scratchP[packetio.SuperRoom:]
	}
}

// releaseScratch gives the scratch buffer back unless a super-packet still
// waits in it.
func (d *Device) releaseScratch() {
	if d.scratchP != nil && d.pend == nil {
		scratchPool.Put(d.scratchP)
		d.scratchP, d.scratch = nil, nil
	}
}

// Read blocks until a packet is available, then keeps reading without
// blocking until bufs is full or the queue is empty. Packet i goes to
// bufs[i][offset:] and its length to sizes[i]. A packet longer than the
// space in its buffer is dropped and counted in RXDropped rather than handed
// out truncated. After Close, Read returns an error wrapping
// net.ErrClosed; once the kernel has deleted the interface (its
// namespace destroyed), one wrapping ErrInterfaceGone.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.read(bufs, sizes, nil, offset)
}

// ReadChecked is Read that also says, in checked[i], whether packet i
// carries a TCP or UDP checksum the driver computed itself
// (packetio.CheckedReader): every segment it cut from a super-packet and
// every packet whose checksum the kernel left for it to finish. Those are
// right by construction; the engine can then sum a tunnel payload from
// its headers alone. len(checked) >= len(bufs).
func (d *Device) ReadChecked(bufs [][]byte, sizes []int, checked []bool, offset int) (int, error) {
	if len(checked) < len(bufs) {
		return 0, fmt.Errorf("read %s: %d checked flags for %d buffers", d.Name(), len(checked), len(bufs))
	}
	return d.read(bufs, sizes, checked, offset)
}

func (d *Device) read(bufs [][]byte, sizes []int, checked []bool, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("read %s: %d sizes for %d buffers", d.Name(), len(sizes), len(bufs))
	}
	if offset < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", d.Name(), offset)
	}
	for i := range bufs {
		if len(bufs[i]) <= offset {
			return 0, fmt.Errorf("read %s: buffer %d has no room after offset %d", d.Name(), i, offset)
		}
	}
	if d.closed.Load() {
		return 0, d.closedErr("read")
	}

	d.rmu.Lock()
	defer d.rmu.Unlock()
	if len(bufs) > batchSize {
		bufs = bufs[:batchSize]
	}
	d.rbufs, d.rsizes, d.rchecked, d.roff, d.rn, d.rerr = bufs, sizes, checked, offset, 0, nil
	// A super-packet left for the handler goes first, then segments left
	// from the last one; with any, the read below only takes what is
	// there without waiting.
	if d.pendWhole {
		d.pendWhole = false
		if d.offerWhole(d.pend, d.pendGSO, d.pendECN) {
			d.pend = nil
		}
	}
	d.emitSegments()
	var err error
	if d.rn < len(d.rbufs) {
		d.busy.Begin()
		err = d.raw.Read(d.readFn)
		d.busy.End(d.rn > 0)
	}
	d.releaseScratch()
	n, rerr := d.rn, d.rerr
	d.rbufs, d.rsizes, d.rchecked, d.rerr = nil, nil, nil, nil
	if err != nil {
		if d.closed.Load() {
			return 0, d.closedErr("read")
		}
		return 0, d.ioErr("read", err)
	}
	// An error after some packets is dropped: those packets are good, and a
	// persistent error shows up again on the next call.
	if n == 0 && rerr != nil {
		return 0, d.ioErr("read", rerr)
	}
	return n, nil
}

// readBatch runs inside the poller callback. Returning false parks the
// goroutine until the descriptor is readable; that happens only while the
// batch is still empty, so a call never waits once it has a packet.
func (d *Device) readBatch(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		buf := d.rbufs[d.rn][d.roff:]
		n, ok := d.readOne(fd, buf)
		if !ok {
			if !d.readDone() && d.busy.Again(int(fd)) {
				continue
			}
			return d.readDone()
		}
		if n == len(buf) && ipLength(buf) > n {
			// The kernel silently truncates a packet that does not
			// fit and returns the truncated length, so a full buffer
			// is checked against the length the IP header claims.
			d.rxDropped.Add(1)
			continue
		}
		d.rsizes[d.rn] = n
		d.setChecked(false)
		d.rn++
	}
	return true
}

// readOne is one read(2) into buf in the poller callback, retried on
// EINTR. It returns the packet's length, or false when the callback's loop
// must end: the queue is empty (EAGAIN) or the descriptor failed (the
// error kept in rerr).
func (d *Device) readOne(fd uintptr, buf []byte) (int, bool) {
	for {
		n, err := unix.Read(int(fd), buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, false
		case err != nil:
			d.rerr = err
			return 0, false
		case n == 0:
			d.rerr = io.ErrUnexpectedEOF
			return 0, false
		}
		return n, true
	}
}

// readDone is what the poller callback returns once readOne ends its loop:
// true (Read returns) on an error or with packets in the batch, false (wait
// for the descriptor) on an empty queue and an empty batch.
func (d *Device) readDone() bool { return d.rerr != nil || d.rn > 0 }

// readVnet is readBatch for a device with offloads: each read is a
// virtio_net_hdr and a packet, perhaps a TCP or UDP super-packet to cut
// up.
func (d *Device) readVnet(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		d.takeScratch()
		n, ok := d.readOne(fd, d.scratch)
		if !ok {
			if !d.readDone() && d.busy.Again(int(fd)) {
				continue
			}
			if !d.readDone() {
				// The goroutine parks until the descriptor is readable:
				// it waits without a buffer.
				d.releaseScratch()
				return false
			}
			return true
		}
		if n <= vnetHdrLen {
			d.rxDropped.Add(1)
			continue
		}
		h := parseVnetHdr(d.scratch)
		pkt := d.scratch[vnetHdrLen:n]
		switch h.gsoType &^ vnetGSOECN {
		case vnetGSONone:
			finished := h.flags&vnetFlagNeedsCsum != 0
			if finished && finishChecksum(pkt, h) != nil {
				d.rxDropped.Add(1)
				continue
			}
			buf := d.rbufs[d.rn][d.roff:]
			if len(pkt) > len(buf) {
				d.rxDropped.Add(1)
				continue
			}
			d.rsizes[d.rn] = copy(buf, pkt)
			d.setChecked(finished)
			d.rn++
		case vnetGSOTCPv4, vnetGSOTCPv6, vnetGSOUDPL4:
			kind, hdrLen, l4, segs, err := superLayout(h.gsoType&^vnetGSOECN, pkt, int(h.gsoSize))
			if err != nil {
				d.rxDropped.Add(1)
				continue
			}
			reads, largest := &d.superReads, &d.superMax
			if kind == superUDP4 || kind == superUDP6 {
				reads, largest = &d.usoReads, &d.usoMax
			}
			reads.Add(1)
			if l := uint64(len(pkt)); l > largest.Load() {
				largest.Store(l) // one reader at a time (rmu)
			}
			ecn := h.gsoType&vnetGSOECN != 0
			whole := d.super != nil && (kind == superTCP4 || kind == superTCP6 && l4 == encap.IPv6Len)
			if whole && d.rn == 0 && d.offerWhole(pkt, int(h.gsoSize), ecn) {
				continue
			}
			d.pend, d.pendHdr, d.pendL4, d.pendGSO, d.pendSegs, d.pendNext, d.pendKind = pkt, hdrLen, l4, int(h.gsoSize), segs, 0, kind
			if whole && d.rn > 0 {
				// Packets read before it must go first: it is offered
				// at the start of the next Read, where nothing precedes
				// it.
				d.pendWhole, d.pendECN = true, ecn
				return true
			}
			d.emitSegments()
			if d.pend != nil {
				return true // the batch is full; the rest waits for the next Read
			}
		default:
			d.rxDropped.Add(1)
		}
	}
	return true
}

// superKind is what a super-packet read from the device holds.
type superKind uint8

const (
	superTCP4 superKind = iota
	superUDP4
	superTCP6
	superUDP6
)

// superLayout checks the super-packet pkt the kernel handed over with GSO
// type gsoType (without the ECN bit) and returns its kind, its header
// length, the offset of its transport header and the number of packets
// it makes. UDP segmentation has one GSO type for both families; the IP
// version tells them apart. A TCP type that disagrees with the packet's
// version is refused.
func superLayout(gsoType uint8, pkt []byte, gsoSize int) (kind superKind, hdrLen, l4, segs int, err error) {
	v6 := encap.IPVersion(pkt) == encap.IPv6Version
	switch {
	case gsoType == vnetGSOTCPv4 && !v6:
		hdrLen, segs, err = tcp4Layout(pkt, gsoSize)
		return superTCP4, hdrLen, 0, segs, err
	case gsoType == vnetGSOUDPL4 && !v6:
		hdrLen, segs, err = udp4Layout(pkt, gsoSize)
		return superUDP4, hdrLen, 0, segs, err
	case gsoType == vnetGSOTCPv6 && v6:
		hdrLen, l4, segs, err = tcp6Layout(pkt, gsoSize)
		return superTCP6, hdrLen, l4, segs, err
	case gsoType == vnetGSOUDPL4 && v6:
		hdrLen, l4, segs, err = udp6Layout(pkt, gsoSize)
		return superUDP6, hdrLen, l4, segs, err
	}
	return 0, 0, 0, 0, errVnetHdr
}

// emitSegments hands out segments of the pending super-packet while the
// batch has room.
func (d *Device) emitSegments() {
	for d.pend != nil && d.rn < len(d.rbufs) {
		buf := d.rbufs[d.rn][d.roff:]
		if len(buf) < d.pendHdr+d.pendGSO {
			d.rxDropped.Add(uint64(d.pendSegs - d.pendNext))
			d.pend = nil
			return
		}
		switch d.pendKind {
		case superTCP4:
			d.rsizes[d.rn] = tcp4Segment(buf, d.pend, d.pendHdr, d.pendGSO, d.pendNext, d.pendSegs)
		case superUDP4:
			d.rsizes[d.rn] = udp4Segment(buf, d.pend, d.pendHdr, d.pendGSO, d.pendNext)
		case superTCP6:
			d.rsizes[d.rn] = tcp6Segment(buf, d.pend, d.pendHdr, d.pendL4, d.pendGSO, d.pendNext, d.pendSegs)
		case superUDP6:
			d.rsizes[d.rn] = udp6Segment(buf, d.pend, d.pendHdr, d.pendL4, d.pendGSO, d.pendNext)
		}
		d.setChecked(true)
		d.rn++
		d.pendNext++
		if d.pendNext == d.pendSegs {
			d.pend = nil
		}
	}
}

// setChecked records for the packet being handed out (d.rn) whether its
// checksum is one the driver wrote, when the caller asked (ReadChecked).
func (d *Device) setChecked(ok bool) {
	if d.rchecked != nil {
		d.rchecked[d.rn] = ok
	}
}

// ipLength is the packet length the IP header of p claims, or 0 if p does
// not start with a recognisable one.
func ipLength(p []byte) int {
	switch encap.IPVersion(p) {
	case encap.IPv4Version:
		if len(p) >= encap.IPv4MinLen {
			return encap.IPv4(p).TotalLen()
		}
	case encap.IPv6Version:
		if len(p) >= encap.IPv6Len {
			return encap.IPv6(p).TotalLen()
		}
	}
	return 0
}

// SetSuperHandler sets the handler offered every TCP super-packet read,
// whole, before it is cut up (packetio.SuperReader): IPv4, and IPv6 with a
// bare header; nil removes it. It takes effect from the next Read.
func (d *Device) SetSuperHandler(h packetio.SuperHandler) {
	d.rmu.Lock()
	d.super = h
	d.superOn.Store(h != nil)
	d.rmu.Unlock()
}

// offerWhole hands the super-packet pkt, which lies in the scratch buffer
// at superStart, to the handler, and reports whether it took it.
func (d *Device) offerWhole(pkt []byte, gso int, ecn bool) bool {
	if d.super == nil || d.scratchP == nil {
		return false
	}
	if !d.super(d.scratchP[:], superStart, len(pkt), gso, ecn) {
		return false
	}
	d.superTaken.Add(1)
	return true
}
