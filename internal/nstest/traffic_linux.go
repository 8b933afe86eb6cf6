//go:build linux

package nstest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"sync"
	"time"
)

// TCPTransfer sends n bytes of pseudo-random data from a socket in src to a
// listener it opens in dst on dstAddr:port (port 0 picks a free one). The
// receiver hashes what it got with SHA-256 and the result is compared with
// what was sent. Everything, including connection setup, is bounded by
// timeout. It returns the goodput in bytes per second, measured from the
// start of the connect until the receiver has read the last byte. It fails if
// the data arrives short, corrupted, or not within timeout.
func TCPTransfer(src, dst *Netns, dstAddr netip.Addr, port int, n int64, timeout time.Duration) (float64, error) {
	if n < 0 {
		return 0, fmt.Errorf("nstest: TCPTransfer: negative size %d", n)
	}
	if !dstAddr.IsValid() || dstAddr.IsUnspecified() {
		return 0, fmt.Errorf("nstest: TCPTransfer: need a concrete destination address, got %v", dstAddr)
	}
	if port < 0 || port > 65535 {
		return 0, fmt.Errorf("nstest: TCPTransfer: bad port %d", port)
	}
	deadline := time.Now().Add(timeout)
	network := ipNetwork("tcp", dstAddr)

	var ln *net.TCPListener
	err := dst.Do(func() error {
		var err error
		ln, err = net.ListenTCP(network, net.TCPAddrFromAddrPort(netip.AddrPortFrom(dstAddr, uint16(port))))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("nstest: TCPTransfer: listen in %s: %w", dst.Name, err)
	}
	defer ln.Close()
	ln.SetDeadline(deadline)
	target := ln.Addr().(*net.TCPAddr).AddrPort()

	type result struct {
		n   int64
		sum [sha256.Size]byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		defer func() { got <- r }()
		c, err := ln.Accept()
		// One connection is all we want; refuse anything else.
		ln.Close()
		if err != nil {
			r.err = fmt.Errorf("accept: %w", err)
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		h := sha256.New()
		r.n, r.err = io.Copy(h, c)
		h.Sum(r.sum[:0])
	}()

	start := time.Now()
	var conn *net.TCPConn
	err = src.Do(func() error {
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial(network, target.String())
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		return nil
	})
	if err != nil {
		ln.Close()
		<-got
		return 0, fmt.Errorf("nstest: TCPTransfer: connect from %s to %s: %w", src.Name, target, err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)

	sent, sentSum, werr := sendRandom(conn, n)
	if werr == nil {
		werr = conn.CloseWrite()
	}
	if werr != nil {
		// Unblock the receiver promptly instead of waiting for the deadline.
		conn.Close()
	}
	r := <-got
	elapsed := time.Since(start)

	switch {
	case werr != nil:
		return 0, fmt.Errorf("nstest: TCPTransfer: sent %d of %d bytes: %w", sent, n, werr)
	case r.err != nil:
		return 0, fmt.Errorf("nstest: TCPTransfer: receiver got %d of %d bytes: %w", r.n, n, r.err)
	case r.n != n:
		return 0, fmt.Errorf("nstest: TCPTransfer: short transfer: received %d of %d bytes", r.n, n)
	case r.sum != sentSum:
		return 0, fmt.Errorf("nstest: TCPTransfer: data corrupted: sha256 sent %x, received %x", sentSum, r.sum)
	}
	if elapsed <= 0 {
		elapsed = time.Nanosecond
	}
	return float64(n) / elapsed.Seconds(), nil
}

// sendRandom writes n bytes from a freshly seeded ChaCha8 stream, returning
// how much was written and the SHA-256 of it. The data is generated in chunks
// so memory use does not grow with n.
func sendRandom(w io.Writer, n int64) (int64, [sha256.Size]byte, error) {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	rng := rand.NewChaCha8(seed)
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var sent int64
	var sum [sha256.Size]byte
	for sent < n {
		chunk := buf[:min(int64(len(buf)), n-sent)]
		rng.Read(chunk)
		h.Write(chunk)
		m, err := w.Write(chunk)
		sent += int64(m)
		if err != nil {
			return sent, sum, err
		}
	}
	h.Sum(sum[:0])
	return sent, sum, nil
}

// UDPEcho is a UDP server inside a namespace that sends every datagram back
// to its sender and remembers who the senders were.
type UDPEcho struct {
	conn *net.UDPConn
	done chan struct{}

	mu    sync.Mutex
	peers []netip.AddrPort
	count int
}

// maxEchoPeers bounds the sender list an echo server keeps.
const maxEchoPeers = 10000

// StartUDPEcho opens a UDP socket on addr inside ns (port 0 picks a free one)
// and echoes datagrams until Close, which the lab's teardown also calls.
func StartUDPEcho(ns *Netns, addr netip.AddrPort) (*UDPEcho, error) {
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP(ipNetwork("udp", addr.Addr()), net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nstest: UDP echo in %s on %s: %w", ns.Name, addr, err)
	}
	e := &UDPEcho{conn: conn, done: make(chan struct{})}
	go e.serve()
	if ns.lab != nil {
		ns.lab.pushUndo("close UDP echo on "+e.Addr().String()+" in "+ns.Name, func() error {
			e.Close()
			return nil
		})
	}
	return e, nil
}

func (e *UDPEcho) serve() {
	defer close(e.done)
	buf := make([]byte, 65536)
	for {
		m, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. an ICMP error queued on the socket); the pause
			// keeps a persistent error from spinning a CPU.
			time.Sleep(time.Millisecond)
			continue
		}
		e.mu.Lock()
		e.count++
		if len(e.peers) < maxEchoPeers {
			e.peers = append(e.peers, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		}
		e.mu.Unlock()
		e.conn.WriteToUDPAddrPort(buf[:m], from)
	}
}

// Addr returns the address the server listens on.
func (e *UDPEcho) Addr() netip.AddrPort {
	a := e.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Peers returns the source address of every datagram received so far (the
// first 10000).
func (e *UDPEcho) Peers() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.peers...)
}

// Count returns how many datagrams were received.
func (e *UDPEcho) Count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count
}

// Close stops the server and waits for it to finish. It is idempotent.
func (e *UDPEcho) Close() {
	e.conn.Close()
	<-e.done
}

// UDPExchange sends payload from a fresh socket in src to a one-off echo
// server it opens in dst on dstAddr:port, and waits for the payload to come
// back unchanged. The datagram is retransmitted up to 5 times within timeout
// to ride out a lost packet (e.g. while neighbours resolve). It returns the
// source address the server saw, which shows any translation on the path.
func UDPExchange(src, dst *Netns, dstAddr netip.Addr, port int, payload []byte, timeout time.Duration) (netip.AddrPort, error) {
	if port < 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("nstest: UDPExchange: bad port %d", port)
	}
	if !dstAddr.IsValid() || dstAddr.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("nstest: UDPExchange: need a concrete destination address, got %v", dstAddr)
	}
	deadline := time.Now().Add(timeout)
	echo, err := StartUDPEcho(dst, netip.AddrPortFrom(dstAddr, uint16(port)))
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer echo.Close()
	target := echo.Addr()

	var conn *net.UDPConn
	err = src.Do(func() error {
		var err error
		conn, err = net.DialUDP(ipNetwork("udp", dstAddr), nil, net.UDPAddrFromAddrPort(target))
		return err
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("nstest: UDPExchange: socket in %s: %w", src.Name, err)
	}
	defer conn.Close()

	const tries = 5
	step := timeout / tries
	buf := make([]byte, 65536)
	var lastErr error
	for try := 0; try < tries && time.Now().Before(deadline); try++ {
		if _, err := conn.Write(payload); err != nil {
			// ECONNREFUSED from an earlier ICMP error and the like: note it
			// and retry, the path may still be settling.
			lastErr = err
		}
		conn.SetReadDeadline(minTime(deadline, time.Now().Add(step)))
		for {
			m, err := conn.Read(buf)
			if err != nil {
				lastErr = err
				break
			}
			if !bytes.Equal(buf[:m], payload) {
				lastErr = fmt.Errorf("reply of %d bytes differs from the %d bytes sent", m, len(payload))
				continue
			}
			local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			for _, p := range echo.Peers() {
				if p.Port() == local.Port() {
					return p, nil
				}
			}
			if peers := echo.Peers(); len(peers) > 0 {
				return peers[len(peers)-1], nil
			}
			return netip.AddrPort{}, errors.New("nstest: UDPExchange: echo replied but recorded no sender")
		}
		if !isTimeout(lastErr) && time.Now().Before(deadline) {
			// A fast failure (ICMP unreachable): pace the retries anyway.
			time.Sleep(min(step, time.Until(deadline)))
		}
	}
	return netip.AddrPort{}, fmt.Errorf("nstest: UDPExchange %s -> %s (%s): no echo within %v (server saw %d datagrams): %v",
		src.Name, target, dst.Name, timeout, echo.Count(), lastErr)
}

// Ping runs `ping args...` inside ns and returns its combined output. The
// caller passes the count and timeout flags (-c, -W); the whole run is still
// capped at 30 s.
func Ping(ns *Netns, args ...string) (string, error) {
	if _, err := exec.LookPath("ping"); err != nil {
		return "", fmt.Errorf("nstest: ping is not installed (apt-get install iputils-ping): %w", err)
	}
	return ns.Run(append([]string{"ping"}, args...)...)
}

// ipNetwork picks "tcp4"/"udp4" or "tcp6"/"udp6" so that sockets are of the
// address's own family rather than dual-stack.
func ipNetwork(proto string, a netip.Addr) string {
	if a.Unmap().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
