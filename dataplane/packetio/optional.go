package packetio

import (
	"context"
	"net/netip"
)

// DriverCounters is implemented by drivers that count what never reached
// the engine (received but dropped) or never left (refused on send).
type DriverCounters interface {
	RXDropped() uint64
	TXErrors() uint64
}

// KernelDropCounter is implemented by devices whose kernel side drops
// packets bound for the engine when they arrive faster than the engine
// reads them: a TUN interface's transmit ring (txqueuelen packets a queue)
// when a pod sends faster than its worker reads, an underlay socket's
// receive buffer, an AF_XDP socket's RX ring. The kernel keeps the count, so reading it is a system
// call (or a netlink request) and can fail, as when the interface is gone.
type KernelDropCounter interface {
	KernelDropped() (uint64, error)
}

// QueueFullCounter is implemented by drivers that drop what they are
// given when their transmit queue is full (an AF_XDP TX ring without a
// free frame), rather than wait. The engine shows those as queue_full,
// not tx_error.
type QueueFullCounter interface {
	TXQueueFull() uint64
}

// Offload is one kernel offload of a driver: whether it is in use, why not
// if it is not, and how much work went through it, so a running system
// shows that it is active.
type Offload struct {
	// Name: tun-tso (reads of TCP super-packets from a pod), tun-uso
	// (reads of UDP super-packets from a pod sending with UDP_SEGMENT),
	// tun-gro (TCP segments merged into super-packets on write),
	// tun-udp-gro (datagrams of one flow merged into a UDP super-packet
	// on write), tun-csum-complete (segments and datagrams merged on
	// the engine's word that their checksum is right, CheckedWriter),
	// udp-gso (sends of several datagrams with UDP_SEGMENT), udp-gro
	// (receives of datagrams coalesced by UDP_GRO), tun-tso-whole (TCP
	// super-packets a pod sent, taken whole by the engine), tun-super-write
	// (TCP super-packets from other nodes written into a pod as they
	// came), tunnel-gso (tunnel packets handed whole to the kernel to
	// segment, TunnelGSO).
	Name   string
	Active bool
	// Reason says why the offload is off: the kernel refused it at start
	// or failed it at run time and the driver fell back.
	Reason string
	// Count is the number of super-packets read, segments or datagrams
	// merged, or multi-datagram sends and receives; Largest the biggest
	// in bytes, where the driver tracks it.
	Count   uint64
	Largest uint64
}

// OffloadReporter is implemented by drivers that use kernel offloads.
type OffloadReporter interface {
	Offloads() []Offload
}

// MultiQueue is implemented by a device with several queues, each read by
// its own worker (a multi-queue TUN device). Queues includes the device
// itself.
type MultiQueue interface {
	Queues() []Device
}

// MTUSetter is implemented by a device or underlay whose MTU can change
// while it runs: a TUN device sets its interface's MTU (in whatever
// network namespace the interface is), an AF_XDP underlay the largest
// frame it sends. The engine calls it when the underlay's MTU changes.
type MTUSetter interface {
	SetMTU(mtu int) error
}

// Destroyer is implemented by a device that can outlive its descriptor (a
// persistent TUN kept for a hitless restart): Close leaves it for the next
// agent to adopt, Destroy removes it for good.
type Destroyer interface {
	Destroy() error
}

// Destroy removes d for good: Destroy when it has one, Close otherwise.
func Destroy(d Device) error {
	if x, ok := d.(Destroyer); ok {
		return x.Destroy()
	}
	return d.Close()
}

// CheckedWriter is implemented by a device that can make use of knowing,
// per packet, that its TCP or UDP checksum is right: the engine learns so
// for a decapsulated packet from the outer checksum the underlay driver
// verified (Meta.HasSum), and the device then skips its own check (the TUN
// driver verifies a segment before it merges it into a super-packet whose
// checksum the kernel trusts). WriteChecked is Write with checked[i]
// saying so of bufs[i]; len(checked) >= len(bufs). A false is "not
// known", never "bad".
type CheckedWriter interface {
	WriteChecked(bufs [][]byte, checked []bool, offset int) (n int, err error)
}

// CheckedReader is implemented by a device that can tell, per packet read,
// that its TCP or UDP checksum is right because the driver computed it
// (the TUN driver, for the segments it cuts from a pod's super-packets and
// the checksums the pod's kernel left it to finish). The engine then sums
// such a packet's tunnel payload from its headers alone
// (encap.PayloadSum) and hands the sum to the underlay with it (Meta.Sum).
// ReadChecked is Read with checked[i] saying so of packet i;
// len(checked) >= len(bufs).
type CheckedReader interface {
	ReadChecked(bufs [][]byte, sizes []int, checked []bool, offset int) (n int, err error)
}

// SuperReader is implemented by a device that can hand the engine a TCP
// super-packet a pod sent (a TSO read) whole instead of cutting it into
// segments, so that the engine can send it on as one tunnel packet the
// kernel segments (TunnelGSO). The handler is called from within Read,
// only while nothing else has been read in that call, so packets keep
// their order; it reports whether it took the packet. When it does not,
// the driver cuts the packet up as it always does.
type SuperReader interface {
	SetSuperHandler(h SuperHandler)
}

// SuperHandler is given a TCP super-packet at buf[start:start+n], IPv4 or
// IPv6, its TCP checksum partial (the pseudo-header's sum only, the rest
// left to whoever segments it), with SuperRoom bytes free in front of it.
// gso is the TCP payload each segment carries; ecn says the sender asked
// for the ECN handling of TCP segmentation (CWR on the first segment only).
type SuperHandler func(buf []byte, start, n, gso int, ecn bool) bool

// SuperRoom is the room a SuperReader leaves in front of a super-packet:
// what the largest tunnel header takes, Geneve options included, and the
// TunnelGSO driver's own headers.
const SuperRoom = 448

// TunnelGSO is a way out of the node for a tunnel packet that carries a
// pod's TCP super-packet whole, for the kernel to cut into tunnel packets
// of one segment each (generic segmentation over a UDP tunnel, as the
// kernel's own vxlan hands its packets on): a TAP device the kernel
// routes from.
type TunnelGSO interface {
	// WriteTunnel sends buf[start:], an outer IPv4 header, UDP, the
	// tunnel header, the inner Ethernet header, the inner IPv4 or IPv6
	// header at offset inner of buf[start:] and TCP at offset l4, its
	// checksum partial. gso and ecn are as SuperHandler's. At least
	// TunnelGSORoom bytes precede start.
	WriteTunnel(buf []byte, start, inner, l4, gso int, v6, ecn bool) error
	// Offload reports the way out as an offload named tunnel-gso.
	Offload() Offload
	// Probe checks that a packet written into the way out from src
	// reaches dst, a node's underlay address. It gives up when ctx is
	// done (its deadline is the probe's timeout) and returns ctx's error
	// if that comes first.
	Probe(ctx context.Context, src, dst netip.Addr) error
	Close() error
}

// TunnelGSORoom is what a TunnelGSO driver writes in front of the outer
// IPv4 header.
const TunnelGSORoom = 64

// SuperWriter is implemented by a device that takes a TCP packet larger
// than its MTU with its checksum left partial (the pseudo-header's sum
// only, as a Linux sender on a virtual link leaves it for the device to
// finish) and has the kernel finish it, or trust it, as it does for a
// super-packet from a NIC's GRO: the engine then leaves such a packet as
// it came rather than summing 64 KiB itself.
type SuperWriter interface {
	TakesPartialSuper() bool
}
