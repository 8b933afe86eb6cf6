package udp

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkZerocopySend measures what MSG_ZEROCOPY would give the
// underlay's large sends on this machine: 62,400-byte UDP_SEGMENT sends
// (52 datagrams of 1,200 bytes) from the node to a socket in the peer's
// namespace over the veth, once copied and once with MSG_ZEROCOPY. A
// zerocopy send keeps its buffer until the kernel's completion arrives on
// the error queue, which also says whether the kernel copied the pages
// after all ("copied"): a veth hands the packet to a socket of this
// machine, and the kernel copies user pages before such a delivery, so on
// a veth the completions come back copied and the figure is the cost of
// the bookkeeping. On a NIC the pages go to the device instead. The
// sender outruns the receiver: delivered-MB/s is the figure to compare.
//
//	go test -run '^$' -bench BenchmarkZerocopySend ./dataplane/udp
func BenchmarkZerocopySend(b *testing.B) {
	for _, zc := range []bool{false, true} {
		name := "copy"
		if zc {
			name = "zerocopy"
		}
		b.Run(name, func(b *testing.B) { benchZerocopy(b, zc) })
	}
}

const (
	zcSegment  = 1200
	zcSegments = 52
	zcBuffers  = 16 // sends in flight with MSG_ZEROCOPY
)

func benchZerocopy(b *testing.B, zerocopy bool) {
	node, peer := twoHosts(b)
	const port = 9470
	var rx, tx int
	inNetns(b, peer, func() (err error) {
		if rx, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(rx, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		_ = unix.SetsockoptInt(rx, unix.SOL_UDP, unix.UDP_GRO, 1)
		_ = unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
		return unix.Bind(rx, &unix.SockaddrInet4{Port: port, Addr: ipv4.peer.As4()})
	})
	b.Cleanup(func() { unix.Close(rx) })
	inNetns(b, node, func() (err error) {
		if tx, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(tx, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20)
		if err := unix.SetsockoptInt(tx, unix.SOL_UDP, unix.UDP_SEGMENT, zcSegment); err != nil {
			return err
		}
		if zerocopy {
			if err := unix.SetsockoptInt(tx, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
				return err
			}
		}
		return unix.Connect(tx, &unix.SockaddrInet4{Port: port, Addr: ipv4.peer.As4()})
	})
	b.Cleanup(func() { unix.Close(tx) })

	// The receiver drains the peer's socket and counts the bytes.
	var received atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for !stop.Load() {
			n, _, err := unix.Recvfrom(rx, buf, 0)
			if err == nil {
				received.Add(int64(n))
			}
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()

	bufs := make([][]byte, zcBuffers)
	for i := range bufs {
		bufs[i] = make([]byte, zcSegment*zcSegments)
	}
	var c zcCompletions
	size := int64(len(bufs[0]))
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		flags := 0
		if zerocopy {
			flags = unix.MSG_ZEROCOPY
			// The buffer sent zcBuffers sends ago must be back.
			for uint32(i)-c.done >= zcBuffers {
				if err := c.wait(tx); err != nil {
					b.Fatal(err)
				}
			}
		}
		for retry := time.Now().Add(waitFor); ; {
			_, err := unix.SendmsgN(tx, bufs[i%zcBuffers], nil, nil, flags)
			if err == nil {
				break
			}
			if err != unix.ENOBUFS && err != unix.EAGAIN || time.Now().After(retry) {
				b.Fatalf("send: %v", err)
			}
			// Out of socket or option memory: let completions come back.
			if zerocopy {
				if err := c.wait(tx); err != nil {
					b.Fatal(err)
				}
			} else {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	for zerocopy && c.done < uint32(b.N) {
		if err := c.wait(tx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(received.Load())/b.Elapsed().Seconds()/1e6, "delivered-MB/s")
	time.Sleep(50 * time.Millisecond) // the receiver's last reads
	if received.Load() == 0 {
		b.Fatalf("none of %d sends reached the peer", b.N)
	}
	b.ReportMetric(float64(received.Load())/float64(int64(b.N)*size), "delivered/sent")
	if zerocopy {
		b.ReportMetric(float64(c.copied)/float64(max(c.done, 1)), "copied/completed")
	}
}

// zcCompletions reads MSG_ZEROCOPY completions from a socket's error
// queue. The kernel numbers a socket's zerocopy sends from 0 and reports
// ranges [lo, hi]; done is one past the highest completed (ranges arrive
// in order for one socket on this path).
type zcCompletions struct {
	done, copied uint32
}

// soEEOriginZerocopy and soEECodeZerocopyCopied are SO_EE_ORIGIN_ZEROCOPY
// and SO_EE_CODE_ZEROCOPY_COPIED from linux/errqueue.h.
const (
	soEEOriginZerocopy     = 5
	soEECodeZerocopyCopied = 1
)

// wait blocks until the error queue holds a completion, for a second at
// most, and reads what it holds.
func (c *zcCompletions) wait(fd int) error {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: 0}} // POLLERR comes regardless
	n, err := unix.Poll(pfd, 1000)
	if err != nil && err != unix.EINTR {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no zerocopy completion within 1 s (%d completed)", c.done)
	}
	oob := make([]byte, 128)
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd, nil, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			return nil
		}
		if err != nil {
			return err
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Level != unix.SOL_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				continue
			}
			ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
			if ee.Origin != soEEOriginZerocopy {
				continue
			}
			lo, hi := ee.Info, ee.Data
			if ee.Code&soEECodeZerocopyCopied != 0 {
				c.copied += hi - lo + 1
			}
			c.done = max(c.done, hi+1)
		}
	}
}
