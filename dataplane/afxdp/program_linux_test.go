package afxdp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// frame builds Ethernet + IPv4 + UDP to dst:port; mutate edits it.
func testFrame(dst netip.Addr, port uint16, mutate func(f []byte) []byte) []byte {
	src := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), 40000)
	p := udpPacket(src, netip.AddrPortFrom(dst, port), []byte("payload!"), ethLen)
	copy(p[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(p[6:12], []byte{2, 0, 0, 0, 0, 2})
	p[12], p[13] = 0x08, 0x00
	if mutate != nil {
		p = mutate(p)
	}
	return p
}

// withIPOptions grows the IPv4 header to ihl words (NOP options).
func withIPOptions(ihl int) func([]byte) []byte {
	return func(f []byte) []byte {
		extra := (ihl - 5) * 4
		out := make([]byte, 0, len(f)+extra)
		out = append(out, f[:ethLen+20]...)
		for range extra {
			out = append(out, 1)
		}
		out = append(out, f[ethLen+20:]...)
		out[ethLen] = 0x40 | byte(ihl)
		binary.BigEndian.PutUint16(out[ethLen+2:], uint16(len(out)-ethLen))
		return out
	}
}

// TestProgram runs the XDP program on crafted frames (BPF_PROG_TEST_RUN,
// nothing attached). It is loaded with XDP_DROP as the no-socket action, so
// a frame it would redirect comes back as DROP and one it passes as PASS.
func TestProgram(t *testing.T) {
	needRoot(t)
	for _, node := range []netip.Addr{addrA, netip.MustParseAddr("192.0.2.200")} {
		m, err := newXSKMap(1)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		prog, err := loadProgram(node, 8472, m, xdpDrop)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		info, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != progName {
			t.Errorf("program name %q, want %q", info.Name, progName)
		}
		other := netip.MustParseAddr("192.0.2.99")
		for _, tc := range []struct {
			name  string
			frame []byte
			want  uint32
		}{
			{"match", testFrame(node, 8472, nil), xdpDrop},
			{"DF set", testFrame(node, 8472, func(f []byte) []byte { f[ethLen+6] = 0x40; return f }), xdpDrop},
			{"IP options", testFrame(node, 8472, withIPOptions(7)), xdpDrop},
			{"max IP options", testFrame(node, 8472, withIPOptions(15)), xdpDrop},
			{"padded short frame", append(testFrame(node, 8472, nil), make([]byte, 10)...), xdpDrop},
			{"other port", testFrame(node, 9999, nil), xdpPass},
			{"port byte-swapped", testFrame(node, 0x1121, nil), xdpPass},
			{"other address", testFrame(other, 8472, nil), xdpPass},
			{"TCP", testFrame(node, 8472, func(f []byte) []byte { f[ethLen+9] = 6; return f }), xdpPass},
			{"more fragments", testFrame(node, 8472, func(f []byte) []byte { f[ethLen+6] = 0x20; return f }), xdpPass},
			{"later fragment", testFrame(node, 8472, func(f []byte) []byte { f[ethLen+7] = 0x10; return f }), xdpPass},
			{"IHL 4", testFrame(node, 8472, func(f []byte) []byte { f[ethLen] = 0x44; return f }), xdpPass},
			{"IPv6 version", testFrame(node, 8472, func(f []byte) []byte { f[ethLen] = 0x65; return f }), xdpPass},
			{"ARP", testFrame(node, 8472, func(f []byte) []byte { f[12], f[13] = 0x08, 0x06; return f }), xdpPass},
			{"VLAN tagged", testFrame(node, 8472, func(f []byte) []byte {
				out := append([]byte{}, f[:12]...)
				out = append(out, 0x81, 0x00, 0x00, 0x64)
				return append(out, f[12:]...)
			}), xdpPass},
			{"IHL beyond the frame", testFrame(node, 8472, func(f []byte) []byte { f[ethLen] = 0x4f; return f }), xdpPass},
			{"no UDP header", testFrame(node, 8472, func(f []byte) []byte { return f[:ethLen+20+4] }), xdpPass},
			{"IPv4 header cut", testFrame(node, 8472, func(f []byte) []byte { return f[:ethLen+19] }), xdpPass},
			{"Ethernet only", testFrame(node, 8472, func(f []byte) []byte { return f[:ethLen] }), xdpPass},
		} {
			t.Run(node.String()+"/"+tc.name, func(t *testing.T) {
				got, err := prog.Run(&ebpf.RunOptions{Data: tc.frame})
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Fatalf("action %d, want %d", got, tc.want)
				}
			})
		}
	}
}
