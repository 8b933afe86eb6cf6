// Package dataplane is vxdp's engine: it moves packets between pod devices,
// the host device and the underlay, and owns the tables that decide where
// each packet goes.
//
// Egress flow (pod -> wire), on the worker that read the pod's device:
//
//	read batch from pod TUN -> validate inner IPv4 or IPv6 (IPv6: walk
//	the extension headers, bounded; no multicast, no link-local) ->
//	source must be the endpoint's own address of that family -> FIB
//	lookup (lock-free snapshot, both families) ->
//	  local:   TTL or hop limit, write into the other pod's device
//	  tunnel:  TTL or hop limit, route MTU, VXLAN or Geneve header and
//	           inner Ethernet (EtherType of the inner family) written in
//	           the headroom (VNI = source identity), queued with the
//	           peer's address and the flow hash for the underlay
//	  host:    handed to the kernel through the host device
//	  none:    ICMP or ICMPv6 destination unreachable back to the pod
//	-> every queue flushed once per batch.
//
// Ingress flow (wire -> pod), on the worker that owns an underlay queue:
//
//	receive batch of tunnel payloads, each with its sender and local port
//	(the underlay driver dealt with the outer IP and UDP headers) ->
//	sender must be a known node or VTEP -> VXLAN or Geneve header rules ->
//	VNI to identity -> inner Ethernet and IPv4 or IPv6 -> inner source
//	inside the sender's pod CIDR of that family -> endpoint lookup,
//	policy, TTL or hop limit -> written straight into the pod's device.
//
// Host flow (kernel -> host device -> worker): the kernel routes pod CIDRs
// to the host device; the worker forwards like egress, with the host
// identity.
//
// Every packet leaves through output (forward.go), whatever made it:
// forwarding, delivery, or the node itself (ICMP and ICMPv6 errors, ARP
// replies). forward.go holds the IPv4 path and what both families share,
// forward6.go the IPv6 path. The underlay's family (NodeIP's) is
// independent of the pods': the engine never sees outer headers, and
// IPv4 and IPv6 pods travel over either.
//
// Concurrency. Each device and underlay queue has exactly one reader
// goroutine (its worker); workers never share buffers. The routing state
// (FIB, peers, VTEPs) is an immutable snapshot behind an atomic.Pointer:
// workers Load it once per batch and never lock; the control side (Engine
// methods) serialises its changes on Engine.mu, builds a new snapshot and
// swaps it in. Any worker may write to any device or send on any underlay
// queue: Write and Send are safe for concurrent use.
//
// Buffers. Every worker owns a fixed set of buffers of encap.Headroom +
// maximum packet size; a packet read at offset encap.Headroom is forwarded
// from the same buffer, with headers written in front of it, before the
// next read reuses it. Nothing on the packet path allocates, locks or
// logs; problems become counters (Stats).
//
// The I/O contracts (packetio.Device, packetio.Underlay) are in the leaf
// package dataplane/packetio, which the drivers import instead of this
// one.
package dataplane
