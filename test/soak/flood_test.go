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

// The small-packet load: 64-byte IPv4 packets (36 bytes of UDP payload)
// from one pod to another across nodes, as many as the sender manages up
// to SOAK_UDP_PPS, every one numbered so that the receiver counts what
// arrived, twice, or changed.
var floodDefs = []flowDef{{1, 1, 3, 1}}

const (
	floodPort    = 7000
	floodPayload = 64 - 20 - 8
)

// flood is the sender and receiver of the small-packet load.
type flood struct {
	Name  string
	rate  int
	tx    *net.UDPConn
	rx    *net.UDPConn
	stop  chan struct{} // ends the sender
	done  chan struct{} // ends the receiver
	wg    sync.WaitGroup
	start time.Time
	end   time.Time

	mu        sync.Mutex
	sent      uint64
	sendErrs  uint64
	seen      []uint64 // a bit per sequence number
	delivered uint64
	dups      uint64
	corrupt   uint64
}

func floodByte(seq uint64, i int) byte { return byte(seq>>uint(8*(i%8))) ^ byte(i*31) }

func startFlood(src, dst *nstest.Netns, dstAddr netip.Addr, pps int, name string) (*flood, error) {
	f := &flood{Name: name, rate: pps, stop: make(chan struct{}), done: make(chan struct{})}
	if err := dst.Do(func() error {
		var err error
		f.rx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dstAddr, floodPort)))
		if err == nil {
			f.rx.SetReadBuffer(4 << 20)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("flood receiver in %s: %w", dst.Name, err)
	}
	if err := src.Do(func() error {
		var err error
		f.tx, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dstAddr, floodPort)))
		return err
	}); err != nil {
		f.rx.Close()
		return nil, fmt.Errorf("flood sender in %s: %w", src.Name, err)
	}
	f.start = time.Now()
	f.wg.Add(2)
	go f.send()
	go f.receive()
	return f, nil
}

// send writes bursts of up to 256 packets, never ahead of rate since the
// start: on a machine that cannot keep up it sends what it can.
func (f *flood) send() {
	defer f.wg.Done()
	buf := make([]byte, floodPayload)
	var seq uint64
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		due := uint64(time.Since(f.start).Seconds() * float64(f.rate))
		if seq >= due {
			time.Sleep(time.Millisecond)
			continue
		}
		for n := 0; seq < due && n < 256; n++ {
			binary.BigEndian.PutUint64(buf, seq)
			for i := 8; i < len(buf); i++ {
				buf[i] = floodByte(seq, i)
			}
			f.tx.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			// Counted before it leaves, so that the receiver never sees
			// a number not yet counted as sent.
			f.mu.Lock()
			f.sent = seq + 1
			f.mu.Unlock()
			if _, err := f.tx.Write(buf); err != nil {
				f.mu.Lock()
				f.sendErrs++
				f.mu.Unlock()
			}
			seq++
		}
	}
}

func (f *flood) mark(seq uint64) bool {
	w := seq / 64
	for uint64(len(f.seen)) <= w {
		f.seen = append(f.seen, 0)
	}
	if f.seen[w]&(1<<(seq%64)) != 0 {
		return false
	}
	f.seen[w] |= 1 << (seq % 64)
	return true
}

func (f *flood) receive() {
	defer f.wg.Done()
	buf := make([]byte, 2048)
	for {
		select {
		case <-f.done:
			return
		default:
		}
		f.rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := f.rx.Read(buf)
		if err != nil {
			continue
		}
		f.mu.Lock()
		ok := n == floodPayload
		var seq uint64
		if ok {
			seq = binary.BigEndian.Uint64(buf)
			for i := 8; i < n && ok; i++ {
				ok = buf[i] == floodByte(seq, i)
			}
			ok = ok && seq < f.sent
		}
		switch {
		case !ok:
			f.corrupt++
		case !f.mark(seq):
			f.dups++
		default:
			f.delivered++
		}
		f.mu.Unlock()
	}
}

// floodReport is the small-packet load's figures.
type floodReport struct {
	Name       string  `json:"name"`
	AskedPPS   int     `json:"asked_pps"`
	SentPPS    float64 `json:"sent_pps"`
	Sent       uint64  `json:"sent"`
	SendErrors uint64  `json:"send_errors"`
	Delivered  uint64  `json:"delivered"`
	Lost       uint64  `json:"lost"`
	Duplicates uint64  `json:"duplicates"`
	Corrupt    uint64  `json:"corrupt"`
}

// close stops sending, lets the last packets arrive and returns the
// figures.
func (f *flood) close() floodReport {
	close(f.stop)
	f.end = time.Now()
	time.Sleep(300 * time.Millisecond)
	close(f.done)
	f.wg.Wait()
	f.tx.Close()
	f.rx.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	r := floodReport{Name: f.Name, AskedPPS: f.rate, Sent: f.sent, SendErrors: f.sendErrs,
		Delivered: f.delivered, Duplicates: f.dups, Corrupt: f.corrupt}
	r.Lost = r.Sent - min(r.Sent, r.Delivered)
	r.SentPPS = float64(r.Sent) / f.end.Sub(f.start).Seconds()
	return r
}
