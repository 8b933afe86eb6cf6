// Package tun is the TUN driver behind packetio.Device: one device per pod
// endpoint (moved into the pod's network namespace) and the node's host
// device vxdp_host.
//
// A device is opened with IFF_TUN|IFF_NO_PI, so every packet Read hands
// out and Write takes is a bare IPv4 or IPv6 packet with no prefix. With
// Options.Offload it is also opened with IFF_VNET_HDR and asks for
// checksum, TCP and UDP segmentation offload for IPv4 and IPv6
// (TSO4, TSO6, USO4, USO6): a virtio_net_hdr then
// precedes every packet on the descriptor, the kernel hands over TCP and
// UDP super-packets of up to 64 KiB, which Read cuts into MTU-sized packets
// (offload.go), and Write merges runs of one flow's segments or datagrams
// into such super-packets (gro.go). Callers see bare packets either way.
// With Options.Queues > 1 the interface has several descriptors
// (IFF_MULTI_QUEUE), each a Device of its own (Queues).
//
// Lifetime: a device is created non-persistent, so the kernel deletes the
// interface when its descriptors are closed, wherever the interface lives
// at that moment. SetPersist(true) makes it outlive them, as the agent does
// so that pods keep their eth0 across an agent restart; Attach takes such
// a device back and Destroy removes it. The kernel also deletes the
// interface when its network namespace is destroyed; Read and Write then
// fail with ErrInterfaceGone.
//
// Buffers: Read stores packet i at bufs[i][offset:], which must have room
// for the interface MTU; Write sends bufs[i][offset:]. With offloads,
// Write uses the vnetHdrLen bytes just before offset for the
// virtio_net_hdr of a packet it writes singly, so offset must leave that
// much headroom; otherwise the bytes before offset are never touched. The
// driver keeps no reference to a buffer after the call returns.
//
// Files: tun_linux.go opens devices and queues and reports counters,
// read_linux.go is the read path, write_linux.go the write path,
// offload.go and gro.go the packet work of segmentation and merging,
// netconf_linux.go and persist_linux.go the control plane.
package tun
