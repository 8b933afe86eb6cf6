package fib

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
)

// Slot encoding; see the package documentation.
const (
	refBit     = 1 << 31 // slot refers to a node or leaf, not a route
	leafBit    = 1 << 30 // with refBit: a leaf
	checkBit   = 1 << 29 // with refBit, without leafBit: verify node key
	depthShift = 25
	depthMask  = 0xf
	nodeMask   = 1<<depthShift - 1 // word offset of a node in mem
	leafMask   = 1<<30 - 1

	maxRoutes = refBit - 1

	rootBits = 16
	rootSize = 1 << rootBits
	stride   = 8
	nodeSize = 1 << stride
)

// Node layout in mem, in 64-bit words from the node's offset o:
//
//	o+0 .. o+3   run bitmap: bit i set where slot i starts a new run of
//	             equal slots (bit 0 always set)
//	o+4          bytes 0..3: set bits in bitmap words before word 0..3;
//	             high half: value of run 0
//	o+5 ...      values of runs 1, 2, ... two per word, low half first
//
// A node whose key must be checked is preceded by its check words:
// IPv4 o-1 = key<<32 | fallback; IPv6 o-3, o-2 = key, o-1 = fallback.
// Each record (check words, then node) starts at a multiple of 64 bytes
// into mem, so that a node's header, check words and first few runs share
// one cache line instead of straddling two.
const (
	bitmapWords = nodeSize / 64
	countWord   = bitmapWords
	lineWords   = 8
)

// nodeSlot returns slot i of the node at offset o.
func nodeSlot(mem []uint64, o, i uint) uint32 {
	w := i >> 6
	// Runs starting at or before slot i: those counted for earlier words
	// plus bits 0..i%64 of word w.
	k := uint(mem[o+countWord]>>(8*w))&0xff + uint(bits.OnesCount64(mem[o+w]<<(63-i&63)))
	p := 2*(o+countWord) + k
	return uint32(mem[p>>1] >> (32 * (p & 1)))
}

type leaf4 struct {
	key, mask       uint32
	route, fallback uint32
}

// trie4 is the IPv4 lookup structure. A nil root means no IPv4 prefixes.
type trie4 struct {
	root   *[rootSize]uint32
	mem    []uint64
	leaves []leaf4
}

func (tr *trie4) lookup(a uint32) uint32 {
	r := tr.root
	if r == nil {
		return 0
	}
	s := r[a>>16]
	for s&refBit != 0 {
		if s&leafBit != 0 {
			l := &tr.leaves[s&leafMask]
			if a&l.mask == l.key {
				return l.route
			}
			return l.fallback
		}
		o := uint(s & nodeMask)
		d := s >> depthShift & depthMask
		if s&checkBit != 0 {
			c := tr.mem[o-1]
			if (a^uint32(c>>32))&^(^uint32(0)>>(8*d)) != 0 {
				return uint32(c)
			}
		}
		s = nodeSlot(tr.mem, o, uint(a>>((24-8*d)&31))&(nodeSize-1))
	}
	return s
}

type leaf6 struct {
	key             u128
	route, fallback uint32
	bits            uint32
	_               uint32 // 32 bytes, so a leaf never straddles cache lines
}

type trie6 struct {
	root   *[rootSize]uint32
	mem    []uint64
	leaves []leaf6
}

// lookup takes the address as two big-endian halves rather than [16]byte,
// which would be passed through the stack.
func (tr *trie6) lookup(hi, lo uint64) uint32 {
	r := tr.root
	if r == nil {
		return 0
	}
	s := r[hi>>48]
	for s&refBit != 0 {
		if s&leafBit != 0 {
			l := &tr.leaves[s&leafMask]
			mhi, mlo := mask128(uint(l.bits))
			if hi&mhi == l.key.hi && lo&mlo == l.key.lo {
				return l.route
			}
			return l.fallback
		}
		o := uint(s & nodeMask)
		d := uint(s >> depthShift & depthMask)
		if s&checkBit != 0 {
			mhi, mlo := mask128(8 * d)
			if hi&mhi != tr.mem[o-3] || lo&mlo != tr.mem[o-2] {
				return uint32(tr.mem[o-1])
			}
		}
		x := hi
		if d >= 8 {
			x = lo
		}
		s = nodeSlot(tr.mem, o, uint(x>>(56-8*(d&7)))&(nodeSize-1))
	}
	return s
}

// mask128 returns the top n bits set, n <= 128.
func mask128(n uint) (hi, lo uint64) {
	return ^uint64(0) << (64 - min(n, 64)), ^uint64(0) << (128 - max(n, 64))
}

// u128 is an address with IPv4 left-aligned in hi, so that bit i of any
// address is bit i counted from the top of hi.
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) and(hi, lo uint64) u128 { return u128{a.hi & hi, a.lo & lo} }

// commonBits returns the number of leading bits a and b share.
func commonBits(a, b u128) int {
	if x := a.hi ^ b.hi; x != 0 {
		return bits.LeadingZeros64(x)
	}
	return 64 + bits.LeadingZeros64(a.lo^b.lo)
}

// field returns bits [start, start+w) of a. The field must not straddle
// the hi/lo boundary, which holds for the byte-aligned fields used here.
func (a u128) field(start, w int) uint {
	if start < 64 {
		return uint(a.hi>>(64-start-w)) & (1<<w - 1)
	}
	return uint(a.lo>>(128-start-w)) & (1<<w - 1)
}

// trieBuilder builds one family's trie from prefixes sorted by
// comparePrefix.
//
// The sort order is what keeps the construction simple: a prefix always
// comes before every prefix it contains, so writing routes in order lets a
// more specific prefix overwrite a less specific one, and a slot's value is
// final by the time the first prefix below the slot is reached. Prefixes
// below one slot are also contiguous, so a child is built from a range.
type trieBuilder struct {
	addrs    []u128
	bits     []int
	base     int // route number of addrs[0] minus one
	is4      bool
	maxDepth int // index of the last address byte

	root   []uint32
	mem    []uint64
	leaves []leafSpec
	// scratch holds a node being filled, expanded, one per depth: a
	// child is always deeper than its parent, and siblings are finished
	// one after another.
	scratch *[16][nodeSize]uint32
	runs    []uint32
}

type leafSpec struct {
	key             u128
	bits            int
	route, fallback uint32
}

func newTrieBuilder(ps []netip.Prefix, base, addrLen int) *trieBuilder {
	b := &trieBuilder{
		addrs:    make([]u128, len(ps)),
		bits:     make([]int, len(ps)),
		base:     base,
		is4:      addrLen == 4,
		maxDepth: addrLen - 1,
	}
	for i, p := range ps {
		b.addrs[i] = u128From(p.Addr())
		b.bits[i] = p.Bits()
	}
	return b
}

func (b *trieBuilder) build() *trieBuilder {
	if len(b.addrs) == 0 {
		return b
	}
	b.root = make([]uint32, rootSize)
	b.scratch = new([16][nodeSize]uint32)
	b.fill(b.root, 0, len(b.addrs), 0, rootBits)
	if len(b.leaves) > leafMask+1 {
		panic("fib: table too large")
	}
	// Growing by append may have left up to half of mem unused; a table
	// lives long enough that handing back the slack is worth a copy.
	if cap(b.mem)-len(b.mem) > len(b.mem)/8 {
		b.mem = append([]uint64(nil), b.mem...)
	}
	return b
}

// groupEnd returns the end of the run of prefixes starting at i that share
// the slot of i in a node covering bits [start, start+w).
func (b *trieBuilder) groupEnd(i, hi, start, w int) int {
	c := b.addrs[i].field(start, w)
	j := i + 1
	for j < hi && b.addrs[j].field(start, w) == c {
		j++
	}
	return j
}

// childDepth returns the address byte indexing the node that holds the
// prefixes [i, j), all of which lie below one slot whose boundary is bit
// end. It is the deepest byte such that every prefix in the range shares
// all bits before it and is longer than the bits before it.
func (b *trieBuilder) childDepth(i, j, end int) int {
	minLen := b.bits[i]
	for k := i + 1; k < j; k++ {
		minLen = min(minLen, b.bits[k])
	}
	// The range is sorted, so its first and last address bound how much
	// all of them share.
	shared := min(commonBits(b.addrs[i], b.addrs[j-1]), minLen-1)
	return max(end/8, min(shared/8, b.maxDepth))
}

// fill writes the prefixes [lo, hi) into slots, a node covering bits
// [start, start+w), creating nodes and leaves below it as needed.
func (b *trieBuilder) fill(slots []uint32, lo, hi, start, w int) {
	end := start + w
	for i := lo; i < hi; {
		if b.bits[i] <= end {
			first := b.addrs[i].field(start, w)
			setAll(slots[first:first+1<<(end-b.bits[i])], uint32(b.base+i+1))
			i++
			continue
		}
		c := b.addrs[i].field(start, w)
		j := b.groupEnd(i, hi, start, w)
		fallback := slots[c]
		if j-i == 1 {
			slots[c] = refBit | leafBit | uint32(len(b.leaves))
			b.leaves = append(b.leaves, leafSpec{
				key:      b.addrs[i],
				bits:     b.bits[i],
				route:    uint32(b.base + i + 1),
				fallback: fallback,
			})
			i = j
			continue
		}
		d := b.childDepth(i, j, end)
		child := &b.scratch[d]
		setAll(child[:], fallback)
		b.fill(child[:], i, j, 8*d, stride)
		ref := refBit | uint32(d)<<depthShift
		var buf [3]uint64
		check := buf[:0]
		if 8*d > end {
			ref |= checkBit
			key := b.addrs[i].and(mask128(uint(8 * d)))
			if b.is4 {
				check = append(check, key.hi|uint64(fallback))
			} else {
				check = append(check, key.hi, key.lo, uint64(fallback))
			}
		}
		slots[c] = ref | b.appendNode(child, check)
		i = j
	}
}

// appendNode encodes slots, preceded by check, at the end of mem and
// returns the node's offset.
func (b *trieBuilder) appendNode(slots *[nodeSize]uint32, check []uint64) uint32 {
	var bm [bitmapWords]uint64
	runs := b.runs[:0]
	for i, s := range slots {
		if i == 0 || s != slots[i-1] {
			bm[i/64] |= 1 << (i % 64)
			runs = append(runs, s)
		}
	}
	b.runs = runs

	for len(b.mem)%lineWords != 0 {
		b.mem = append(b.mem, 0)
	}
	b.mem = append(b.mem, check...)
	o := len(b.mem)
	if o > nodeMask {
		panic(fmt.Sprintf("fib: table too large (trie node memory exceeds %d words)", nodeMask))
	}
	b.mem = append(b.mem, bm[:]...)
	var counts uint64
	n := 0
	for w, x := range bm {
		counts |= uint64(n) << (8 * w)
		n += bits.OnesCount64(x)
	}
	b.mem = append(b.mem, counts|uint64(runs[0])<<32)
	for k := 1; k < len(runs); k += 2 {
		x := uint64(runs[k])
		if k+1 < len(runs) {
			x |= uint64(runs[k+1]) << 32
		}
		b.mem = append(b.mem, x)
	}
	return uint32(o)
}

func setAll(s []uint32, v uint32) {
	for i := range s {
		s[i] = v
	}
}

func (b *trieBuilder) to4() trie4 {
	if b.root == nil {
		return trie4{}
	}
	leaves := make([]leaf4, len(b.leaves))
	for i, l := range b.leaves {
		m, _ := mask128(uint(l.bits))
		leaves[i] = leaf4{
			key:      uint32(l.key.hi >> 32),
			mask:     uint32(m >> 32),
			route:    l.route,
			fallback: l.fallback,
		}
	}
	return trie4{root: (*[rootSize]uint32)(b.root), mem: b.mem, leaves: leaves}
}

func (b *trieBuilder) to6() trie6 {
	if b.root == nil {
		return trie6{}
	}
	leaves := make([]leaf6, len(b.leaves))
	for i, l := range b.leaves {
		leaves[i] = leaf6{key: l.key, route: l.route, fallback: l.fallback, bits: uint32(l.bits)}
	}
	return trie6{root: (*[rootSize]uint32)(b.root), mem: b.mem, leaves: leaves}
}

// sizeBytes returns the memory held by the lookup structures.
func (tr *trie4) sizeBytes() int {
	if tr.root == nil {
		return 0
	}
	return 4*rootSize + 8*cap(tr.mem) + 16*cap(tr.leaves)
}

func (tr *trie6) sizeBytes() int {
	if tr.root == nil {
		return 0
	}
	return 4*rootSize + 8*cap(tr.mem) + 32*cap(tr.leaves)
}
