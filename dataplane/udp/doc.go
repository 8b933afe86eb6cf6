// Package udp is the UDP-socket underlay behind packetio.Device. It works
// on any interface, with no XDP or driver support.
//
// The engine speaks whole outer IPv4 packets (IPv4 + UDP + tunnel header +
// inner frame), while a UDP socket hands out and takes only payloads. The
// driver bridges that:
//
//   - Receive: a UDP socket bound to node-ip:tunnel-port reads datagrams in
//     batches with recvmmsg(2). Each payload lands at
//     bufs[i][offset+HeaderLen:], and the driver writes an IPv4 and a UDP
//     header in front of it at bufs[i][offset:], as if the packet had been
//     captured off the wire: source = the sender's address and port,
//     destination = the local ones, TTL 64, a valid IPv4 header checksum and
//     UDP checksum 0 (the kernel has verified the real one already).
//   - Send: a raw IPPROTO_RAW socket (which implies IP_HDRINCL) sends each
//     bufs[i][offset:] as the complete IPv4 packet the engine built, with
//     sendmmsg(2), to the packet's own destination address. The kernel fills
//     in the IPv4 checksum, total length and, when zero, the ID. The UDP
//     source port is whatever the engine wrote, which is how it spreads
//     flows across the receiver's queues.
//
// IPv4 only for now.
package udp
