package afxdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// ringOffsets says where a ring's fields sit inside its memory: the kernel
// reports them per ring (getsockopt XDP_MMAP_OFFSETS), and a test lays them
// out over a plain byte slice.
type ringOffsets struct {
	producer, consumer, flags, desc uint64
}

// Entry sizes: the fill and completion rings carry UMEM addresses, the RX
// and TX rings carry descriptors (address, length, options).
const (
	addrEntrySize = 8
	descEntrySize = 16
)

// xdpDesc mirrors struct xdp_desc.
type xdpDesc struct {
	addr    uint64
	len     uint32
	options uint32
}

// ring is one single-producer single-consumer ring shared with the kernel.
// This side is either the producer (fill, TX) or the consumer (RX,
// completion) of a given ring, never both; the kernel is the other side.
//
// The indices are free-running uint32 counters; an entry lives at
// index&mask. Unsigned subtraction gives the distance between two indices
// even after they wrap past 2^32, so nothing here compares them with < or >.
//
// Ordering with the kernel: the side that writes entries publishes them by
// storing the producer index after the entries, and the other side loads the
// producer index before reading them; likewise for the consumer index and
// slot reuse. Go's sync/atomic operations are sequentially consistent, which
// is at least the acquire/release the protocol needs. The entries themselves
// are plain memory, ordered by those atomics.
//
// A ring is not safe for concurrent use: its owner serialises access.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	entries  unsafe.Pointer
	mask     uint32
	size     uint32

	// local is this side's next index: the next slot to fill (producer) or
	// the next entry to read (consumer). It runs ahead of the published
	// index between reserve/peek and submit/release.
	local uint32
	// cached is the last seen index of the other side; for a producer it is
	// that consumer index plus size, so free space is cached - local.
	cached uint32
}

// newRing lays a ring of size entries of entrySize bytes over mem. size must
// be a power of two.
func newRing(mem []byte, off ringOffsets, size uint32, entrySize uintptr) (*ring, error) {
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring size %d is not a power of two", size)
	}
	need := off.desc + uint64(size)*uint64(entrySize)
	for _, o := range []uint64{off.producer, off.consumer, off.flags} {
		if o%4 != 0 || o+4 > uint64(len(mem)) {
			return nil, fmt.Errorf("ring index at offset %d outside %d bytes or misaligned", o, len(mem))
		}
	}
	if off.desc%8 != 0 || need > uint64(len(mem)) {
		return nil, fmt.Errorf("ring entries [%d, %d) outside %d bytes or misaligned", off.desc, need, len(mem))
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	r := &ring{
		producer: (*uint32)(unsafe.Add(base, off.producer)),
		consumer: (*uint32)(unsafe.Add(base, off.consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.flags)),
		entries:  unsafe.Add(base, off.desc),
		mask:     size - 1,
		size:     size,
	}
	return r, nil
}

// initProducer takes over a ring this side produces into, starting from
// whatever indices it holds (zero for a new kernel ring).
func (r *ring) initProducer() {
	r.local = atomic.LoadUint32(r.producer)
	r.cached = atomic.LoadUint32(r.consumer) + r.size
}

// initConsumer takes over a ring this side consumes from.
func (r *ring) initConsumer() {
	r.local = atomic.LoadUint32(r.consumer)
	r.cached = atomic.LoadUint32(r.producer)
}

// free returns how many slots the producer can reserve, at least want if
// that many are free. It reloads the consumer index only when the cached
// view is not enough, to keep the shared cache line quiet.
func (r *ring) free(want uint32) uint32 {
	n := r.cached - r.local
	if n >= want {
		return n
	}
	r.cached = atomic.LoadUint32(r.consumer) + r.size
	return r.cached - r.local
}

// reserve claims up to want slots for the producer and returns the index of
// the first and how many it got (possibly 0). Fill them with addr/desc at
// idx, idx+1, ... and then submit.
func (r *ring) reserve(want uint32) (idx, n uint32) {
	n = min(r.free(want), want)
	idx = r.local
	r.local += n
	return idx, n
}

// cancel gives back the last n reserved slots that were not filled.
func (r *ring) cancel(n uint32) { r.local -= n }

// submit publishes every reserved slot to the consumer.
func (r *ring) submit() { atomic.StoreUint32(r.producer, r.local) }

// pending is how many reserved slots submit would publish.
func (r *ring) pending() uint32 { return r.local - atomic.LoadUint32(r.producer) }

// available returns how many entries the consumer can read, reloading the
// producer index only when the cached view is empty.
func (r *ring) available() uint32 {
	n := r.cached - r.local
	if n == 0 {
		r.cached = atomic.LoadUint32(r.producer)
		n = r.cached - r.local
	}
	return n
}

// peek claims up to want entries for the consumer and returns the index of
// the first and how many it got. Read them and then release.
func (r *ring) peek(want uint32) (idx, n uint32) {
	n = min(r.available(), want)
	idx = r.local
	r.local += n
	return idx, n
}

// release hands every peeked entry back to the producer.
func (r *ring) release() { atomic.StoreUint32(r.consumer, r.local) }

// needWakeup reports whether the kernel asked to be woken (XDP_RING_NEED_WAKEUP)
// before it processes this ring.
func (r *ring) needWakeup() bool { return atomic.LoadUint32(r.flags)&ringNeedWakeup != 0 }

// ringNeedWakeup is XDP_RING_NEED_WAKEUP, defined here so that the ring
// builds without the unix package.
const ringNeedWakeup = 1

// addr is the fill/completion entry at index i.
func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.entries, uintptr(i&r.mask)*addrEntrySize))
}

// desc is the RX/TX entry at index i.
func (r *ring) desc(i uint32) *xdpDesc {
	return (*xdpDesc)(unsafe.Add(r.entries, uintptr(i&r.mask)*descEntrySize))
}

// queued is the number of entries between the published consumer and
// producer indices: what the other side has not taken yet (producer ring)
// or this side has not released yet (consumer ring).
func (r *ring) queued() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}
