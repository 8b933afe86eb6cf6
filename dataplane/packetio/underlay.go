package packetio

import (
	"fmt"
	"net/netip"
)

// Underlay carries tunnel payloads between this node and remote tunnel
// endpoints, the way wireguard-go's conn.Bind carries WireGuard messages. A
// payload starts at the VXLAN or Geneve header and runs to the end of the
// inner frame; the outer IP and UDP headers are the driver's business, so
// the engine handles one format whatever the underlay's address family. A
// UDP-socket driver lets the kernel build and strip them; a driver that
// sends frames itself (AF_XDP) writes and parses Ethernet, IP and UDP.
//
// Underlays come in queues: a driver with several (RX queues, sockets
// sharing a port) hands out one Underlay per queue, each read by one
// worker; Send on any of them may carry any flow.
type Underlay interface {
	// Receive reads up to len(bufs) payloads. Payload i is written to
	// bufs[i][offset:], its length stored in sizes[i] and where it came
	// from in meta[i] (Remote: the sender's address and port; LocalPort:
	// the port it arrived on). Callers pass len(sizes) >= len(bufs) and
	// len(meta) >= len(bufs). Receive blocks until at least one payload is
	// there or the underlay is closed. A payload that does not fit its
	// buffer is dropped and counted by the driver, never truncated. A
	// driver may hand a payload over in a buffer of its own instead,
	// replacing bufs[i] with one at least as long (and keeping the
	// caller's in exchange), so that a payload it received into that
	// buffer needs no copy; the bytes before offset are then unspecified.
	// Either way, the buffers in bufs when Receive returns are the
	// caller's, the driver keeps no reference to them, and a caller must
	// not hold on to a buffer it passed in beyond the call. Not safe for
	// concurrent use with itself.
	Receive(bufs [][]byte, sizes []int, meta []Meta, offset int) (n int, err error)

	// Send sends each bufs[i][offset:] to meta[i].Remote, from the source
	// port the driver picks for meta[i].Flow. It returns how many payloads
	// the driver accepted; a payload the kernel refuses is skipped and
	// counted (TXErrors) and the others still go, so n < len(bufs) with a
	// nil error means n were accepted, not necessarily the first n. An
	// underlay has one address family: a payload to a Remote of the other
	// (or to no address) is refused and counted the same way. The
	// error is non-nil only when the underlay is closed (net.ErrClosed) or
	// gone (ErrDeviceGone). The caller owns the buffers again when Send
	// returns; Send does not touch the bytes before offset. Safe for
	// concurrent use.
	Send(bufs [][]byte, meta []Meta, offset int) (n int, err error)

	// BatchSize is the most payloads one Receive returns, and the batch
	// size Send handles in one system call.
	BatchSize() int

	// SourcePort is the outer UDP source port Send uses for flow hash
	// flow; SourcePorts describes all of them.
	SourcePort(flow uint32) uint16
	SourcePorts() SourcePorts

	// Name names the queue in counters, logs and errors.
	Name() string

	// Close releases the queue. A Receive blocked in another goroutine
	// returns net.ErrClosed (wrapped or not) soon after.
	Close() error
}

// Meta is what travels with a tunnel payload besides its bytes.
type Meta struct {
	// Remote is the other tunnel endpoint: the sender of a received
	// payload, the destination of a sent one.
	Remote netip.AddrPort
	// LocalPort is the local UDP port a payload arrived on (the tunnel
	// port, or the VTEP port where the two differ). Ignored by Send.
	LocalPort uint16
	// Flow is the hash of the inner flow of a payload to send. Payloads
	// of one flow leave from one source port, so the fabric's ECMP and the
	// receiver's RSS keep them on one path, in order. Ignored by Receive.
	Flow uint32
	// TOS is the outer IPv4 TOS or IPv6 traffic class byte (DSCP and
	// ECN): on receive as it arrived, on send the value to write (RFC
	// 6040: the engine copies the inner packet's). A driver that cannot
	// read it reports 0 (not ECN-capable); one that cannot write it sends 0.
	TOS uint8
	// Sum, when HasSum, is the running one's-complement sum (encap.Sum)
	// of the payload's bytes as received: a driver that verified the
	// outer UDP checksum, which covers the payload, has computed it on
	// the way and hands it on, so that the engine can tell whether the
	// inner packet's own TCP or UDP checksum is right without another
	// pass over its bytes (encap.TransportSumOK, "checksum complete").
	// On Send the engine sets it where it knows the sum without a pass
	// (encap.PayloadSum: the inner checksum is one the TUN driver wrote),
	// and a driver that writes the outer UDP checksum itself sums only its
	// own headers (local checksum offload); one that does not ignores it.
	Sum    uint32
	HasSum bool
}

// SourcePorts describes the outer source ports of an underlay: Count
// distinct ports, all within [Min, Max]. A flow's port is fixed for the
// life of the underlay.
type SourcePorts struct {
	Count    int
	Min, Max uint16
}

// ReceiveBatch checks the arguments of a Receive as the contract states
// them (a size and a Meta per buffer, room in every buffer past offset)
// and returns bufs cut to the driver's batch size. Drivers call it before
// touching the buffers.
func ReceiveBatch(bufs [][]byte, sizes []int, meta []Meta, offset, batch int) ([][]byte, error) {
	bufs = bufs[:min(len(bufs), batch)]
	if len(sizes) < len(bufs) || len(meta) < len(bufs) {
		return nil, fmt.Errorf("%d sizes and %d meta for %d buffers", len(sizes), len(meta), len(bufs))
	}
	for i := range bufs {
		if offset < 0 || offset >= len(bufs[i]) {
			return nil, fmt.Errorf("offset %d outside buffer %d of %d bytes", offset, i, len(bufs[i]))
		}
	}
	return bufs, nil
}
