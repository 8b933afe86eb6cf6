package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/vxdp/vxdp/encap"
)

// progName is the kernel name of the XDP program. It is how Open tells a
// program left behind by a vxdp that died (replace it) from someone else's
// (never touch it), so it must not change between releases.
const progName = "vxdp_xsk"

// mapName names the XSKMAP, as a debugging aid in bpftool.
const mapName = "vxdp_xsks"

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
)

// struct xdp_md field offsets.
const (
	xdpMdData         = 0
	xdpMdDataEnd      = 4
	xdpMdRxQueueIndex = 16
)

// Packet offsets, relative to the start of the Ethernet header, named by
// encap's header views.
const (
	ethLen        = encap.EthernetLen
	offEtherType  = encap.EthernetTypeOffset
	offIPVerIHL   = ethLen + encap.IPv4VersionIHLOffset
	offIPFrag     = ethLen + encap.IPv4FlagsFragOffset
	offIPProto    = ethLen + encap.IPv4ProtocolOffset
	offIPDst      = ethLen + encap.IPv4DestinationAddrOffset
	minIPv4Len    = encap.IPv4MinLen
	udpLen        = encap.UDPLen
	offUDPDstPort = encap.UDPDestinationPortOffset

	offIP6Version = ethLen + encap.IPv6VersionTCFlowOffset
	offIP6NextHdr = ethLen + encap.IPv6NextHeaderOffset
	offIP6Dst     = ethLen + encap.IPv6DestinationAddrOffset
	ip6Len        = encap.IPv6Len
	offUDP6       = ethLen + ip6Len // the UDP header right behind the fixed one
)

// wire16 and wire32 are the values a load of the given big-endian bytes
// yields on this host: the program compares packet fields without byte
// swapping them.
func wire16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

func wire32(b [4]byte) int32 {
	return int32(binary.NativeEndian.Uint32(b[:]))
}

// programInstructions builds the XDP program for the node address's
// family: programV4 or programV6.
func programInstructions(nodeIP netip.Addr, port uint16, mapFD int, noSocket int32) asm.Instructions {
	if nodeIP.Is6() && !nodeIP.Is4In6() {
		return programV6(nodeIP, port, mapFD, noSocket)
	}
	return programV4(nodeIP.Unmap(), port, mapFD, noSocket)
}

// redirectTail ends both programs: the packet goes to the socket of its RX
// queue, and "pass" hands everything else to the kernel. R6 holds ctx.
func redirectTail(mapFD int, noSocket int32) asm.Instructions {
	return asm.Instructions{
		// bpf_redirect_map(map, ctx->rx_queue_index, noSocket): the low
		// bits of the flags are the action when the slot is empty.
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.LoadMem(asm.R2, asm.R6, xdpMdRxQueueIndex, asm.Word),
		asm.Mov.Imm(asm.R3, noSocket),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// programV4: UDP over IPv4 over Ethernet,
// unfragmented, to nodeIP:port goes to the socket at the packet's RX queue
// index in the XSKMAP (fd mapFD); every other packet is XDP_PASS. When the
// queue has no socket, bpf_redirect_map returns noSocket, which is XDP_PASS
// in production (the kernel keeps working while vxdp is down) and a
// distinct code in tests.
//
// 802.1Q-tagged frames pass to the kernel: the TX side sends untagged
// frames, so the underlay device must be the one that carries the node IP
// untagged (the VLAN device itself, in generic mode, for a tagged network).
//
// Registers: R6 ctx, R2 data, R3 data_end, R4/R7 scratch, R5 IHL.
func programV4(nodeIP netip.Addr, port uint16, mapFD int, noSocket int32) asm.Instructions {
	return append(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMdDataEnd, asm.Word),

		// Ethernet + the fixed IPv4 header must be there.
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethLen+minIPv4Len),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offEtherType, asm.Half),
		asm.JNE.Imm(asm.R4, wire16(0x0800), "pass"),

		// Version 4, IHL >= 5.
		asm.LoadMem(asm.R5, asm.R2, offIPVerIHL, asm.Byte),
		asm.Mov.Reg(asm.R4, asm.R5),
		asm.RSh.Imm(asm.R4, 4),
		asm.JNE.Imm(asm.R4, 4, "pass"),
		asm.And.Imm(asm.R5, 0x0f),
		asm.JLT.Imm(asm.R5, 5, "pass"),

		// Not a fragment: MF clear and offset 0 (DF may be set). Later
		// fragments carry no UDP header and the first one is incomplete;
		// the kernel reassembles them and the UDP underlay path would see
		// them, but the engine only takes whole packets from here.
		asm.LoadMem(asm.R4, asm.R2, offIPFrag, asm.Half),
		asm.And.Imm(asm.R4, wire16(0x3fff)),
		asm.JNE.Imm(asm.R4, 0, "pass"),

		asm.LoadMem(asm.R4, asm.R2, offIPProto, asm.Byte),
		asm.JNE.Imm(asm.R4, 17, "pass"),

		// A 32-bit compare: a 64-bit one would sign-extend the immediate.
		asm.LoadMem(asm.R4, asm.R2, offIPDst, asm.Word),
		asm.JNE.Imm32(asm.R4, wire32(nodeIP.As4()), "pass"),

		// The UDP header follows IHL*4 bytes of IPv4 header. R5 is in
		// [5, 15] here, which the verifier tracks, so R4 is a packet
		// pointer with a bounded variable offset.
		asm.LSh.Imm(asm.R5, 2),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethLen),
		asm.Add.Reg(asm.R4, asm.R5),
		asm.Mov.Reg(asm.R7, asm.R4),
		asm.Add.Imm(asm.R7, udpLen),
		asm.JGT.Reg(asm.R7, asm.R3, "pass"),
		asm.LoadMem(asm.R7, asm.R4, offUDPDstPort, asm.Half),
		asm.JNE.Imm(asm.R7, wire16(port), "pass"),
	}, redirectTail(mapFD, noSocket)...)
}

// programV6: UDP over IPv6 over Ethernet, the UDP header right behind the
// fixed IPv6 header (next header 17), to nodeIP:port goes to the socket of
// the packet's RX queue, as in programV4; every other packet is XDP_PASS.
//
// Extension headers are not walked: a packet with any goes to the kernel.
// Tunnel peers (vxdp, the kernel's vxlan and geneve) send none, so this
// costs nothing real, while walking a chain in BPF needs a bounded loop
// the verifier must unroll, and parsing it here would still not act on
// the options (RFC 8200 section 4: a hop-by-hop or destination option may
// demand a discard or an ICMPv6 answer, which the kernel does). A fragment
// (a Fragment header) likewise goes to the kernel, as IPv4 fragments do;
// with no socket on the tunnel port there, the kernel drops what it
// reassembles (and Receive would refuse it too: encap.ParseOuterV6 takes
// no extension header).
//
// Registers: R6 ctx, R2 data, R3 data_end, R4 scratch.
func programV6(nodeIP netip.Addr, port uint16, mapFD int, noSocket int32) asm.Instructions {
	dst := nodeIP.As16()
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMdDataEnd, asm.Word),

		// Ethernet + the fixed IPv6 header + UDP must be there: every
		// load below is at a constant offset inside them.
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, offUDP6+udpLen),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, offEtherType, asm.Half),
		asm.JNE.Imm(asm.R4, wire16(encap.EtherTypeIPv6), "pass"),

		// Version 6.
		asm.LoadMem(asm.R4, asm.R2, offIP6Version, asm.Byte),
		asm.RSh.Imm(asm.R4, 4),
		asm.JNE.Imm(asm.R4, 6, "pass"),

		// UDP right behind the fixed header: no extension header.
		asm.LoadMem(asm.R4, asm.R2, offIP6NextHdr, asm.Byte),
		asm.JNE.Imm(asm.R4, int32(encap.ProtoUDP), "pass"),
	}
	// The destination, a 32-bit word at a time (32-bit compares: a 64-bit
	// one would sign-extend the immediate).
	for i := 0; i < 16; i += 4 {
		insns = append(insns,
			asm.LoadMem(asm.R4, asm.R2, int16(offIP6Dst+i), asm.Word),
			asm.JNE.Imm32(asm.R4, wire32([4]byte(dst[i:i+4])), "pass"),
		)
	}
	insns = append(insns,
		asm.LoadMem(asm.R4, asm.R2, offUDP6+offUDPDstPort, asm.Half),
		asm.JNE.Imm(asm.R4, wire16(port), "pass"),
	)
	return append(insns, redirectTail(mapFD, noSocket)...)
}

// newXSKMap creates the XSKMAP with one slot per queue.
func newXSKMap(queues int) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       mapName,
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(queues),
	})
	if err != nil {
		return nil, fmt.Errorf("create XSKMAP: %w", classify(err))
	}
	return m, nil
}

// loadProgram loads the program for nodeIP:port redirecting into xsks.
func loadProgram(nodeIP netip.Addr, port uint16, xsks *ebpf.Map, noSocket int32) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         progName,
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: programInstructions(nodeIP, port, xsks.FD(), noSocket),
	})
	if err != nil {
		return nil, fmt.Errorf("load XDP program: %w", classify(err))
	}
	return p, nil
}

// classify adds the package's sentinels to the errors of loading BPF
// objects, so that the one-line message says what to fix.
func classify(err error) error {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	case isPermission(err):
		return fmt.Errorf("%w (needs CAP_BPF and CAP_NET_ADMIN): %w", ErrPermission, err)
	}
	return err
}
