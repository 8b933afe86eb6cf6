package tun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// TUN offload flags and virtio-net header fields for generic segmentation
// over a UDP tunnel (Linux 6.17 and later).
const (
	tunFUDPTunnelGSO     = 0x080 // TUN_F_UDP_TUNNEL_GSO
	vnetGSOUDPTunnelIPv4 = 0x20  // VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
	// tnlHdrLen is struct virtio_net_hdr_v1_hash_tunnel: the 10-byte
	// header (vnetHdr's fields at their offsets), num_buffers, the hash
	// fields, then the offsets of the outer transport header and the
	// inner network header.
	tnlHdrLen            = 24
	tnlOuterTHOffset     = 20
	tnlInnerNHOffset     = 22
	tunnelGSOEtherLength = encap.EthernetLen
)

// TunnelGSO is a TAP interface of the node's own namespace that the engine
// writes tunnel packets into, each carrying a pod's TCP super-packet whole
// and marked for segmentation over a UDP tunnel (packetio.TunnelGSO). The
// kernel takes each as received on the interface and routes it out like
// any forwarded packet, segmenting it where the way out needs it: a NIC
// does it in hardware, a virtual link (veth) carries it whole. The
// interface accepts packets from the node's own address (accept_local),
// forwards (forwarding) and skips the reverse-path check; nothing is ever
// routed to it, and it goes away with the descriptor.
type TunnelGSO struct {
	fd    int
	name  string
	mac   [6]byte
	mu    sync.RWMutex // held for reading by writers, for writing by Close
	done  bool
	count atomic.Uint64
	max   atomic.Uint64
	// off is set on EINVAL, when the kernel refuses the header itself,
	// and turns the way out off. A failed write is the engine's to fall
	// back from: it cuts the packet up and sends it the usual way.
	off atomic.Pointer[string]
}

// OpenTunnelGSO creates the TAP interface name in the calling thread's
// network namespace, with the offloads and settings above, and brings it
// up. It fails on a kernel without UDP tunnel segmentation on TUN, and
// where the namespace's reverse-path filter is strict for all interfaces
// (net.ipv4.conf.all.rp_filter=1), which would drop every packet.
func OpenTunnelGSO(name string) (_ *TunnelGSO, err error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tunnel-gso %q: name longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	if v, err := os.ReadFile(SysctlPath("net/ipv4/conf/all/rp_filter")); err == nil && strings.TrimSpace(string(v)) == "1" {
		return nil, errors.New("tunnel-gso: net.ipv4.conf.all.rp_filter is 1 (strict), which would drop the node's own tunnel packets on the way out")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tunnel-gso: open /dev/net/tun: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tunnel-gso %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("tunnel-gso %q: TUNSETIFF: %w", name, err)
	}
	if err := setOffload(fd, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6|tunFUDPTunnelGSO); err != nil {
		return nil, fmt.Errorf("tunnel-gso %q: the kernel refuses UDP tunnel segmentation on TUN (Linux 6.17 or later has it): %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, tnlHdrLen); err != nil {
		return nil, fmt.Errorf("tunnel-gso %q: TUNSETVNETHDRSZ: %w", name, err)
	}
	g := &TunnelGSO{fd: fd, name: name}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("tunnel-gso %q: %w", name, err)
	}
	copy(g.mac[:], link.Attrs().HardwareAddr)
	for _, s := range []struct{ key, val string }{
		{"net/ipv6/conf/" + name + "/disable_ipv6", "1"},
		{"net/ipv4/conf/" + name + "/forwarding", "1"},
		{"net/ipv4/conf/" + name + "/accept_local", "1"},
		{"net/ipv4/conf/" + name + "/rp_filter", "0"},
	} {
		if err := os.WriteFile(SysctlPath(s.key), []byte(s.val), 0o644); err != nil && !strings.Contains(s.key, "ipv6") {
			return nil, fmt.Errorf("tunnel-gso %q: sysctl %s: %w", name, s.key, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tunnel-gso %q: set up: %w", name, err)
	}
	return g, nil
}

// Name is the interface's name.
func (g *TunnelGSO) Name() string { return g.name }

// WriteTunnel writes buf[start:] behind an Ethernet header to the
// interface's own address and a virtio-net header asking for TCP
// segmentation over a UDP tunnel (packetio.TunnelGSO).
func (g *TunnelGSO) WriteTunnel(buf []byte, start, inner, l4, gso int, v6, ecn bool) error {
	if p := g.off.Load(); p != nil {
		return errors.New(*p)
	}
	f := start - tunnelGSOEtherLength - tnlHdrLen
	if f < 0 || start+l4+encap.TCPMinLen > len(buf) || gso <= 0 || gso > 0xffff {
		return fmt.Errorf("tunnel-gso: bad packet layout")
	}
	h := buf[f : f+tnlHdrLen]
	clear(h)
	v := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4 | vnetGSOUDPTunnelIPv4, gsoSize: uint16(gso)}
	if v6 {
		v.gsoType = vnetGSOTCPv6 | vnetGSOUDPTunnelIPv4
	}
	if ecn {
		v.gsoType |= vnetGSOECN
	}
	// Offsets count from the Ethernet header.
	eth := tunnelGSOEtherLength
	v.hdrLen = uint16(eth + l4 + encap.TCP(buf[start+l4:]).HeaderLen())
	v.csumStart, v.csumOffset = uint16(eth+l4), encap.TCPChecksumOffset
	v.encode(h)
	binary.LittleEndian.PutUint16(h[tnlOuterTHOffset:], uint16(eth+encap.IPv4MinLen))
	binary.LittleEndian.PutUint16(h[tnlInnerNHOffset:], uint16(eth+inner))
	e := buf[f+tnlHdrLen : start]
	copy(e[0:6], g.mac[:])
	// The source: the interface's address with the locally administered
	// bit flipped, a unicast address nobody else uses.
	copy(e[6:12], g.mac[:])
	e[6] ^= 0x02
	binary.BigEndian.PutUint16(e[12:], 0x0800)

	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.done {
		return net.ErrClosed
	}
	for {
		_, err := unix.Write(g.fd, buf[f:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EINVAL:
			reason := fmt.Sprintf("the kernel refused a tunnel GSO write: %v", err)
			g.off.Store(&reason)
			return err
		case err != nil:
			return err
		}
		g.count.Add(1)
		if l := uint64(len(buf) - start); l > g.max.Load() {
			g.max.Store(l) // a race here only loses a maximum
		}
		return nil
	}
}

// Offload reports tunnel-gso: tunnel packets written whole, the largest,
// and why it went off if the kernel refused one.
func (g *TunnelGSO) Offload() packetio.Offload {
	o := packetio.Offload{Name: "tunnel-gso", Active: true, Count: g.count.Load(), Largest: g.max.Load()}
	if p := g.off.Load(); p != nil {
		o.Active, o.Reason = false, *p
	}
	return o
}

// Close closes the descriptor, which removes the interface.
func (g *TunnelGSO) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return nil
	}
	g.done = true
	return unix.Close(g.fd)
}

// Probe checks that what is written into the interface leaves the node: it
// writes an ICMP echo request from src to dst (a node's underlay address)
// and waits up to timeout for the reply, which the node's kernel takes as
// its own. The request goes the way the tunnel packets go, forwarded from
// this interface to the underlay device, so a firewall that drops them
// drops it too. It waits until ctx's deadline, and returns ctx's error as
// soon as ctx is done otherwise (an engine that stops does not wait for
// its probe).
func (g *TunnelGSO) Probe(ctx context.Context, src, dst netip.Addr) error {
	if !src.Is4() || !dst.Is4() {
		return fmt.Errorf("probe %s: not IPv4", dst)
	}
	// A raw ICMP socket sees every ICMP packet the node receives; the
	// reply is told by its source, identifier and sequence number.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return fmt.Errorf("probe: raw ICMP socket: %w", err)
	}
	defer unix.Close(fd)
	id := uint16(probeID.Add(1)) ^ uint16(os.Getpid())
	const room = tnlHdrLen + tunnelGSOEtherLength
	frame := make([]byte, room+encap.IPv4MinLen+8+16)
	ip := encap.IPv4(frame[room : room+encap.IPv4MinLen])
	ip.Encode(&encap.IPv4Fields{TotalLen: uint16(len(frame) - room), TTL: 64, Protocol: encap.ProtoICMP, Source: src.As4(), Destination: dst.As4()})
	icmp := frame[room+encap.IPv4MinLen:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	copy(icmp[8:], "vxdp tunnel-gso ")
	binary.BigEndian.PutUint16(icmp[2:], encap.Checksum(icmp, 0))
	e := frame[tnlHdrLen:room]
	copy(e[0:6], g.mac[:])
	copy(e[6:12], g.mac[:])
	e[6] ^= 0x02
	binary.BigEndian.PutUint16(e[12:], 0x0800)

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(probeTimeout)
	}
	timeout := time.Until(deadline).Round(time.Millisecond)
	g.mu.RLock()
	if g.done {
		g.mu.RUnlock()
		return net.ErrClosed
	}
	_, err = unix.Write(g.fd, frame)
	g.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("probe: write: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		if err := ctx.Err(); err != nil && err != context.DeadlineExceeded {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no echo reply from %s through %s within %v: a firewall may drop what the node forwards from %s", dst, g.name, timeout, g.name)
		}
		// Wait in slices, so that a cancelled ctx is seen soon.
		tv := unix.NsecToTimeval(min(left, probeSlice).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("probe: read: %w", err)
		}
		r := encap.IPv4(buf[:n])
		if !r.IsValid(n) || r.SourceAddr() != dst || r.Protocol() != encap.ProtoICMP {
			continue
		}
		p := r.Payload()
		if len(p) >= 8 && p[0] == 0 && binary.BigEndian.Uint16(p[4:]) == id {
			return nil
		}
	}
}

// A probe without a deadline waits probeTimeout; the reply is waited for
// in slices of probeSlice.
const (
	probeTimeout = time.Second
	probeSlice   = 50 * time.Millisecond
)

// probeID makes the identifiers of a process's probes differ.
var probeID atomic.Uint32
