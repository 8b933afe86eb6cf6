// Package fib provides longest-prefix-match tables for the forwarding path.
//
// A Table is built once by a Builder and never changes afterwards, so any
// number of goroutines may call Lookup on it without locks or atomics. The
// control plane updates routes copy-on-write: it derives a Builder from the
// current Table, edits it, builds a new Table and publishes the pointer
// (for example through an atomic.Pointer). Readers holding the old Table keep
// using it until they next load the pointer.
//
// # Layout
//
// Each address family has its own multibit trie: a 65536-slot root indexed
// by the first 16 address bits, then nodes of 256 logical slots, each
// indexed by one further address byte. Every slot is one uint32:
//
//	0ddddddd dddddddd dddddddd dddddddd  route d-1 (0: no route)
//	10cDDDDo oooooooo oooooooo oooooooo  node at offset o, indexed by
//	                                     address byte D; c: check key first
//	11llllll llllllll llllllll llllllll  leaf l: a single prefix
//
// Build performs controlled prefix expansion: a slot holds the longest
// prefix that covers all of it, so the value found where the walk stops is
// already the longest match and nothing is ever backtracked. Sparse regions
// are compressed three ways, which matters most for host routes (/32, /128)
// and for IPv6 in general:
//
//   - Leaves: a slot under which only one prefix remains points at a leaf
//     holding that prefix and the slot's own route (the fallback) instead
//     of a chain of nodes.
//   - Path compression: a chain of nodes that would each have one child
//     and no routes of their own is skipped. The slot points straight at
//     the deepest node, which carries the skipped address bits as a key; a
//     lookup that does not match the key takes the node's fallback, which
//     is what the skipped nodes would have returned.
//   - Run-length nodes: a node stores a 256-bit map of where runs of equal
//     slots start and one value per run, found by popcount. A node with a
//     handful of prefixes fits in one 64-byte cache line instead of 1 KiB.
//
// For example, the IPv4 table {0.0.0.0/0, 192.0.2.0/25, 192.0.2.0/30,
// 192.0.2.200/30, 198.51.100.7/32} is laid out as
//
//	root [65536]uint32                node, byte D=3, checked:
//	+-----------------------+         key 192.0.2.0/24, fallback /0
//	| 0x0000..0xbfff : /0   |         +-------------------------+
//	| 0xc000 (192.0) ---------------> | .0   .. .3    : /30 #1  |
//	| 0xc001..0xc632 : /0   |         | .4   .. .127  : /25     |
//	| 0xc633 (198.51) ----------+     | .128 .. .199  : /0      |
//	| 0xc634..0xffff : /0   |   |     | .200 .. .203  : /30 #2  |
//	+-----------------------+   |     | .204 .. .255  : /0      |
//	                            |     +-------------------------+
//	                            +---> leaf 198.51.100.7/32, fallback /0
//
// where the 192.0 slot skips the node for byte 2 because every prefix below
// it lies in 192.0.2.0/24 and none is as short as /24, and the node is
// stored as five runs. A lookup makes at most three dependent node or leaf
// visits for IPv4, root included, and at most fifteen for IPv6, usually far
// fewer. Nodes and leaves live in flat slices addressed by offset, so the
// trie holds no pointers for the garbage collector to trace.
//
// # Address families
//
// IPv4 prefixes and addresses use the IPv4 trie, everything else the IPv6
// trie. An IPv4-mapped IPv6 address such as ::ffff:192.0.2.1 is looked up
// as IPv6 and therefore only matches IPv6 prefixes (for example
// ::ffff:192.0.2.0/120); callers that want it treated as IPv4 should call
// Addr.Unmap first. IPv6 zones are ignored. The zero Addr matches nothing.
package fib

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
)

// Table is an immutable longest-prefix-match table mapping prefixes to
// values of type V. It is safe for concurrent use by any number of
// goroutines and is never modified after Build. A nil *Table behaves as an
// empty table.
type Table[V any] struct {
	tries
	// prefixes is sorted by comparePrefix (IPv4 first, then by address,
	// then by length); vals[i] belongs to prefixes[i]. Trie slots
	// refer to these by index+1.
	prefixes []netip.Prefix
	vals     []V
}

// Lookup returns the value of the longest prefix containing a.
func (t *Table[V]) Lookup(a netip.Addr) (v V, ok bool) {
	if t != nil {
		if i := t.index(a); i != 0 {
			return t.vals[i-1], true
		}
	}
	return v, false
}

// LookupPrefix returns the longest prefix containing a and its value.
func (t *Table[V]) LookupPrefix(a netip.Addr) (p netip.Prefix, v V, ok bool) {
	if t != nil {
		if i := t.index(a); i != 0 {
			return t.prefixes[i-1], t.vals[i-1], true
		}
	}
	return p, v, false
}

// tries holds both families' lookup structures. It is separate from Table
// so that the lookup code is not generic and needs no type dictionary.
type tries struct {
	v4 trie4
	v6 trie6
}

// index returns index+1 of the longest match for a, or 0.
func (tr *tries) index(a netip.Addr) uint32 {
	// AsSlice, unlike As16, inlines without copying its result through a
	// 16-byte temporary, which would stall on store forwarding.
	switch b := a.AsSlice(); len(b) {
	case 4:
		return tr.v4.lookup(binary.BigEndian.Uint32(b))
	case 16:
		return tr.v6.lookup(binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]))
	}
	return 0
}

// Get returns the value stored for exactly p.
func (t *Table[V]) Get(p netip.Prefix) (v V, ok bool) {
	if t == nil || !p.IsValid() {
		return v, false
	}
	i, found := slices.BinarySearchFunc(t.prefixes, p, comparePrefix)
	if !found {
		return v, false
	}
	return t.vals[i], true
}

// Len returns the number of prefixes in t.
func (t *Table[V]) Len() int {
	if t == nil {
		return 0
	}
	return len(t.prefixes)
}

// All yields every prefix and its value: IPv4 before IPv6, each family
// ordered by address and then by prefix length.
func (t *Table[V]) All() iter.Seq2[netip.Prefix, V] {
	return func(yield func(netip.Prefix, V) bool) {
		if t == nil {
			return
		}
		for i, p := range t.prefixes {
			if !yield(p, t.vals[i]) {
				return
			}
		}
	}
}

// Builder returns a Builder holding all of t's prefixes. Changes to the
// Builder do not affect t. Copying and rebuilding cost time proportional to
// the whole table, so a control plane should batch changes into one Build
// where it can.
func (t *Table[V]) Builder() *Builder[V] {
	b := &Builder[V]{m: make(map[netip.Prefix]V, t.Len())}
	if t != nil {
		for i, p := range t.prefixes {
			b.m[p] = t.vals[i]
		}
	}
	return b
}

// Builder collects prefixes for a Table. It is not safe for concurrent
// use. The zero Builder is empty and ready to use.
type Builder[V any] struct {
	m map[netip.Prefix]V
}

// NewBuilder returns an empty Builder.
func NewBuilder[V any]() *Builder[V] {
	return &Builder[V]{m: make(map[netip.Prefix]V)}
}

// Insert adds p with value v, replacing any value already stored for p.
// p must be valid and have no bits set past its length.
func (b *Builder[V]) Insert(p netip.Prefix, v V) error {
	if !p.IsValid() {
		if a := p.Addr(); a.IsValid() {
			// Only the length can be wrong, and p no longer records it.
			return fmt.Errorf("fib: invalid prefix: bad length for %s", a)
		}
		return errors.New("fib: invalid prefix: zero value")
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("fib: prefix %s has host bits set (want %s)", p, m)
	}
	if b.m == nil {
		b.m = make(map[netip.Prefix]V)
	}
	b.m[p] = v
	return nil
}

// Delete removes p and reports whether it was present.
func (b *Builder[V]) Delete(p netip.Prefix) bool {
	if _, ok := b.m[p]; !ok {
		return false
	}
	delete(b.m, p)
	return true
}

// Len returns the number of prefixes currently in b.
func (b *Builder[V]) Len() int { return len(b.m) }

// Build returns a Table holding b's current prefixes. b stays usable and
// later changes to it do not affect the returned Table.
func (b *Builder[V]) Build() *Table[V] {
	n := len(b.m)
	if n > maxRoutes {
		panic(fmt.Sprintf("fib: %d prefixes exceed the table limit of %d", n, maxRoutes))
	}
	t := &Table[V]{
		prefixes: make([]netip.Prefix, 0, n),
		vals:     make([]V, n),
	}
	for p := range b.m {
		t.prefixes = append(t.prefixes, p)
	}
	slices.SortFunc(t.prefixes, comparePrefix)
	for i, p := range t.prefixes {
		t.vals[i] = b.m[p]
	}
	n4, _ := slices.BinarySearchFunc(t.prefixes, true, func(p netip.Prefix, _ bool) int {
		if p.Addr().Is4() {
			return -1
		}
		return 1
	})
	t.v4 = newTrieBuilder(t.prefixes[:n4], 0, 4).build().to4()
	t.v6 = newTrieBuilder(t.prefixes[n4:], n4, 16).build().to6()
	return t
}

// comparePrefix orders prefixes by family, address and length. For the
// masked prefixes a Table holds it agrees with netip.Prefix.Compare, but it
// skips the masking that makes the latter dominate Build's sort.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
