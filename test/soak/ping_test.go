package soak

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// pinger sends an ICMP echo request every interval from one pod to
// another and records, for every request, when it left and whether it was
// answered. Its own loop rather than ping(8): the send time of every
// request is known exactly, so loss and gaps can be cut at the edges of
// a fault's window, and the 64-bit sequence in the payload never wraps.
type pinger struct {
	name     string
	conn     *net.IPConn
	dst      *net.IPAddr
	id       uint16
	interval time.Duration
	v6       bool // ICMPv6 echo, whose checksum the kernel fills in

	mu   sync.Mutex
	sent []time.Time
	rcvd []bool

	stop chan struct{}
	wg   sync.WaitGroup
}

func startPinger(name string, src *nstest.Netns, dst netip.Addr, id uint16, interval time.Duration) (*pinger, error) {
	p := &pinger{name: name, dst: &net.IPAddr{IP: dst.AsSlice()}, id: id, interval: interval, v6: dst.Is6(), stop: make(chan struct{})}
	network, any := "ip4:icmp", "0.0.0.0"
	if p.v6 {
		network, any = "ip6:ipv6-icmp", "::"
	}
	if err := src.Do(func() error {
		c, err := net.ListenPacket(network, any)
		if err != nil {
			return err
		}
		p.conn = c.(*net.IPConn)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pinger %s: %w", name, err)
	}
	p.wg.Add(2)
	go p.send()
	go p.receive()
	return p, nil
}

func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func (p *pinger) send() {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	msg := make([]byte, 64)
	for seq := uint64(0); ; seq++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		clear(msg)
		msg[0] = 8 // echo request
		if p.v6 {
			msg[0] = 128
		}
		binary.BigEndian.PutUint16(msg[4:], p.id)
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		binary.BigEndian.PutUint64(msg[8:], seq)
		if !p.v6 {
			binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		}
		p.mu.Lock()
		p.sent = append(p.sent, time.Now())
		p.rcvd = append(p.rcvd, false)
		p.mu.Unlock()
		// A send error (no route while an agent restarts) is a lost
		// request like any other.
		p.conn.SetWriteDeadline(time.Now().Add(time.Second))
		p.conn.WriteTo(msg, p.dst)
	}
}

func (p *pinger) receive() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		p.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		// The socket sees every ICMP message of the namespace: only echo
		// replies to this pinger, from its destination, count.
		reply := byte(0)
		if p.v6 {
			reply = 129
		}
		if n < 16 || buf[0] != reply || binary.BigEndian.Uint16(buf[4:]) != p.id {
			continue
		}
		if a, ok := from.(*net.IPAddr); !ok || !a.IP.Equal(p.dst.IP) {
			continue
		}
		seq := binary.BigEndian.Uint64(buf[8:])
		p.mu.Lock()
		if seq < uint64(len(p.rcvd)) {
			p.rcvd[seq] = true
		}
		p.mu.Unlock()
	}
}

// close stops the pinger; requests sent in the last second may still be
// in flight and are ignored by the figures.
func (p *pinger) close() {
	close(p.stop)
	p.wg.Wait()
	p.conn.Close()
}

// pingFigures are loss and gap over a span of time.
type pingFigures struct {
	Sent    int           `json:"sent"`
	Lost    int           `json:"lost"`
	MaxGap  time.Duration `json:"max_gap_ns"`
	LastBad time.Time     `json:"-"` // send time of the last lost request
}

// figures returns loss and the longest gap between answered requests
// (by send time) with lost ones between them, over [from, to]: an outage.
// A gap without a loss is the sender not being scheduled, not the
// overlay, and is left out. A gap that starts before from and ends inside
// counts. Requests sent after cutoff are left out: their answers may
// still be on the way.
func (p *pinger) figures(from, to, cutoff time.Time) pingFigures {
	p.mu.Lock()
	defer p.mu.Unlock()
	var f pingFigures
	var lastOK time.Time
	lostSince := false // a request since lastOK went unanswered
	for i, ts := range p.sent {
		if ts.After(cutoff) || ts.After(to) {
			break
		}
		if p.rcvd[i] {
			if lostSince && !ts.Before(from) && !lastOK.IsZero() {
				if g := ts.Sub(lastOK); g > f.MaxGap {
					f.MaxGap = g
				}
			}
			lastOK, lostSince = ts, false
		} else {
			lostSince = true
		}
		if ts.Before(from) {
			continue
		}
		f.Sent++
		if !p.rcvd[i] {
			f.Lost++
			f.LastBad = ts
		}
	}
	return f
}
