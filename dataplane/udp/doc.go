// Package udp is the UDP-socket underlay: a packetio.Underlay on plain
// UDP sockets, which works on any interface, with no XDP or driver
// support. The kernel builds and strips the outer IP and UDP headers; the
// driver moves tunnel payloads (VXLAN or Geneve header and inner frame).
//
//   - Receive: sockets bound to node-ip:tunnel-port (several sharing the
//     port with SO_REUSEPORT, the kernel spreading flows over them, a
//     worker each) and, where VTEPs need it, node-ip:8472. Datagrams arrive
//     in batches with recvmmsg(2), or coalesced with UDP_GRO and cut apart
//     again; the sender's address and the local port come with each.
//   - Send: a pool of UDP sockets, one per source port, bound to
//     node-ip:port for ports spread over 49152-65535 (RFC 7348's dynamic
//     range). A payload leaves from the socket its flow hash picks, so one
//     flow keeps one source port and a fabric's ECMP hashing sees as many
//     distinct ports as the pool has sockets (Config.SourcePorts, 64 by
//     default; SourcePorts reports them). Payloads of one socket go out in
//     one sendmmsg(2); runs of equal-sized payloads to one destination leave
//     as one UDP_SEGMENT (GSO) message, which the kernel or NIC cuts.
//   - DSCP and ECN: the outer TOS byte (IPv4) or traffic class (IPv6)
//     travels per datagram in Meta.TOS. Receive reads it from the
//     IP_RECVTOS or IPV6_RECVTCLASS control message (one per coalesced
//     UDP_GRO run, whose datagrams the kernel merges only when their TOS is
//     the same); Send sets it with an IP_TOS or IPV6_TCLASS control message
//     on each message (none for 0, the socket's own), and a GSO run takes
//     only payloads of one TOS.
//
// An underlay has one address family, its node address's; the sockets and
// the addresses of the payloads are of that family only, and Send counts a
// payload to a remote of the other as refused (TXErrors). Over IPv6:
//
//   - The sockets are AF_INET6 and IPv6 only: no IPv4-mapped peer, and
//     Meta.Remote is always a plain IPv6 address, without a zone.
//   - The node address must be global or unique local: Open refuses a
//     link-local one (with or without a zone), which would tie the
//     underlay to one link and its peers' addresses to a scope.
//   - UDP_GRO and UDP_SEGMENT work as over IPv4, with the same fallbacks.
//   - The source ports spread flows as over IPv4; the kernel derives the
//     outer flow label from the addresses and ports (net.ipv6.auto_flowlabels,
//     on by default), so fabrics that hash the flow label spread them too.
//   - The outer UDP checksum is computed by the kernel (or the NIC), as
//     IPv6 requires and the kernel's vxlan does by default; UDP_NO_CHECK6_TX
//     and UDP_NO_CHECK6_RX stay off, so a datagram with a zero checksum is
//     dropped by the kernel before Receive sees it. RFC 6935 and 6936 allow
//     zero checksums for tunnels only where both ends are configured for
//     it; this driver offers no such setting.
//   - Nothing fragments an outer packet: a datagram above the path MTU is
//     refused by the kernel (EMSGSIZE) and counted in TXErrors, where over
//     IPv4 it leaves without DF and is fragmented, as the kernel's vxlan
//     does in each case. The engine's route MTU (70 bytes below the
//     underlay's over IPv6) keeps payloads below it.
package udp
