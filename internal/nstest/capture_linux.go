//go:build linux

package nstest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

const (
	maxCaptureFrames = 100000
	maxCaptureBytes  = 256 << 20
	// captureSnap is the read buffer: larger than any GSO/GRO aggregate a
	// veth hands to packet sockets by default, so frames are not cut.
	captureSnap = 256 << 10
	// captureRcvBuf is the kernel queue asked for, so that bursts (a bulk TCP
	// transfer) are not dropped while the reader goroutine catches up.
	captureRcvBuf = 32 << 20
)

// Frame is one captured frame with its metadata.
type Frame struct {
	Data     []byte    // as captured; shorter than Len if it was truncated
	Len      int       // length of the frame on the interface
	Time     time.Time // when the reader got it
	Outgoing bool      // sent through the interface (else received on it)
}

// Capture collects every frame (both directions) seen on one interface of a
// namespace through an AF_PACKET socket. It keeps at most 100000 frames and
// 256 MiB; frames beyond that are counted in Dropped.
type Capture struct {
	ns     *Netns
	ifname string
	f      *os.File
	rc     syscall.RawConn
	done   chan struct{}

	stopOnce sync.Once

	mu          sync.Mutex
	frames      []Frame
	bytes       int64
	overflow    int
	kernelDrops int
	readErr     error
}

// StartCapture opens an AF_PACKET/SOCK_RAW socket for all protocols inside
// ns, bound to ifname, and collects frames into memory in a goroutine until
// Stop. Frames are whatever the interface carries: Ethernet for veth, bare
// IP packets for TUN devices. The lab's teardown stops a forgotten capture.
func StartCapture(ns *Netns, ifname string) (*Capture, error) {
	fd := -1
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0 delivers nothing until bind sets the real protocol, so
		// no frame of another interface sneaks in before the bind.
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, captureRcvBuf) != nil {
			unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, captureRcvBuf)
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
		if err := unix.Bind(s, sa); err != nil {
			unix.Close(s)
			return fmt.Errorf("bind: %w", err)
		}
		fd = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nstest: capture on %s in %s: %w", ifname, ns.Name, err)
	}
	// A non-blocking descriptor makes the File use the runtime poller, so a
	// read deadline can wake the reader for Stop.
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nstest: capture on %s in %s: %w", ifname, ns.Name, err)
	}
	c := &Capture{ns: ns, ifname: ifname, f: f, rc: rc, done: make(chan struct{})}
	go c.run()
	if ns.lab != nil {
		// The socket pins the namespace; release it before deletion.
		ns.lab.pushUndo("stop capture on "+ifname+" in "+ns.Name, func() error {
			c.Stop()
			return nil
		})
	}
	return c, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func (c *Capture) run() {
	defer close(c.done)
	buf := make([]byte, captureSnap)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			// MSG_TRUNC makes n the full length even if buf was too small.
			n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			// Stop set a past deadline (or the file was closed): take what
			// is already queued in the kernel, then finish.
			c.drain(buf)
			return
		}
		switch rerr {
		case nil:
			c.add(buf, n, from)
		case unix.EINTR, unix.ENETDOWN:
			// ENETDOWN is reported once when the interface goes down;
			// later frames still arrive if it comes back.
		default:
			c.mu.Lock()
			c.readErr = rerr
			c.mu.Unlock()
			return
		}
	}
}

// drain reads frames already queued on the socket without blocking. It is
// bounded so that a continuous flood cannot keep Stop from returning.
func (c *Capture) drain(buf []byte) {
	c.rc.Control(func(fd uintptr) {
		for range maxCaptureFrames {
			n, from, err := unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			c.add(buf, n, from)
		}
	})
}

func (c *Capture) add(buf []byte, n int, from unix.Sockaddr) {
	keep := min(n, len(buf))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) >= maxCaptureFrames || c.bytes+int64(keep) > maxCaptureBytes {
		c.overflow++
		return
	}
	fr := Frame{Data: append([]byte(nil), buf[:keep]...), Len: n, Time: time.Now()}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		fr.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
	}
	c.frames = append(c.frames, fr)
	c.bytes += int64(keep)
}

// Stop ends the capture and returns the frames' bytes in arrival order.
// Frames still queued in the kernel when Stop is called are included. Stop
// is idempotent: later calls return the same frames.
func (c *Capture) Stop() [][]byte {
	frames := c.StopFrames()
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = f.Data
	}
	return out
}

// StopFrames is Stop returning frames with their metadata.
func (c *Capture) StopFrames() []Frame {
	c.stopOnce.Do(func() {
		if err := c.f.SetReadDeadline(time.Unix(1, 0)); err != nil {
			c.f.Close()
		}
		<-c.done
		c.rc.Control(func(fd uintptr) {
			// Reading the statistics also resets them; we only do it once.
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				c.mu.Lock()
				c.kernelDrops = int(st.Drops)
				c.mu.Unlock()
			}
		})
		c.f.Close()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// Dropped returns how many frames were lost: dropped by the kernel because
// the socket queue was full, or discarded because the capture hit its
// limits. The kernel part is only known after Stop.
func (c *Capture) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kernelDrops + c.overflow
}

// Err returns the error that ended the capture early, if any.
func (c *Capture) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr != nil {
		return fmt.Errorf("nstest: capture on %s in %s: %w", c.ifname, c.ns.Name, c.readErr)
	}
	return nil
}

// Decode parses an Ethernet frame with gopacket's default (eager) decoding.
// gopacket recognises VXLAN on UDP 4789 and Geneve on UDP 6081 by itself.
func Decode(frame []byte) gopacket.Packet {
	return gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
}

// DecodeIPv4 parses a bare IPv4 packet, as read from a TUN device.
func DecodeIPv4(pkt []byte) gopacket.Packet {
	return gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
}

// DecodeIPv6 parses a bare IPv6 packet, as read from a TUN device.
func DecodeIPv6(pkt []byte) gopacket.Packet {
	return gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
}

// DecodeIP parses a bare IP packet of either version, choosing by the
// version nibble.
func DecodeIP(pkt []byte) gopacket.Packet {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		return DecodeIPv6(pkt)
	}
	return DecodeIPv4(pkt)
}

// Endpoints returns the transport protocol and the source and destination
// address:port of the first (outermost) IP header and the TCP or UDP header
// right after it. ok is false for anything else (ARP, ICMP, fragments).
func Endpoints(p gopacket.Packet) (proto layers.IPProtocol, src, dst netip.AddrPort, ok bool) {
	var srcIP, dstIP net.IP
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		srcIP, dstIP, proto = ip.SrcIP, ip.DstIP, ip.Protocol
	case *layers.IPv6:
		srcIP, dstIP, proto = ip.SrcIP, ip.DstIP, ip.NextHeader
	default:
		return 0, src, dst, false
	}
	s, ok1 := netip.AddrFromSlice(srcIP)
	d, ok2 := netip.AddrFromSlice(dstIP)
	if !ok1 || !ok2 {
		return 0, src, dst, false
	}
	s, d = s.Unmap(), d.Unmap()
	switch l4 := p.TransportLayer().(type) {
	case *layers.UDP:
		return layers.IPProtocolUDP, netip.AddrPortFrom(s, uint16(l4.SrcPort)), netip.AddrPortFrom(d, uint16(l4.DstPort)), true
	case *layers.TCP:
		return layers.IPProtocolTCP, netip.AddrPortFrom(s, uint16(l4.SrcPort)), netip.AddrPortFrom(d, uint16(l4.DstPort)), true
	}
	return proto, src, dst, false
}
