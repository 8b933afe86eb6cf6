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
//
// IPv4 only for now.
package udp
