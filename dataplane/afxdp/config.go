package afxdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"go.uber.org/zap"
)

// Mode chooses how the XDP program is attached.
type Mode int

const (
	// ModeAuto attaches in native (driver) mode when the driver supports it
	// and falls back to generic mode otherwise.
	ModeAuto Mode = iota
	// ModeNative requires native mode (XDP_FLAGS_DRV_MODE).
	ModeNative
	// ModeGeneric forces generic mode (XDP_FLAGS_SKB_MODE), which works on
	// any device but runs after the kernel has built an skb.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ZeroCopyMode chooses how the AF_XDP sockets are bound.
type ZeroCopyMode int

const (
	// ZeroCopyAuto tries XDP_ZEROCOPY and falls back to XDP_COPY.
	ZeroCopyAuto ZeroCopyMode = iota
	// ZeroCopyRequire fails Open when the driver cannot do zero-copy.
	ZeroCopyRequire
	// ZeroCopyNever always binds with XDP_COPY.
	ZeroCopyNever
)

func (z ZeroCopyMode) String() string {
	switch z {
	case ZeroCopyAuto:
		return "auto"
	case ZeroCopyRequire:
		return "require"
	case ZeroCopyNever:
		return "never"
	}
	return fmt.Sprintf("ZeroCopyMode(%d)", int(z))
}

// pageSize bounds the frame size: an aligned-mode UMEM chunk may not span
// pages.
var pageSize = os.Getpagesize()

// Defaults for the zero values of Config.
const (
	DefaultFrameSize = 4096
	DefaultNumFrames = 4096
)

// Config describes one attachment of the underlay to a NIC.
type Config struct {
	// Device is the underlay NIC, e.g. eth0, in the network namespace of
	// the goroutine that calls Open.
	Device string
	// NodeIP is this node's underlay address, IPv4 or IPv6; its family
	// is the family of every outer header. Only UDP packets to
	// NodeIP:Port are redirected to the sockets.
	NodeIP netip.Addr
	// Port is the tunnel port (8472 VXLAN, 6081 Geneve).
	Port uint16
	// Queues is the number of RX queues to serve, from queue 0; 0 means
	// every RX queue of the device. Packets arriving on other queues go to
	// the kernel.
	Queues int
	// Mode chooses native or generic XDP.
	Mode Mode
	// ZeroCopy chooses the socket bind mode.
	ZeroCopy ZeroCopyMode
	// FrameSize is the size of one UMEM frame: a power of two from 2048 to
	// the page size, holding the largest frame (MTU + Ethernet header) plus
	// the 256 bytes of headroom a zero-copy driver reserves. Default 4096.
	FrameSize int
	// NumFrames is the number of UMEM frames per queue, a power of two of
	// at least 64: half serve RX (the fill ring), half TX. Default 4096.
	NumFrames int
	// Logger receives rare events (neighbour subscription errors, stale
	// program replaced). Nil means no logging.
	Logger *zap.Logger
}

// Info describes an open Underlay.
type Info struct {
	Device string `json:"device"`
	// XDPMode is "native" or "generic".
	XDPMode string `json:"xdp_mode"`
	// Bind is "zerocopy" or "copy".
	Bind   string `json:"bind"`
	Queues int    `json:"queues"`
	// NeedWakeup tells whether the sockets use XDP_USE_NEED_WAKEUP, which
	// saves the TX and fill-ring wakeup system calls when the kernel is
	// busy anyway.
	NeedWakeup bool `json:"need_wakeup"`
}

// Stats are the counters of an Underlay (summed over its queues) or of one
// Queue.
type Stats struct {
	// RxFrames and RxBytes count the tunnel payloads Receive handed out.
	RxFrames uint64 `json:"rx_frames"`
	RxBytes  uint64 `json:"rx_bytes"`
	// RxDropped counts frames Receive discarded: not a well-formed
	// unfragmented IPv4/UDP packet, or IPv6/UDP packet whose UDP checksum
	// verifies, over Ethernet (the program redirects only UDP to the
	// tunnel port, so this means a lying length field or, over IPv6, a
	// bad or zero checksum), or a payload larger than the caller's
	// buffer.
	RxDropped uint64 `json:"rx_dropped"`
	// RxPayloadSums counts payloads handed on with their sum
	// (packetio.Meta.HasSum), by which the engine checks the inner
	// checksum without a pass of its own: over IPv6, every payload.
	RxPayloadSums uint64 `json:"rx_payload_sums"`

	// TxFrames and TxBytes count frames put on the TX rings (Ethernet
	// header included in TxBytes).
	TxFrames uint64 `json:"tx_frames"`
	TxBytes  uint64 `json:"tx_bytes"`
	// TxCompleted counts frames the kernel returned through the completion
	// rings.
	TxCompleted uint64 `json:"tx_completed"`
	// TxInvalid counts payloads Send refused: to an address not of the
	// node address's family, or too large for the device MTU with the
	// outer headers.
	TxInvalid uint64 `json:"tx_invalid"`
	// TxNoRoute counts packets whose destination is not reached through
	// the underlay device (or is one of its own addresses).
	TxNoRoute uint64 `json:"tx_no_route"`
	// TxSumFromHeaders counts IPv6 frames whose outer UDP checksum was
	// computed from the headers and the payload sum the engine gave
	// (local checksum offload) rather than by a pass over the payload.
	TxSumFromHeaders uint64 `json:"tx_sum_from_headers"`
	// TxNoNeighbour counts packets dropped for want of the next hop's MAC:
	// the wait queue was full, or resolution did not finish in time.
	TxNoNeighbour uint64 `json:"tx_no_neighbour"`
	// TxRingFull counts packets dropped because no TX frame came free.
	TxRingFull uint64 `json:"tx_ring_full"`
	// TxFramesExhausted counts the times Send ran out of free TX frames
	// and had to wake the kernel and reap completions before going on.
	TxFramesExhausted uint64 `json:"tx_frames_exhausted"`
	// TxKickErrors counts TX wakeups (sendto) the kernel failed.
	TxKickErrors uint64 `json:"tx_kick_errors"`
	// TxKicks and RxKicks count wakeup system calls.
	TxKicks uint64 `json:"tx_kicks"`
	RxKicks uint64 `json:"rx_kicks"`

	// ArpQueued counts packets that had to wait for neighbour resolution
	// (ARP, or NDP on an IPv6 underlay; the names stay for compatibility),
	// ArpFlushed those of them sent once it finished, ArpWaiting those
	// waiting now, ArpRequests the resolutions asked of the kernel.
	ArpQueued   uint64 `json:"arp_queued"`
	ArpFlushed  uint64 `json:"arp_flushed"`
	ArpWaiting  uint64 `json:"arp_waiting"`
	ArpRequests uint64 `json:"arp_requests"`

	// FillRefills counts frames handed (back) to the fill rings.
	FillRefills uint64 `json:"fill_refills"`

	// Kernel* are the sockets' XDP_STATISTICS: packets the kernel dropped
	// for want of RX ring room or fill frames, and invalid descriptors.
	KernelRxDropped     uint64 `json:"kernel_rx_dropped"`
	KernelRxInvalid     uint64 `json:"kernel_rx_invalid_descs"`
	KernelTxInvalid     uint64 `json:"kernel_tx_invalid_descs"`
	KernelRxRingFull    uint64 `json:"kernel_rx_ring_full"`
	KernelFillRingEmpty uint64 `json:"kernel_fill_ring_empty"`
	KernelTxRingEmpty   uint64 `json:"kernel_tx_ring_empty"`

	// Frames* account for every UMEM frame: FramesFree (on the free
	// stacks) + FramesFill (given to the kernel for RX: fill ring, driver,
	// RX ring) + FramesTx (on a TX or completion ring, or being sent) +
	// FramesWaiting (holding a packet waiting for ARP) == FramesTotal.
	FramesTotal   uint64 `json:"frames_total"`
	FramesFree    uint64 `json:"frames_free"`
	FramesFill    uint64 `json:"frames_fill"`
	FramesTx      uint64 `json:"frames_tx"`
	FramesWaiting uint64 `json:"frames_waiting"`
}

// add sums o into s.
func (s *Stats) add(o Stats) {
	s.RxFrames += o.RxFrames
	s.RxBytes += o.RxBytes
	s.RxDropped += o.RxDropped
	s.RxPayloadSums += o.RxPayloadSums
	s.TxSumFromHeaders += o.TxSumFromHeaders
	s.TxFrames += o.TxFrames
	s.TxBytes += o.TxBytes
	s.TxCompleted += o.TxCompleted
	s.TxInvalid += o.TxInvalid
	s.TxNoRoute += o.TxNoRoute
	s.TxNoNeighbour += o.TxNoNeighbour
	s.TxRingFull += o.TxRingFull
	s.TxFramesExhausted += o.TxFramesExhausted
	s.TxKickErrors += o.TxKickErrors
	s.TxKicks += o.TxKicks
	s.RxKicks += o.RxKicks
	s.ArpQueued += o.ArpQueued
	s.ArpFlushed += o.ArpFlushed
	s.ArpWaiting += o.ArpWaiting
	s.ArpRequests += o.ArpRequests
	s.FillRefills += o.FillRefills
	s.KernelRxDropped += o.KernelRxDropped
	s.KernelRxInvalid += o.KernelRxInvalid
	s.KernelTxInvalid += o.KernelTxInvalid
	s.KernelRxRingFull += o.KernelRxRingFull
	s.KernelFillRingEmpty += o.KernelFillRingEmpty
	s.KernelTxRingEmpty += o.KernelTxRingEmpty
	s.FramesTotal += o.FramesTotal
	s.FramesFree += o.FramesFree
	s.FramesFill += o.FramesFill
	s.FramesTx += o.FramesTx
	s.FramesWaiting += o.FramesWaiting
}

// Sentinel errors Open wraps, for callers (underlay: auto) that fall back
// to the UDP underlay on some failures and not others.
var (
	// ErrNoDevice: the device does not exist in this network namespace.
	ErrNoDevice = errors.New("no such device")
	// ErrPermission: the process lacks CAP_NET_ADMIN/CAP_BPF (or
	// CAP_IPC_LOCK / a large enough RLIMIT_MEMLOCK for the UMEM).
	ErrPermission = errors.New("permission denied")
	// ErrForeignProgram: another XDP program, not loaded by vxdp, is
	// attached to the device. vxdp never replaces it.
	ErrForeignProgram = errors.New("another XDP program is attached")
	// ErrUnsupported: the kernel or driver lacks what the configuration
	// asks for (AF_XDP, native XDP, zero-copy).
	ErrUnsupported = errors.New("not supported")
)

// withDefaults validates cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Device == "" {
		return cfg, errors.New("no device")
	}
	// An IPv4-mapped address is the IPv4 node it stands for; a zone
	// would make the address ambiguous in packets and routes.
	cfg.NodeIP = cfg.NodeIP.Unmap()
	if !cfg.NodeIP.IsValid() || cfg.NodeIP.IsUnspecified() || cfg.NodeIP.IsMulticast() || cfg.NodeIP.Zone() != "" {
		return cfg, fmt.Errorf("node IP %v: need a unicast IPv4 or IPv6 address", cfg.NodeIP)
	}
	if cfg.Port == 0 {
		return cfg, errors.New("no tunnel port")
	}
	if cfg.Queues < 0 {
		return cfg, fmt.Errorf("queues %d: negative", cfg.Queues)
	}
	switch cfg.Mode {
	case ModeAuto, ModeNative, ModeGeneric:
	default:
		return cfg, fmt.Errorf("unknown mode %v", cfg.Mode)
	}
	switch cfg.ZeroCopy {
	case ZeroCopyAuto, ZeroCopyRequire, ZeroCopyNever:
	default:
		return cfg, fmt.Errorf("unknown zero-copy mode %v", cfg.ZeroCopy)
	}
	if cfg.Mode == ModeGeneric && cfg.ZeroCopy == ZeroCopyRequire {
		return cfg, fmt.Errorf("zero-copy needs native XDP, not generic mode: %w", ErrUnsupported)
	}
	if cfg.FrameSize == 0 {
		cfg.FrameSize = DefaultFrameSize
	}
	if cfg.NumFrames == 0 {
		cfg.NumFrames = DefaultNumFrames
	}
	if cfg.FrameSize < 2048 || cfg.FrameSize > pageSize || cfg.FrameSize&(cfg.FrameSize-1) != 0 {
		return cfg, fmt.Errorf("frame size %d: need a power of two from 2048 to %d", cfg.FrameSize, pageSize)
	}
	if cfg.NumFrames < 64 || cfg.NumFrames&(cfg.NumFrames-1) != 0 || cfg.NumFrames > 1<<20 {
		return cfg, fmt.Errorf("frame count %d: need a power of two from 64 to 2^20", cfg.NumFrames)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg, nil
}
