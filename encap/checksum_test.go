package encap

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// checksumRef is RFC 1071 done the slow, obvious way: 16-bit words with an
// end-around carry after every addition.
func checksumRef(b []byte, initial uint32) uint16 {
	s := initial
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
		s = s&0xffff + s>>16
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestChecksumAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 2048)
	for n := 0; n <= len(buf); n++ {
		for i := range buf[:n] {
			buf[i] = byte(r.Uint32())
		}
		initial := r.Uint32() & 0x3ffff
		if got, want := Checksum(buf[:n], initial), checksumRef(buf[:n], initial); got != want {
			t.Fatalf("len %d initial %#x: got %#04x want %#04x", n, initial, got, want)
		}
	}
	// All ones stresses the carries.
	for i := range buf {
		buf[i] = 0xff
	}
	for n := 0; n <= len(buf); n++ {
		if got, want := Checksum(buf[:n], 0xffff), checksumRef(buf[:n], 0xffff); got != want {
			t.Fatalf("0xff len %d: got %#04x want %#04x", n, got, want)
		}
	}
}

// FuzzChecksum checks the word-at-a-time sum against the reference for any
// data, length, alignment and running sum.
func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint32(0), uint8(0))
	f.Add([]byte{0xff}, uint32(0xffffffff), uint8(1))
	f.Add(make([]byte, 129), uint32(0x1ffff), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, initial uint32, skew uint8) {
		// Misalign the data by copying it behind skew%8 bytes.
		k := int(skew % 8)
		buf := make([]byte, k+len(b))
		copy(buf[k:], b)
		if got, want := Checksum(buf[k:], initial), checksumRef(b, initial); got != want {
			t.Fatalf("len %d initial %#x skew %d: got %#04x want %#04x", len(b), initial, k, got, want)
		}
	})
}

func TestUpdateChecksum16(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 20)
	for i := 0; i < 10000; i++ {
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], Checksum(b, 0))
		old := binary.BigEndian.Uint16(b[8:])
		nw := uint16(r.Uint32())
		binary.BigEndian.PutUint16(b[8:], nw)
		binary.BigEndian.PutUint16(b[10:], UpdateChecksum16(binary.BigEndian.Uint16(b[10:]), old, nw))
		if Fold(Sum(b, 0)) != 0xffff {
			t.Fatalf("incremental update wrong for %x", b)
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{20, 64, 576, 1500, 9000, 65535} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i)
		}
		b.Run(itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				Checksum(buf, 0)
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func TestSum20(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 20)
	for i := 0; i < 200000; i++ {
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%7 == 0 {
			clear(b[4:])
			b[0], b[1] = 0xff, 0xff
		}
		if got, want := Fold(sum20(b)), Fold(Sum(b, 0)); got != want {
			t.Fatalf("%x: sum20 %#04x, Sum %#04x", b, got, want)
		}
	}
}
