package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"golang.org/x/sys/unix"
)

// Sending through UDP sockets with segmentation offload (UDP_SEGMENT): a
// run of equal-sized tunnel datagrams to one peer leaves in one sendmsg,
// and the kernel (or the NIC) cuts it, where the raw socket pays the whole
// IP output path once per packet. A UDP socket has one source port, and
// tunnel traffic wants one per flow (RFC 7348's entropy for ECMP and RSS),
// so a pool of sockets bound to ports spread over 49152-65535 stands in:
// the flow's port chosen by the engine picks the socket, and one flow
// always leaves from the same port.

const (
	gsoSockets = 16 // sockets in the pool
	gsoMaxSegs = 64 // UDP_MAX_SEGMENTS
	gsoMaxLen  = 65000
	solUDP     = 17
	udpSegment = 103 // UDP_SEGMENT
)

// Options are the features a Device is opened with.
type Options struct {
	// GSO sends through a pool of UDP sockets with UDP_SEGMENT instead of
	// the raw socket. The outer source port is then the pool socket's,
	// chosen by the engine's port (so still one per flow), not the
	// engine's port itself.
	GSO bool
	// GRO receives with UDP_GRO: runs of datagrams arrive coalesced and
	// Read cuts them apart.
	GRO bool
	// ReusePort sets SO_REUSEPORT on the receiving socket, so several
	// devices can share the tunnel port and the kernel spreads the flows
	// over them (each read by its own worker).
	ReusePort bool
	// Instance tells apart devices sharing a port: from 1 on it is
	// appended to the name ("udp:10.0.0.1:8472#1"), which counters and
	// metrics are keyed by.
	Instance int
}

type gsoSock struct {
	file *os.File
	raw  syscall.RawConn
	port uint16
	fn   func(fd uintptr) bool
}

// gsoState is the send state of the pool, guarded by Device.tmu.
type gsoState struct {
	socks []gsoSock
	msg   unix.Msghdr
	iovs  [gsoMaxSegs]unix.Iovec
	addr  unix.RawSockaddrInet4
	oob   [32]byte // one cmsg with a uint16
	segs  int      // iovecs in use
	sent  bool
	errno unix.Errno
}

// openGSO binds the pool on ip. Ports that are taken are skipped; the pool
// is usable with any number of sockets but none.
func (d *Device) openGSO(ip [4]byte) error {
	g := &gsoState{}
	for i := 0; i < gsoSockets; i++ {
		base := 49152 + i*(16384/gsoSockets)
		var fd int
		var port int
		var err error
		for try := 0; try < 16; try++ {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
			if err != nil {
				return fmt.Errorf("gso socket: %w", err)
			}
			port = base + try
			if err = unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: ip}); err == nil {
				break
			}
			unix.Close(fd)
			fd = -1
		}
		if fd < 0 {
			continue
		}
		if len(g.socks) == 0 {
			// UDP_SEGMENT as a socket option exists exactly where the
			// per-message one does (Linux 4.18): ask once.
			if err := setsockoptInt(fd, solUDP, udpSegment, 0); err != nil {
				unix.Close(fd)
				return fmt.Errorf("UDP_SEGMENT: %w", err)
			}
		}
		// No DF, as the kernel's vxlan sends; nothing is ever read here.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF); err != nil {
			unix.Close(fd)
			return err
		}
		if err := dropAllInput(fd); err != nil {
			unix.Close(fd)
			return err
		}
		f := os.NewFile(uintptr(fd), "udp-gso")
		raw, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return err
		}
		g.socks = append(g.socks, gsoSock{file: f, raw: raw, port: uint16(port)})
	}
	if len(g.socks) == 0 {
		return errors.New("gso: no port free for the send sockets")
	}
	for i := range g.socks {
		g.socks[i].fn = d.gsoSend
	}
	g.msg.Name = (*byte)(unsafe.Pointer(&g.addr))
	g.msg.Namelen = unix.SizeofSockaddrInet4
	g.msg.Iov = &g.iovs[0]
	g.addr.Family = unix.AF_INET
	h := (*unix.Cmsghdr)(unsafe.Pointer(&g.oob[0]))
	h.Level = solUDP
	h.Type = udpSegment
	h.SetLen(unix.CmsgLen(2))
	d.gso = g
	return nil
}

func (d *Device) closeGSO() error {
	if d.gso == nil {
		return nil
	}
	var errs []error
	for _, s := range d.gso.socks {
		errs = append(errs, s.file.Close())
	}
	return errors.Join(errs...)
}

// sendmsg is sendmsg(2) for the GSO path; tests replace it to play a
// kernel that fails UDP_SEGMENT sends.
var sendmsg = func(fd uintptr, msg *unix.Msghdr) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(msg)), 0)
	return errno
}

// setsockoptInt is unix.SetsockoptInt; tests replace it to play a kernel
// that refuses UDP_GRO or UDP_SEGMENT.
var setsockoptInt = unix.SetsockoptInt

// Offloads reports udp-gso and udp-gro: whether each is in use, why not,
// and how many multi-datagram sends and receives went through it.
func (d *Device) Offloads() []packetio.Offload {
	d.offMu.Lock()
	gsoOff := d.gsoOff
	d.offMu.Unlock()
	return []packetio.Offload{
		{Name: "udp-gso", Active: gsoOff == "", Reason: gsoOff, Count: d.gsoRuns.Load(), Largest: d.gsoMax.Load()},
		{Name: "udp-gro", Active: d.groOff == "", Reason: d.groOff, Count: d.groRuns.Load(), Largest: d.groMax.Load()},
	}
}

// writeGSO sends the packets of bufs in runs: consecutive datagrams of one
// flow's socket to one destination, all of the first one's size but the
// last, which may be shorter. Caller holds tmu.
func (d *Device) writeGSO(bufs [][]byte, offset int) (int, error) {
	g := d.gso
	accepted := 0
	for i := 0; i < len(bufs); {
		p, ok := udpPayload(bufs[i], offset)
		if !ok {
			d.txErrors.Add(1)
			i++
			continue
		}
		first := bufs[i][offset:]
		sock := &g.socks[int(binary.BigEndian.Uint16(first[20:]))%len(g.socks)]
		size := len(p)
		g.iovs[0].Base, g.iovs[0].Len = &p[0], uint64(len(p))
		g.segs = 1
		total := len(p)
		j := i + 1
		for ; j < len(bufs) && g.segs < gsoMaxSegs && len(p) == size; j++ {
			q, ok := udpPayload(bufs[j], offset)
			if !ok || len(q) > size || total+len(q) > gsoMaxLen {
				break
			}
			b := bufs[j][offset:]
			if [6]byte(b[16:22]) != [6]byte(first[16:22]) || b[22] != first[22] || b[23] != first[23] { // dst addr, src port, dst port
				break
			}
			g.iovs[g.segs].Base, g.iovs[g.segs].Len = &q[0], uint64(len(q))
			g.segs++
			total += len(q)
			p = q
		}
		copy(g.addr.Addr[:], first[16:20])
		port := (*[2]byte)(unsafe.Pointer(&g.addr.Port)) // network order in memory
		port[0], port[1] = first[22], first[23]
		g.msg.Iovlen = uint64(g.segs)
		if g.segs > 1 {
			g.msg.Control = &g.oob[0]
			g.msg.SetControllen(unix.CmsgSpace(2))
			*(*uint16)(unsafe.Pointer(&g.oob[unix.CmsgLen(0)])) = uint16(size)
		} else {
			g.msg.Control = nil
			g.msg.SetControllen(0)
		}
		g.sent, g.errno = false, 0
		err := sock.raw.Write(sock.fn)
		for k := 0; k < g.segs; k++ {
			g.iovs[k].Base = nil
		}
		if err != nil {
			if d.closed.Load() {
				return accepted, d.closedErr("write")
			}
			return accepted, fmt.Errorf("write %s: %w", d.name, err)
		}
		switch {
		case g.sent:
			accepted += g.segs
			if g.segs > 1 {
				d.gsoRuns.Add(1)
				if t := uint64(total); t > d.gsoMax.Load() {
					d.gsoMax.Store(t) // one writer at a time (tmu)
				}
			}
		case g.errno == unix.EIO && g.segs > 1:
			// The kernel takes UDP_SEGMENT only when the route's device
			// can checksum the segments (or xfrm is not in the way);
			// this one cannot: send singly from now on, this run too.
			d.offMu.Lock()
			d.gsoOff = fmt.Sprintf("sendmsg with UDP_SEGMENT to %v failed: %v; sending datagrams singly", netip.AddrFrom4(g.addr.Addr), g.errno)
			d.offMu.Unlock()
			n, err := d.writeRaw(bufs[i:], offset)
			return accepted + n, err
		default:
			d.txErrors.Add(uint64(g.segs))
		}
		i = j
	}
	return accepted, nil
}

// gsoSend runs in the poller callback: one sendmsg of the prepared run.
func (d *Device) gsoSend(fd uintptr) bool {
	g := d.gso
	for {
		errno := sendmsg(fd, &g.msg)
		switch errno {
		case 0:
			g.sent = true
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			g.errno = errno
			return true
		}
	}
}

// udpPayload returns the UDP payload of the IPv4 packet b[offset:] the
// engine built (a 20-byte header, UDP), or false.
func udpPayload(b []byte, offset int) ([]byte, bool) {
	if offset < 0 || offset >= len(b) {
		return nil, false
	}
	p := b[offset:]
	if len(p) < 28 || p[0] != 0x45 || p[9] != unix.IPPROTO_UDP {
		return nil, false
	}
	tl := int(binary.BigEndian.Uint16(p[2:]))
	if tl < 29 || tl > len(p) {
		return nil, false
	}
	return p[28:tl], true
}
