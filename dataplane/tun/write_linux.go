package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vxdp/vxdp/encap"
	"golang.org/x/sys/unix"
)

// writeState is what Write works with on one queue.
type writeState struct {
	wmu sync.Mutex // serialises Write on this queue; guards the fields up to the counters
	// A merged super-packet goes out with one writev(2): its headers
	// from gro, the payloads straight from the caller's buffers, which
	// run holds.
	gro      []byte
	run      [][]byte
	iovs     []unix.Iovec
	niov     int
	wrote    bool
	werrno   unix.Errno
	nchecked int // members of run that WriteChecked vouched for
	writevFn func(fd uintptr) bool

	txErrors atomic.Uint64
	merged   atomic.Uint64 // TCP segments written inside merged super-packets
	// partialSupers counts TCP super-packets written whole with their
	// checksum left to the kernel (partialSuper).
	partialSupers atomic.Uint64
	usoMerged     atomic.Uint64 // UDP datagrams written inside merged super-packets
	// Segments and datagrams merged on the engine's word that their
	// checksum is right (WriteChecked), without a check of their own.
	checkedMerged atomic.Uint64
	mergedMax     atomic.Uint64          // the largest merged super-packet, TCP or UDP
	usoOff        atomic.Pointer[string] // why UDP datagrams are no longer merged
}

// Write writes each bufs[i][offset:] as one packet with one write(2), or,
// on a device with offloads, merges runs of one flow's TCP segments or UDP
// datagrams into super-packets written with one writev(2) each (gro.go).
// A packet the kernel rejects (not IPv4/IPv6, too short, ...) is skipped
// and counted in TXErrors. It returns the number of packets the kernel accepted;
// the error is non-nil only when the device is unusable: closed
// (net.ErrClosed) or deleted by the kernel (ErrInterfaceGone).
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	w := d.writer()
	defer w.wmu.Unlock()
	return w.write(bufs, nil, offset)
}

// WriteChecked is Write for packets some of which (checked[i]) are known
// to carry a right TCP or UDP checksum (packetio.CheckedWriter): those
// merge into super-packets without the check of their segment that
// Write makes, the one pass over their bytes it would cost. A packet
// written singly is handed to the kernel as it is either way, to check
// as it checks any.
func (d *Device) WriteChecked(bufs [][]byte, checked []bool, offset int) (int, error) {
	if len(checked) < len(bufs) {
		return 0, fmt.Errorf("write %s: %d checked flags for %d packets", d.Name(), len(checked), len(bufs))
	}
	w := d.writer()
	defer w.wmu.Unlock()
	return w.write(bufs, checked, offset)
}

// isChecked reports checked[i], a nil checked being all false.
func isChecked(checked []bool, i int) bool { return checked != nil && checked[i] }

// writer picks the queue a Write goes through and returns it locked: the
// device itself when free, else a free further queue, so that writers on
// several workers do not wait for each other; if all are busy, the device.
func (d *Device) writer() *Device {
	if len(d.queues) == 0 {
		d.wmu.Lock()
		return d
	}
	if d.wmu.TryLock() {
		return d
	}
	for _, q := range d.queues {
		if q.wmu.TryLock() {
			return q
		}
	}
	d.wmu.Lock()
	return d
}

// write is Write or WriteChecked on this queue; the caller holds wmu.
func (d *Device) write(bufs [][]byte, checked []bool, offset int) (int, error) {
	if d.vnet && len(bufs) > 1 {
		return d.writeMerged(bufs, checked, offset)
	}
	return d.writeEach(bufs, offset)
}

// writeEach writes each packet with a write(2) of its own and returns how
// many the kernel took.
func (d *Device) writeEach(bufs [][]byte, offset int) (int, error) {
	n := 0
	for _, b := range bufs {
		ok, err := d.writeOne(b, offset)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// writeOne writes one packet; false with a nil error means the kernel
// refused it (counted).
func (d *Device) writeOne(b []byte, offset int) (bool, error) {
	if offset < 0 || offset >= len(b) {
		d.txErrors.Add(1)
		return false, nil
	}
	if d.vnet {
		// An all-zero header in the headroom: no segmentation, the
		// checksums are complete; or, for a TCP packet beyond the MTU
		// with its checksum partial, what a NIC's GRO would say of it.
		if offset < vnetHdrLen {
			d.txErrors.Add(1)
			return false, nil
		}
		if h, ok := d.partialSuper(b[offset:]); ok {
			h.encode(b[offset-vnetHdrLen:])
			d.partialSupers.Add(1)
		} else {
			clear(b[offset-vnetHdrLen : offset])
		}
		b = b[offset-vnetHdrLen:]
	} else {
		b = b[offset:]
	}
	return d.writeRaw(b)
}

// writeRaw writes what goes on the descriptor as is.
func (d *Device) writeRaw(b []byte) (bool, error) {
	// os.File.Write waits in the poller on EAGAIN and serialises
	// concurrent writers on the descriptor; a TUN write is one whole
	// packet or nothing.
	if _, err := d.file.Write(b); err != nil {
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return false, d.closedErr("write")
		}
		if errors.Is(err, unix.EBADFD) {
			return false, d.ioErr("write", unix.EBADFD)
		}
		d.txErrors.Add(1)
		return false, nil
	}
	return true, nil
}

// writeMerged writes a batch, merging runs of TCP segments or UDP
// datagrams of one flow into super-packets (see gro.go). checked is as
// for WriteChecked, or nil.
func (d *Device) writeMerged(bufs [][]byte, checked []bool, offset int) (int, error) {
	if d.gro == nil {
		d.gro = make([]byte, vnetHdrLen+encap.IPv6Len+encap.TCPMaxLen) // merged packets carry no IP options or extension headers
		d.run = make([][]byte, 0, groMaxSegs)
		d.iovs = make([]unix.Iovec, 1+groMaxSegs)
		d.writevFn = d.writevRun
	}
	n := 0
	for i := 0; i < len(bufs); {
		if offset < 0 || offset >= len(bufs[i]) {
			d.txErrors.Add(1)
			i++
			continue
		}
		var f mergeSeg
		ok := false
		if mtu := d.linkMTU(); mtu <= 0 || len(bufs[i])-offset <= mtu {
			// A packet beyond the MTU is a super-packet already:
			// nothing merges with it, and checking its checksum to see
			// would cost a pass.
			f, ok = d.mergeStart(bufs[i][offset:], isChecked(checked, i))
		}
		j := i + 1
		if ok {
			j = d.collectRun(bufs, checked, offset, i, f)
		}
		if !ok || len(d.run) == 1 {
			wn, err := d.writeEach(bufs[i:i+1], offset)
			n += wn
			if err != nil {
				return n, err
			}
			i++
			continue
		}
		wok, err := d.writeRun(f)
		if err != nil {
			return n, err
		}
		switch {
		case wok:
			n += len(d.run)
			if d.nchecked > 0 {
				d.checkedMerged.Add(uint64(d.nchecked))
			}
			if f.udp {
				d.usoMerged.Add(uint64(len(d.run)))
			} else {
				d.merged.Add(uint64(len(d.run)))
			}
			if l := uint64(d.iovLen()); l > d.mergedMax.Load() {
				d.mergedMax.Store(l) // one writer at a time (wmu)
			}
		case f.udp && d.werrno == unix.EINVAL:
			// A kernel without UDP segmentation on TUN writes: write
			// datagrams singly from now on, this run too.
			reason := fmt.Sprintf("UDP GSO write refused: %v", d.werrno)
			d.usoOff.Store(&reason)
			wn, err := d.writeEach(bufs[i:j], offset)
			n += wn
			if err != nil {
				return n, err
			}
		}
		i = j
	}
	return n, nil
}

// mergeStart reports whether first may begin a merged run, and its
// layout: a TCP segment, or a UDP datagram while UDP merging is on.
func (d *Device) mergeStart(first []byte, checked bool) (mergeSeg, bool) {
	if f, ok := groCandidate(first, checked); ok {
		return f, true
	}
	if d.usoOff.Load() != nil {
		return mergeSeg{}, false
	}
	return udpCandidate(first, checked)
}

// collectRun gathers in d.run the run that begins with bufs[i][offset:]
// (layout f) and returns the index of the first packet after it. A run
// takes packets of f's flow (and for TCP, in sequence) with payloads of
// f's size but a shorter last one, at most groMaxSegs packets and
// groMaxLen bytes; a TCP segment with PSH ends it. checked is as for
// WriteChecked, or nil; d.nchecked counts the run's members it vouches
// for. Caller holds wmu.
func (d *Device) collectRun(bufs [][]byte, checked []bool, offset, i int, f mergeSeg) int {
	first := bufs[i][offset:]
	d.run = append(d.run[:0], first)
	d.nchecked = 0
	if isChecked(checked, i) {
		d.nchecked++
	}
	end := f.seq + uint32(f.payload)
	total := f.hdrLen + f.payload
	last := f.psh
	j := i + 1
	for ; !last && j < len(bufs) && len(d.run) < groMaxSegs; j++ {
		if offset >= len(bufs[j]) {
			break
		}
		p := bufs[j][offset:]
		c := isChecked(checked, j)
		s, ok := mergeNext(first, f, p, end, c)
		if !ok || s.payload > f.payload || total+s.payload > groMaxLen {
			break
		}
		d.run = append(d.run, p)
		if c {
			d.nchecked++
		}
		end += uint32(s.payload)
		total += s.payload
		last = s.payload < f.payload || s.psh
	}
	return j
}

// writeRun writes the super-packet of d.run (layout f) with one writev.
// Caller holds wmu.
func (d *Device) writeRun(f mergeSeg) (bool, error) {
	h := groHeader(d.gro, d.run, f)
	d.iovs[0].Base, d.iovs[0].Len = &d.gro[0], uint64(h)
	d.niov = 1
	for _, p := range d.run {
		pl := groPayload(p, f)
		if len(pl) == 0 {
			continue
		}
		d.iovs[d.niov].Base, d.iovs[d.niov].Len = &pl[0], uint64(len(pl))
		d.niov++
	}
	d.wrote, d.werrno = false, 0
	err := d.raw.Write(d.writevFn)
	for i := range d.niov {
		d.iovs[i].Base = nil // keep no reference to the caller's buffers
	}
	switch {
	case err != nil:
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return false, d.closedErr("write")
		}
		return false, d.ioErr("write", err)
	case d.werrno == unix.EBADFD:
		return false, d.ioErr("write", unix.EBADFD)
	case !d.wrote:
		if !(f.udp && d.werrno == unix.EINVAL) { // the caller falls back for that one
			d.txErrors.Add(1)
		}
		return false, nil
	}
	return true, nil
}

// writev is writev(2); tests replace it to play a kernel that refuses
// some super-packets.
var writev = func(fd uintptr, iovs []unix.Iovec) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	return errno
}

// writevRun runs in the poller callback: one writev(2) of the prepared run.
func (d *Device) writevRun(fd uintptr) bool {
	for {
		errno := writev(fd, d.iovs[:d.niov])
		switch errno {
		case 0:
			d.wrote = true
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			d.werrno = errno
			return true
		}
	}
}

// iovLen is the length of the packet the last writeRun sent, without the
// virtio_net_hdr. Caller holds wmu.
func (d *Device) iovLen() int {
	n := -vnetHdrLen
	for _, v := range d.iovs[:d.niov] {
		n += int(v.Len)
	}
	return n
}

// partialSuper returns the virtio_net_hdr for pkt if it is a plain IPv4
// or IPv6 TCP packet longer than the interface MTU whose checksum field
// holds exactly the pseudo-header sum, as a Linux sender's super-packet
// arrives through a virtual link: marked for the kernel to finish the
// checksum, cut at the MTU should the pod forward it.
func (d *Device) partialSuper(pkt []byte) (vnetHdr, bool) {
	mtu := d.linkMTU()
	if mtu <= 0 || len(pkt) <= mtu {
		return vnetHdr{}, false
	}
	seg, pseudo, ipLen, v6, ok := plainIP(pkt, encap.ProtoTCP)
	if !ok {
		return vnetHdr{}, false
	}
	tcp := encap.TCP(seg)
	if !tcp.IsValid(len(tcp)) || tcp.Checksum() != encap.Fold(pseudo) {
		return vnetHdr{}, false
	}
	hl := ipLen + tcp.HeaderLen()
	gso := mtu - hl
	if gso <= 0 || len(pkt) <= hl {
		return vnetHdr{}, false
	}
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: uint16(hl), gsoSize: uint16(gso),
		csumStart: uint16(ipLen), csumOffset: encap.TCPChecksumOffset}
	if v6 {
		h.gsoType = vnetGSOTCPv6
	}
	if tcp.Flags()&encap.TCPFlagCWR != 0 {
		h.gsoType |= vnetGSOECN
	}
	return h, true
}
