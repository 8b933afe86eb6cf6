// Package tun is the TUN driver behind packetio.Device: one device per pod
// endpoint (moved into the pod's network namespace) and the node's host
// device vxdp_host.
//
// A device is opened with IFF_TUN|IFF_NO_PI, so every packet read or written
// is a bare IPv4 or IPv6 packet with no prefix. The device is not
// persistent: the kernel deletes the interface when the file descriptor is
// closed, wherever the interface lives at that moment, so a crashed agent
// leaves no interfaces behind.
//
// Buffers: Read stores packet i at bufs[i][offset:], which must have room
// for the interface MTU; Write sends bufs[i][offset:]. The bytes before
// offset are never touched. The driver keeps no reference to a buffer after
// the call returns.
package tun
