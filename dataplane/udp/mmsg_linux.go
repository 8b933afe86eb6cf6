package udp

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgBatch holds the arrays one recvmmsg or sendmmsg call hands to the
// kernel: a header, one iovec and one address per message, the address
// IPv4 or IPv6 as the socket is (init says which, once), and room for the
// control messages of each received message. It lives inside
// a Queue (or its GRO state), which the Go heap never moves, so the
// pointers between the arrays are set up once and stay valid.
type mmsgBatch struct {
	hdrs    [batchSize]unix.Mmsghdr
	iovs    [batchSize]unix.Iovec
	addrs4  [batchSize]unix.RawSockaddrInet4
	addrs6  [batchSize]unix.RawSockaddrInet6
	oob     [batchSize][recvOOBLen]byte
	v6      bool
	namelen uint32
}

func (b *mmsgBatch) init(v6 bool) {
	b.v6 = v6
	b.namelen = unix.SizeofSockaddrInet4
	if v6 {
		b.namelen = unix.SizeofSockaddrInet6
	}
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		if v6 {
			h.Name = (*byte)(unsafe.Pointer(&b.addrs6[i]))
		} else {
			h.Name = (*byte)(unsafe.Pointer(&b.addrs4[i]))
		}
		h.Namelen = b.namelen
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.oob[i][0]
	}
}

// set points message i at buf and resets the fields the kernel overwrites.
func (b *mmsgBatch) set(i int, buf []byte) {
	b.iovs[i].Base = &buf[0]
	b.iovs[i].SetLen(len(buf))
	b.hdrs[i].Hdr.Namelen = b.namelen
	b.hdrs[i].Hdr.SetControllen(recvOOBLen)
	b.hdrs[i].Hdr.Flags = 0
	b.hdrs[i].Len = 0
}

// remote is the sender of received message i.
func (b *mmsgBatch) remote(i int) netip.AddrPort {
	if b.v6 {
		return addrPort6(&b.addrs6[i])
	}
	return addrPort4(&b.addrs4[i])
}

// cmsgs reads the control messages of received message i: the UDP_GRO
// segment size and the TOS or traffic class (parseCmsgs).
func (b *mmsgBatch) cmsgs(i int) (seg int, tos uint8) {
	h := &b.hdrs[i].Hdr
	return parseCmsgs(b.oob[i][:min(int(h.Controllen), recvOOBLen)])
}

// release drops the references to the caller's buffers, which the caller
// owns again once Read or Write returns.
func (b *mmsgBatch) release(n int) {
	for i := 0; i < n; i++ {
		b.iovs[i].Base = nil
	}
}

// recvmmsg receives up to len(hdrs) datagrams without a timeout. On a
// non-blocking socket it returns what is queued, or EAGAIN if nothing is.
func recvmmsg(fd uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	return int(r), errno
}

// sendmmsg sends len(hdrs) messages. It returns how many the kernel took;
// it reports an error only when the very first message fails, so the caller
// learns which one (the first of hdrs) was refused.
func sendmmsg(fd uintptr, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
		uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	return int(r), errno
}
