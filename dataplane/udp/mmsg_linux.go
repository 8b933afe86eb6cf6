package udp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgBatch holds the arrays one recvmmsg or sendmmsg call hands to the
// kernel: a header, one iovec and one IPv4 address per message. It lives
// inside the Device, which the Go heap never moves, so the pointers between
// the arrays are set up once and stay valid.
type mmsgBatch struct {
	hdrs  [batchSize]unix.Mmsghdr
	iovs  [batchSize]unix.Iovec
	addrs [batchSize]unix.RawSockaddrInet4
}

func (b *mmsgBatch) init() {
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.addrs[i]))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
}

// set points message i at buf and resets the fields the kernel overwrites.
func (b *mmsgBatch) set(i int, buf []byte) {
	b.iovs[i].Base = &buf[0]
	b.iovs[i].SetLen(len(buf))
	b.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	b.hdrs[i].Hdr.Flags = 0
	b.hdrs[i].Len = 0
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
