// Package afxdp is the AF_XDP underlay behind packetio.Underlay: the
// tunnel traffic of the node bypasses the kernel's network stack in both
// directions, while everything else on the NIC keeps going through it.
//
// The node address's family is the underlay's: an IPv4 node-ip gives
// IPv4 outer headers and ARP, an IPv6 one IPv6 outer headers and neighbour
// discovery. One Underlay never mixes them.
//
// Receive: an XDP program, assembled at Open with cilium/ebpf's asm
// package (no compiler at build time) and carrying the node IP and tunnel
// port as constants, redirects each unfragmented IPv4 UDP packet (or IPv6
// UDP packet without extension headers) for node-ip:port to the AF_XDP
// socket of the RX queue it arrived on, through an XSKMAP; all other
// frames (ARP and NDP, other ports, fragments, extension headers,
// VLAN-tagged frames) and packets on a queue without a socket go on to the
// kernel (XDP_PASS). Queue.Receive checks the outer IP and UDP headers
// (with encap; over IPv6 the UDP checksum too), copies the tunnel payload
// out of the UMEM frame into the engine's buffer with the sender's address
// and the outer TOS or traffic class beside it, and gives the frame
// straight back to the kernel through the fill ring.
//
// Send: Queue.Send writes Ethernet, IP and UDP headers into a free UMEM
// frame (Ethernet source: the device's MAC; destination: the next hop's
// MAC from the kernel's neighbour table, see neigh_linux.go; UDP source
// port: the flow's, over 49152-65535; TOS or traffic class: Meta.TOS;
// over IPv6 the flow's flow label and a UDP checksum) and copies the
// engine's tunnel payload behind them, puts the frames on the TX ring and
// wakes the kernel; completed frames come back through the completion
// ring. A packet whose next hop is not resolved yet waits, in its frame,
// while the kernel resolves it (ARP or NDP).
//
// One Queue per RX queue; the engine runs one worker per Queue, which is
// the only caller of its Receive. Send is safe from any goroutine.
//
// The socket layer (UMEM registration, the four rings, bind, wakeups) is
// written directly on golang.org/x/sys/unix; ring.go holds the
// producer/consumer logic shared with the kernel, testable without one.
//
// Everything is created in the network namespace of the thread that calls
// Open, and later netlink traffic (detach, neighbour and route updates)
// goes through sockets bound to that namespace, whatever thread runs it.
package afxdp
