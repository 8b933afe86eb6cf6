//go:build linux

package nstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrCorrupt is wrapped by a stream's error when its receiver read a byte
// other than the one the sender wrote at that offset: corruption, not a
// connection that ended.
var ErrCorrupt = errors.New("stream corrupted")

// StreamOptions tune a stream beyond its rate.
type StreamOptions struct {
	// UserTimeout, when set, is the sender's TCP_USER_TIMEOUT: the
	// connection is given up (ETIMEDOUT) when sent data stays
	// unacknowledged for that long, instead of retransmitting for
	// minutes. A stream that must notice an outage uses it.
	UserTimeout time.Duration
	// DialTimeout bounds the connect (10 s when zero).
	DialTimeout time.Duration
	// Patience is how long the sender may block on a write and the
	// receiver wait for a byte before the stream fails (10 s when
	// zero). TCP backs its retransmissions off exponentially: after
	// outages in a row, the first byte through can come later than 10 s.
	Patience time.Duration
}

// Stream is a paced TCP stream between two namespaces whose receiver
// checks every byte against the pattern the sender writes, so that a lost,
// duplicated, reordered or corrupted byte is seen (TCP would otherwise
// hide all but corruption from its user).
type Stream struct {
	ln       net.Listener
	conn     net.Conn
	rconn    net.Conn
	stop     chan struct{}
	patience time.Duration
	wg       sync.WaitGroup
	mu       sync.Mutex
	sent     int64
	verified int64
	err      error
}

// patternByte is the stream's byte at offset i: a position-dependent
// value, so that a byte at a wrong offset does not match.
func patternByte(i int64) byte { return byte(i*7 + i>>8 + i>>16) }

// StartStream connects src to dstAddr:port in dst and sends about rate
// bytes per second until Stop, in chunks of 16 KiB.
func StartStream(src, dst *Netns, dstAddr netip.Addr, port int, rate int64) (*Stream, error) {
	return StartStreamWith(src, dst, dstAddr, port, rate, StreamOptions{})
}

// StartStreamWith is StartStream with options.
func StartStreamWith(src, dst *Netns, dstAddr netip.Addr, port int, rate int64, opt StreamOptions) (*Stream, error) {
	s := &Stream{stop: make(chan struct{}), patience: 10 * time.Second}
	if opt.Patience > 0 {
		s.patience = opt.Patience
	}
	network := ipNetwork("tcp", dstAddr)
	if err := dst.Do(func() error {
		var err error
		s.ln, err = net.Listen(network, netip.AddrPortFrom(dstAddr, uint16(port)).String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("nstest: stream: listen in %s: %w", dst.Name, err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := s.ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	if err := src.Do(func() error {
		d := net.Dialer{Timeout: 10 * time.Second}
		if opt.DialTimeout > 0 {
			d.Timeout = opt.DialTimeout
		}
		if opt.UserTimeout > 0 {
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(opt.UserTimeout/time.Millisecond))
				})
				return errors.Join(err, serr)
			}
		}
		var err error
		s.conn, err = d.Dial(network, s.ln.Addr().String())
		return err
	}); err != nil {
		s.ln.Close()
		return nil, fmt.Errorf("nstest: stream: connect from %s: %w", src.Name, err)
	}
	var rc net.Conn
	select {
	case c, ok := <-accepted:
		if !ok {
			s.conn.Close()
			s.ln.Close()
			return nil, errors.New("nstest: stream: accept failed")
		}
		rc = c
		s.rconn = c
	case <-time.After(10 * time.Second):
		s.conn.Close()
		s.ln.Close()
		return nil, errors.New("nstest: stream: no connection accepted")
	}
	s.wg.Add(2)
	go s.send(rate)
	go s.receive(rc)
	return s, nil
}

func (s *Stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *Stream) send(rate int64) {
	defer s.wg.Done()
	buf := make([]byte, 16<<10)
	var off int64
	start := time.Now()
	for {
		select {
		case <-s.stop:
			s.conn.(*net.TCPConn).CloseWrite()
			return
		default:
		}
		// Paced: never ahead of rate since the start.
		if ahead := time.Duration(float64(off)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
		for i := range buf {
			buf[i] = patternByte(off + int64(i))
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.patience))
		n, err := s.conn.Write(buf)
		off += int64(n)
		s.mu.Lock()
		s.sent = off
		s.mu.Unlock()
		if err != nil {
			s.fail(fmt.Errorf("nstest: stream: write at %d: %w", off, err))
			return
		}
	}
}

func (s *Stream) receive(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	buf := make([]byte, 64<<10)
	var off int64
	for {
		c.SetReadDeadline(time.Now().Add(s.patience))
		n, err := c.Read(buf)
		for i := 0; i < n; i++ {
			if buf[i] != patternByte(off+int64(i)) {
				s.fail(fmt.Errorf("nstest: stream: byte %d is %#x, want %#x: %w", off+int64(i), buf[i], patternByte(off+int64(i)), ErrCorrupt))
				return
			}
		}
		off += int64(n)
		s.mu.Lock()
		s.verified = off
		s.mu.Unlock()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.fail(fmt.Errorf("nstest: stream: read at %d: %w", off, err))
			return
		}
	}
}

// Progress returns the bytes sent and verified so far.
func (s *Stream) Progress() (sent, verified int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.verified
}

// Err returns the first error either side met so far, nil while the
// stream is healthy.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Abort ends a stream at once, without waiting for the receiver to read
// what is in flight (for a stream already broken), and returns the bytes
// sent and verified and the first error either side met.
func (s *Stream) Abort() (sent, verified int64, err error) {
	close(s.stop)
	s.conn.Close()
	s.rconn.Close()
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.verified, s.err
}

// Stop ends the stream, waits for the receiver to read everything sent,
// and returns the bytes sent and verified and the first error either side
// met. A healthy stream has verified == sent and no error.
func (s *Stream) Stop() (sent, verified int64, err error) {
	close(s.stop)
	s.wg.Wait()
	s.conn.Close()
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.verified, s.err
}
