package fib

import (
	"net/netip"
	"testing"
)

// decodeOps turns fuzz bytes into a sequence of builder operations.
//
// Each record is a flag byte, a length byte and some address bytes. Flag
// bit 0 selects IPv6, bit 1 turns the record into a delete and bit 2 marks
// a point at which the current state is built into a snapshot. An IPv4
// record carries 4 address bytes; an IPv6 record carries a count k (0..16)
// and k bytes, the rest being zero, so short records share long runs of
// zero bytes and nest deep in the trie.
//
// The checks are quadratic in the number of operations, so inputs are cut
// off at maxFuzzOps to keep every execution fast.
func decodeOps(data []byte) (ops []fuzzOp) {
	for len(data) >= 2 && len(ops) < maxFuzzOps {
		flag, bits := data[0], int(data[1])
		data = data[2:]
		var b [16]byte
		is6 := flag&1 != 0
		if is6 {
			if len(data) < 1 {
				break
			}
			k := min(int(data[0])%17, len(data)-1)
			copy(b[:], data[1:1+k])
			data = data[1+k:]
		} else {
			n := copy(b[:4], data)
			data = data[n:]
		}
		a := addrFromBytes(b, is6)
		p := netip.PrefixFrom(a, bits%(a.BitLen()+1))
		ops = append(ops, fuzzOp{
			p:        p.Masked(),
			raw:      p,
			del:      flag&2 != 0,
			snapshot: flag&4 != 0,
		})
	}
	return ops
}

const (
	maxFuzzOps       = 256
	maxFuzzSnapshots = 4
)

type fuzzOp struct {
	p, raw        netip.Prefix
	del, snapshot bool
}

func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 24, 192, 0, 2, 0, 0, 25, 192, 0, 2, 128, 0, 32, 192, 0, 2, 200})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 32, 4, 0x20, 0x01, 0x0d, 0xb8})
	f.Add([]byte{1, 128, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		1, 64, 4, 0x20, 0x01, 0x0d, 0xb8, 1, 127, 0, 3, 0, 24, 192, 0, 2, 0})
	f.Add([]byte{0, 16, 10, 1, 0, 0, 4, 17, 10, 1, 128, 0, 2, 16, 10, 1, 0, 0, 0, 24, 10, 1, 200, 0})
	f.Add([]byte{1, 96, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 24, 192, 0, 2, 0})

	f.Fuzz(checkOps)
}

// checkOps replays the operations encoded in data on a Builder and checks
// every table built along the way against the reference.
func checkOps(t *testing.T, data []byte) {
	ops := decodeOps(data)
	b := NewBuilder[int]()
	ref := refTable{}
	type snap struct {
		tab *Table[int]
		ref refTable
	}
	var snaps []snap
	for i, o := range ops {
		if o.raw != o.p {
			if err := b.Insert(o.raw, -1); err == nil {
				t.Fatalf("Insert(%v) with host bits succeeded", o.raw)
			}
		}
		if o.del {
			_, want := ref[o.p]
			if got := b.Delete(o.p); got != want {
				t.Fatalf("Delete(%v) = %v, want %v", o.p, got, want)
			}
			delete(ref, o.p)
		} else {
			if err := b.Insert(o.p, i); err != nil {
				t.Fatalf("Insert(%v): %v", o.p, err)
			}
			ref[o.p] = i
		}
		if o.snapshot && len(snaps) < maxFuzzSnapshots {
			tab := b.Build()
			cp := make(refTable, len(ref))
			for p, v := range ref {
				cp[p] = v
			}
			snaps = append(snaps, snap{tab, cp})
			// Continue from the snapshot, as the control plane would.
			b = tab.Builder()
		}
	}
	snaps = append(snaps, snap{b.Build(), ref})

	var addrs []netip.Addr
	for _, o := range ops {
		addrs = append(addrs, probes(o.p)...)
		addrs = append(addrs, o.raw.Addr())
	}
	for _, s := range snaps {
		checkAgainstRef(t, s.tab, s.ref, addrs)
	}
}
