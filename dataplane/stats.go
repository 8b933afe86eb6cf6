package dataplane

import (
	"sync/atomic"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// DropReason says why a packet was dropped. The names are part of the
// public contract: they appear in `vxdp stats`, JSON output and metrics.
type DropReason uint8

// Drop reasons. IPv4 and IPv6 share them where the cause is the same:
// ttl_exceeded counts IPv6 packets whose hop limit ran out, frag_needed
// those answered with Packet Too Big, no_route and no_endpoint, policy,
// source and tunnel checks alike; the reasons after geneve_critical_option
// are IPv6's own but ecn_ce_not_ect, which both families share.
const (
	DropNoRoute DropReason = iota
	DropInvalidSource
	DropEncapProhibited
	DropPolicyDenied
	DropUnknownTunnelSource
	DropInvalidHeader
	DropInvalidVNI
	DropInvalidIdentity
	DropSpoofedInnerSource
	DropTTLExceeded
	DropFragNeeded
	DropNoEndpoint
	DropUnsupportedProtocol
	DropQueueFull
	DropInvalidMAC
	DropTxError
	DropARPUnanswered
	DropProtocolMismatch
	DropControlPacket
	DropCriticalOption
	// DropInvalidExtHeaders: an IPv6 packet whose extension header chain
	// encap.IPv6.UpperLayer refuses (too many headers, one past the end of
	// the packet, a malformed chain).
	DropInvalidExtHeaders
	// DropLinkLocal: an IPv6 packet from a pod or the host device with a
	// link-local source or destination (fe80::/10): it belongs to the
	// link it was sent on and is never routed (RFC 4291 section 2.5.6).
	DropLinkLocal
	// DropMulticast: an IPv6 packet from a pod or the host device to or
	// from a multicast address (router solicitations, MLD reports,
	// neighbour discovery): the overlay routes unicast only, and no
	// error answers it (RFC 4443 section 2.4(e.3)).
	DropMulticast
	// DropECNCENotECT: a tunnel packet whose outer header says congestion
	// experienced (CE) around an inner packet whose transport does not do
	// ECN (Not-ECT): RFC 6040 section 4.2 has the decapsulator drop it,
	// the loss being the congestion signal that transport understands.
	DropECNCENotECT
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNoRoute:             "no_route",
	DropInvalidSource:       "invalid_source",
	DropEncapProhibited:     "encap_prohibited",
	DropPolicyDenied:        "policy_denied",
	DropUnknownTunnelSource: "unknown_tunnel_source",
	DropInvalidHeader:       "invalid_header",
	DropInvalidVNI:          "invalid_vni",
	DropInvalidIdentity:     "invalid_identity",
	DropSpoofedInnerSource:  "spoofed_inner_source",
	DropTTLExceeded:         "ttl_exceeded",
	DropFragNeeded:          "frag_needed",
	DropNoEndpoint:          "no_endpoint",
	DropUnsupportedProtocol: "unsupported_protocol",
	DropQueueFull:           "queue_full",
	DropInvalidMAC:          "invalid_mac",
	DropTxError:             "tx_error",
	DropARPUnanswered:       "arp_unanswered",
	DropProtocolMismatch:    "tunnel_protocol_mismatch",
	DropControlPacket:       "geneve_control_packet",
	DropCriticalOption:      "geneve_critical_option",
	DropInvalidExtHeaders:   "invalid_extension_headers",
	DropLinkLocal:           "link_local_address",
	DropMulticast:           "multicast_address",
	DropECNCENotECT:         "ecn_ce_not_ect",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason in numeric order.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// DeviceStats counts traffic of one device. RX is what the engine read
// from it, TX what the engine wrote to it.
type DeviceStats struct {
	RxBatches          atomic.Uint64 // Reads that returned packets: RxPackets/RxBatches is the mean batch
	RxPackets, RxBytes atomic.Uint64
	TxPackets, TxBytes atomic.Uint64
	TxErrors           atomic.Uint64
}

// DeviceCounters is a point-in-time copy of DeviceStats.
type DeviceCounters struct {
	Device    string
	Kind      string
	RxBatches uint64
	RxPackets uint64
	RxBytes   uint64
	TxPackets uint64
	TxBytes   uint64
	TxErrors  uint64
	// Counted by the driver itself.
	DriverRxDropped uint64
	DriverTxErrors  uint64
	// KernelDropped is what the kernel discarded on its way to the engine
	// (packetio.KernelDropCounter): a pod's packets that found its TUN
	// queue full, datagrams that found an underlay socket's buffer full,
	// frames that found an AF_XDP queue's RX ring full.
	// KernelDropErr says why it could not be read.
	KernelDropped uint64
	KernelDropErr string
	// Offloads the driver uses, or tried to (OffloadReporter).
	Offloads []packetio.Offload
	// SourcePorts are the outer UDP source ports of an underlay queue.
	SourcePorts *packetio.SourcePorts
}

func (s *DeviceStats) snapshot(dev any, name, kind string) DeviceCounters {
	c := DeviceCounters{
		Device: name, Kind: kind,
		RxBatches: s.RxBatches.Load(),
		RxPackets: s.RxPackets.Load(), RxBytes: s.RxBytes.Load(),
		TxPackets: s.TxPackets.Load(), TxBytes: s.TxBytes.Load(),
		TxErrors: s.TxErrors.Load(),
	}
	if dc, ok := dev.(packetio.DriverCounters); ok {
		c.DriverRxDropped, c.DriverTxErrors = dc.RXDropped(), dc.TXErrors()
	}
	if kc, ok := dev.(packetio.KernelDropCounter); ok {
		var err error
		if c.KernelDropped, err = kc.KernelDropped(); err != nil {
			c.KernelDropErr = err.Error()
		}
	}
	if r, ok := dev.(packetio.OffloadReporter); ok {
		c.Offloads = r.Offloads()
	}
	return c
}

// drops totals drops by reason for the whole engine. Workers count locally
// and add once per batch, so the shared cache lines are touched rarely.
type drops [numDropReasons]atomic.Uint64
