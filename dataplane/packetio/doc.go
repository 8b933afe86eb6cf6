// Package packetio is the contract between vxdp's engine and its packet
// I/O drivers. It imports nothing of the engine, and the engine and every
// driver import it: a driver can be written, tested and benchmarked
// without the engine, and the engine never knows which driver it holds
// (wireguard-go splits tun.Device and conn.Bind from its device package
// the same way).
//
// Two sides, two contracts:
//
//   - Device carries bare IP packets: a pod's TUN device, the host device
//     vxdp_host, the in-memory fake.
//   - Underlay carries tunnel payloads (from the VXLAN or Geneve header on)
//     to and from remote addresses: the UDP-socket driver, where the kernel
//     builds the outer IP and UDP headers, and the AF_XDP driver, which
//     writes Ethernet, IP and UDP itself. The engine never sees an outer
//     header, so the underlay's address family is the driver's business.
//
// Both follow one buffer rule: the caller owns every buffer, passes
// headroom in front of the packet (offset), and gets the buffers back
// when the call returns. An Underlay's Receive may give some back
// exchanged for buffers of its own, no shorter, that already hold the
// payload.
package packetio
