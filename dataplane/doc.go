// Package dataplane is vxdp's engine: it moves packets between pod devices,
// the host device and the underlay, and owns the tables that decide where
// each packet goes.
//
// Egress flow (pod -> wire), on the worker that read the pod's device:
//
//	read batch from pod TUN -> validate inner IPv4 -> source must be the
//	endpoint's own address -> FIB lookup (lock-free snapshot) ->
//	  local:   TTL, write into the other pod's device
//	  tunnel:  TTL, route MTU, outer headers written in the headroom
//	           (VNI = source identity), queued for the underlay
//	  host:    handed to the kernel through vxdp_host
//	  none:    ICMP destination unreachable back to the pod
//	-> every queue flushed once per batch.
//
// Ingress flow (wire -> pod), on the worker that owns the underlay:
//
//	read batch -> outer IPv4/UDP -> sender must be a known node ->
//	VXLAN header rules -> VNI to identity -> inner Ethernet and IPv4 ->
//	inner source inside the sender's pod CIDR -> endpoint lookup -> TTL ->
//	written straight into the pod's device.
//
// Host flow (kernel -> vxdp_host -> worker): the kernel routes pod CIDRs to
// vxdp_host; the worker forwards like egress, with the host identity.
//
// Concurrency. Each Device has exactly one reader goroutine (its worker);
// workers never share buffers. The routing state (FIB, peers) is an
// immutable snapshot behind an atomic.Pointer: workers Load it once per
// batch and never lock; the control side (Engine methods) serialises its
// changes on Engine.mu, builds a new snapshot and swaps it in. A device may
// be written by any worker: Device.Write is safe for concurrent use.
//
// Buffers. Every worker owns a fixed set of buffers of encap.Headroom +
// maximum packet size; a packet read at offset encap.Headroom is forwarded
// from the same buffer, with outer headers written in front of it, before
// the next Read reuses it. Nothing on the packet path allocates, locks or
// logs; problems become counters (Stats).
package dataplane
