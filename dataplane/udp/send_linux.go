package udp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// Sending. A UDP socket has one source port, and tunnel traffic wants one
// per flow (RFC 7348 section 5: entropy for ECMP and RSS), so the pool
// holds a socket per source port and a payload leaves through the socket
// its flow hash picks: one flow, one port, for the life of the pool. The
// payloads of one Send are grouped by socket (which keeps each flow's
// order) and each group leaves in one sendmmsg; with UDP_SEGMENT, a run of
// equal-sized payloads to one destination and of one TOS (the last may be
// shorter) is one message the kernel or the NIC cuts. A payload's TOS
// (Meta.TOS) goes with its message as a control message, every segment of
// a run carrying the same.

const (
	gsoMaxSegs = 64    // UDP_MAX_SEGMENTS
	gsoMaxLen  = 65000 // payload bytes in one segmented message
	solUDP     = 17
	udpSegment = 103 // UDP_SEGMENT
	// sendMax is the most payloads one group handles at a time: what a
	// worker queues in one batch (a packet and an ICMP error per packet
	// read).
	sendMax = 2 * batchSize
)

// pool is the set of send sockets.
type pool struct {
	socks []*sendSock
	ports packetio.SourcePorts

	gsoOn   atomic.Bool
	offMu   sync.Mutex // protects gsoOff
	gsoOff  string     // why GSO is off
	gsoRuns atomic.Uint64
	gsoMax  atomic.Uint64
}

// sendSock is one send socket and the arrays of its sendmmsg. Senders take
// turns on it (mu); senders of other flows use other sockets.
type sendSock struct {
	mu   sync.Mutex // protects everything below v6
	file *os.File
	raw  syscall.RawConn
	port uint16
	v6   bool // an IPv6 socket: messages are addressed with addrs6, else addrs4

	hdrs   [batchSize]unix.Mmsghdr
	addrs4 [batchSize]unix.RawSockaddrInet4
	addrs6 [batchSize]unix.RawSockaddrInet6
	oob    [batchSize][sendOOBLen]byte // the TOS and UDP_SEGMENT cmsgs of each
	tos    [batchSize]uint8            // TOS or traffic class of each message
	size   [batchSize]int              // segment size of each message
	segs   [batchSize]int              // payloads in each message
	total  [batchSize]int              // bytes in each message
	first  [batchSize]int              // the message's first payload, as a position in the group
	iovs   [sendMax]unix.Iovec         // the payloads, message after message
	nmsg   int

	// State of the sendmmsg loop in the poller callback.
	next     int
	accepted int
	errs     int
	eio      bool
	fn       func(fd uintptr) bool
}

// setsockoptInt is unix.SetsockoptInt; tests replace it to play a kernel
// that refuses UDP_GRO or UDP_SEGMENT.
var setsockoptInt = unix.SetsockoptInt

// sendmmsgFn is sendmmsg; tests replace it to play a kernel that fails
// segmented sends at run time.
var sendmmsgFn = sendmmsg

// openPool binds n send sockets on addr at ports spread over the dynamic
// range. A port that is taken is skipped for the next one up; the pool
// fails only if no socket at all can be bound.
func openPool(addr netip.Addr, n int, gso bool) (*pool, error) {
	p := &pool{}
	span := encap.SourcePortMax - encap.SourcePortMin + 1
	stride := span / n
	for i := range n {
		s, err := openSendSock(addr, encap.SourcePortMin+i*stride, min(stride, 16))
		if err != nil {
			p.close()
			return nil, err
		}
		if s != nil {
			p.socks = append(p.socks, s)
		}
	}
	if len(p.socks) == 0 {
		return nil, fmt.Errorf("send sockets: no free port in %d-%d", encap.SourcePortMin, encap.SourcePortMax)
	}
	p.ports = packetio.SourcePorts{Count: len(p.socks), Min: p.socks[0].port, Max: p.socks[len(p.socks)-1].port}
	switch {
	case !gso:
		p.gsoOff = "not requested"
	default:
		// UDP_SEGMENT as a socket option exists exactly where the
		// per-message one does (Linux 4.18): ask once.
		if err := p.socks[0].control(func(fd int) error { return setsockoptInt(fd, solUDP, udpSegment, 0) }); err != nil {
			p.gsoOff = fmt.Sprintf("UDP_SEGMENT: %v", err)
		} else {
			p.gsoOn.Store(true)
		}
	}
	return p, nil
}

// openSendSock binds a send socket to the first free port of [from,
// from+tries), or returns nil if all are taken.
func openSendSock(addr netip.Addr, from, tries int) (*sendSock, error) {
	v6 := addr.Is6()
	for port := from; port < from+tries; port++ {
		fd, err := newSocket(v6)
		if err != nil {
			return nil, fmt.Errorf("send socket: %w", err)
		}
		err = unix.Bind(fd, sockaddr(netip.AddrPortFrom(addr, uint16(port))))
		if errors.Is(err, unix.EADDRINUSE) {
			unix.Close(fd)
			continue
		}
		if err == nil {
			err = setupSendSock(fd, v6)
		}
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("send socket on port %d: %w", port, err)
		}
		s := &sendSock{file: os.NewFile(uintptr(fd), "udp-send"), port: uint16(port), v6: v6}
		if s.raw, err = s.file.SyscallConn(); err != nil {
			s.file.Close()
			return nil, err
		}
		s.fn = s.sendLoop
		for i := range s.hdrs {
			h := &s.hdrs[i].Hdr
			if v6 {
				h.Name = (*byte)(unsafe.Pointer(&s.addrs6[i]))
				h.Namelen = unix.SizeofSockaddrInet6
				s.addrs6[i].Family = unix.AF_INET6
			} else {
				h.Name = (*byte)(unsafe.Pointer(&s.addrs4[i]))
				h.Namelen = unix.SizeofSockaddrInet4
				s.addrs4[i].Family = unix.AF_INET
			}
		}
		return s, nil
	}
	return nil, nil
}

func setupSendSock(fd int, v6 bool) error {
	if err := setPathMTUDiscovery(fd, v6); err != nil {
		return err
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sockBuf); err != nil {
		return err
	}
	return dropAllInput(fd)
}

// setPathMTUDiscovery makes a datagram above the path MTU behave as a
// tunnel packet of the kernel's vxlan does. Over IPv4 it leaves without DF
// and the kernel fragments it (the vxlan device's default, df unset). Over
// IPv6 nothing fragments it, neither on the way (RFC 8200 routers never do)
// nor here: sendmmsg refuses it with EMSGSIZE, Send counts it in TXErrors,
// as the kernel's vxlan drops an outer IPv6 packet too big for its route.
// The engine sizes the route MTU so that neither happens on a path as wide
// as the underlay device.
func setPathMTUDiscovery(fd int, v6 bool) error {
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO); err != nil {
			return fmt.Errorf("IPV6_MTU_DISCOVER: %w", err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
		return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
	}
	return nil
}

// dropAllInput attaches a filter that rejects every packet: nothing reads
// a send socket, and a datagram to its port must not sit in its buffer.
func dropAllInput(fd int) error {
	filter := [1]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	prog := unix.SockFprog{Len: 1, Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attach drop filter: %w", err)
	}
	return nil
}

func (s *sendSock) control(fn func(fd int) error) error {
	var ferr error
	if err := s.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (p *pool) close() error {
	var errs []error
	for _, s := range p.socks {
		errs = append(errs, s.file.Close())
	}
	return errors.Join(errs...)
}

// sockFor is the socket of a flow.
func (p *pool) sockFor(flow uint32) *sendSock {
	return p.socks[flow%uint32(len(p.socks))]
}

func (p *pool) offload() packetio.Offload {
	p.offMu.Lock()
	off := p.gsoOff
	p.offMu.Unlock()
	return packetio.Offload{Name: "udp-gso", Active: off == "", Reason: off, Count: p.gsoRuns.Load(), Largest: p.gsoMax.Load()}
}

// send sends bufs[i][offset:] to meta[i].Remote, grouped by socket, and
// counts refusals in q.
func (p *pool) send(q *Queue, bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	accepted := 0
	for len(bufs) > 0 {
		chunk := min(len(bufs), sendMax)
		n, err := p.sendChunk(q, bufs[:chunk], meta[:chunk], offset)
		accepted += n
		if err != nil {
			return accepted, err
		}
		bufs, meta = bufs[chunk:], meta[chunk:]
	}
	return accepted, nil
}

func (p *pool) sendChunk(q *Queue, bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	var done [sendMax]bool
	var group [sendMax]int
	accepted := 0
	for i := range bufs {
		if done[i] {
			continue
		}
		s := p.sockFor(meta[i].Flow)
		g := 0
		for j := i; j < len(bufs); j++ {
			if !done[j] && p.sockFor(meta[j].Flow) == s {
				group[g] = j
				g++
				done[j] = true
			}
		}
		n, err := p.sendGroup(q, s, bufs, meta, offset, group[:g])
		accepted += n
		if err != nil {
			return accepted, err
		}
	}
	return accepted, nil
}

// sendGroup sends the payloads bufs[group[k]] through s.
func (p *pool) sendGroup(q *Queue, s *sendSock, bufs [][]byte, meta []packetio.Meta, offset int, group []int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	accepted := 0
	for pos := 0; pos < len(group); {
		gso := p.gsoOn.Load()
		end := s.build(bufs, meta, offset, group, pos, gso, q)
		s.next, s.accepted, s.errs, s.eio = 0, 0, 0, false
		var err error
		if s.nmsg > 0 {
			err = s.raw.Write(s.fn)
		}
		for i := range s.iovs[:s.msgIovs()] {
			s.iovs[i].Base = nil // the caller owns its buffers again
		}
		accepted += s.accepted
		if s.errs > 0 {
			q.txErrors.Add(uint64(s.errs))
		}
		if err != nil {
			return accepted, fmt.Errorf("send %s: %w", q.name, err)
		}
		if gso {
			p.countGSO(s)
		}
		if s.eio {
			// The kernel takes UDP_SEGMENT only when the route's device
			// can checksum the segments; this one cannot. Send singly
			// from now on, starting with the message it refused.
			p.offMu.Lock()
			if p.gsoOn.CompareAndSwap(true, false) {
				p.gsoOff = fmt.Sprintf("sendmmsg with UDP_SEGMENT to %v failed: %v; sending datagrams singly", s.remote(s.next), unix.EIO)
			}
			p.offMu.Unlock()
			end = s.first[s.next]
		}
		pos = end
	}
	return accepted, nil
}

// build fills the message arrays from group[pos:] and returns the position
// after the last payload it took. Empty payloads and payloads to a remote
// of the other address family are counted as errors.
func (s *sendSock) build(bufs [][]byte, meta []packetio.Meta, offset int, group []int, pos int, gso bool, q *Queue) int {
	m, iov := 0, 0
	short := false // the current message ended with a shorter segment
	for ; pos < len(group); pos++ {
		k := group[pos]
		remote, ok := s.dest(meta[k].Remote)
		if !ok || offset < 0 || offset >= len(bufs[k]) {
			q.txErrors.Add(1)
			continue
		}
		b, tos := bufs[k][offset:], meta[k].TOS
		if gso && m > 0 && !short && s.segs[m-1] < gsoMaxSegs && len(b) <= s.size[m-1] &&
			(s.segs[m-1]+1)*s.size[m-1] <= gsoMaxLen && s.tos[m-1] == tos && s.sameAddr(m-1, remote) {
			short = len(b) < s.size[m-1]
			s.segs[m-1]++
			s.total[m-1] += len(b)
		} else {
			if m == batchSize {
				break
			}
			s.setAddr(m, remote)
			s.size[m], s.segs[m], s.total[m], s.first[m], s.tos[m] = len(b), 1, len(b), pos, tos
			s.hdrs[m].Hdr.Iov = &s.iovs[iov]
			m++
			short = false
		}
		s.iovs[iov].Base = &b[0]
		s.iovs[iov].SetLen(len(b))
		iov++
	}
	for i := 0; i < m; i++ {
		h := &s.hdrs[i].Hdr
		h.SetIovlen(s.segs[i])
		// TOS 0 is the socket's own: no message needed.
		n := 0
		if s.tos[i] != 0 {
			n += putTOS(s.oob[i][n:], s.v6, s.tos[i])
		}
		if s.segs[i] > 1 {
			n += putSegment(s.oob[i][n:], s.size[i])
		}
		h.Control = nil
		if n > 0 {
			h.Control = &s.oob[i][0]
		}
		h.SetControllen(n)
	}
	s.nmsg = m
	return pos
}

// msgIovs is the number of iovecs the built messages use.
func (s *sendSock) msgIovs() int {
	n := 0
	for i := 0; i < s.nmsg; i++ {
		n += s.segs[i]
	}
	return n
}

// dest is where a payload to a goes, or false if the socket cannot send
// there: an IPv4 socket takes IPv4 addresses (IPv4-mapped ones too, as
// IPv4), an IPv6 socket IPv6 addresses that are not IPv4-mapped (it is
// IPv6 only). The invalid AddrPort is of neither family.
func (s *sendSock) dest(a netip.AddrPort) (netip.AddrPort, bool) {
	ip := a.Addr()
	if s.v6 {
		return a, ip.Is6() && !ip.Is4In6()
	}
	ip = ip.Unmap()
	return netip.AddrPortFrom(ip, a.Port()), ip.Is4()
}

// setAddr addresses message m to a, of the socket's family (dest).
func (s *sendSock) setAddr(m int, a netip.AddrPort) {
	if s.v6 {
		setAddrPort6(&s.addrs6[m], a)
	} else {
		setAddrPort4(&s.addrs4[m], a)
	}
}

// sameAddr reports whether message m goes to a, of the socket's family.
func (s *sendSock) sameAddr(m int, a netip.AddrPort) bool {
	if s.v6 {
		return sameAddrPort6(&s.addrs6[m], a)
	}
	return sameAddrPort4(&s.addrs4[m], a)
}

// remote is where message m goes.
func (s *sendSock) remote(m int) netip.AddrPort {
	if s.v6 {
		return addrPort6(&s.addrs6[m])
	}
	return addrPort4(&s.addrs4[m])
}

// sendLoop runs in the poller callback; returning false parks the
// goroutine until the socket is writable again.
func (s *sendSock) sendLoop(fd uintptr) bool {
	for s.next < s.nmsg {
		n, errno := sendmmsgFn(fd, s.hdrs[s.next:s.nmsg])
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
			continue
		case errno == unix.EIO && s.segs[s.next] > 1:
			s.eio = true
			return true
		case errno != 0 || n <= 0:
			// The first message of the slice was refused: skip it.
			s.errs += s.segs[s.next]
			s.next++
		default:
			for _, c := range s.segs[s.next : s.next+n] {
				s.accepted += c
			}
			s.next += n
		}
	}
	return true
}

// countGSO counts the segmented messages the last build sent.
func (p *pool) countGSO(s *sendSock) {
	for i := 0; i < s.next && i < s.nmsg; i++ {
		if s.segs[i] < 2 {
			continue
		}
		p.gsoRuns.Add(1)
		t := uint64(s.total[i])
		for {
			old := p.gsoMax.Load()
			if t <= old || p.gsoMax.CompareAndSwap(old, t) {
				break
			}
		}
	}
}
