package soak

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// garbageKinds name what the evil host sends, in the order it cycles
// through them.
var garbageKinds = []string{
	"random-udp",      // random bytes to the tunnel port, from evil's own address
	"mutated-vxlan",   // a valid VXLAN packet from a spoofed node, 1-4 bytes flipped
	"bad-flags-vxlan", // VXLAN from a spoofed node with random header flags
	"mutated-ipv6",    // VXLAN carrying an IPv6 inner packet, bytes flipped
	"truncated",       // 0-15 bytes of UDP payload: shorter than any header
	"mutated-geneve",  // a valid Geneve packet with 0-3 options from a spoofed node, 1-4 bytes flipped
	"random-geneve",   // a Geneve header with a random options area (lengths, classes, critical bits) from a spoofed node
}

// garbage is the evil host: an IPPROTO_RAW socket that writes forged IPv4
// datagrams to the nodes' tunnel port at a bounded rate, never more than
// max packets in all.
type garbage struct {
	fd      int
	nodes   []netip.Addr
	self    netip.Addr
	rate    int
	max     int
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	sent    map[string]int
	sendErr int
	// fate says when a packet's fate is the faults' (see garbageFate);
	// fates counts those packets by why.
	fate  func(dst, src netip.Addr, spoofed bool) string
	fates map[string]int
}

// startGarbage opens evil's socket; run starts the steady stream.
func startGarbage(lab *nstest.TestLab, evil *nstest.Netns, self netip.Addr, nodes []netip.Addr, rate, max int,
	fate func(dst, src netip.Addr, spoofed bool) string) (*garbage, error) {
	g := &garbage{fd: -1, nodes: nodes, self: self, rate: rate, max: max, stop: make(chan struct{}), sent: map[string]int{},
		fate: fate, fates: map[string]int{}}
	if err := evil.Do(func() error {
		var err error
		g.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		return unix.SetsockoptTimeval(g.fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 100000})
	}); err != nil {
		return nil, fmt.Errorf("evil raw socket: %w", err)
	}
	// The socket pins evil's namespace: it goes before the namespaces.
	fd := g.fd
	lab.Defer("close the evil raw socket", func() error { return unix.Close(fd) })
	return g, nil
}

// start sends garbage at the rate until close or max packets.
func (g *garbage) start() {
	if g.rate > 0 {
		g.wg.Add(1)
		go g.run()
	}
}

// burst sends count packets of one kind at pps, outside the steady
// stream and its counts, and returns how many the kernel took.
func (g *garbage) burst(kind string, count, pps int) int {
	rng := rand.New(rand.NewPCG(3, uint64(len(kind))))
	sent := 0
	start := time.Now()
	for i := range count {
		if ahead := time.Duration(float64(i)/float64(pps)*float64(time.Second)) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
		pkt, _, _ := g.forge(rng, kind)
		if unix.Sendto(g.fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}) == nil {
			sent++
		}
	}
	return sent
}

func (g *garbage) run() {
	defer g.wg.Done()
	rng := rand.New(rand.NewPCG(1, 2))
	// Sent in bursts every 10 ms: the rate holds without a timer per
	// packet.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	perTick := max(1, g.rate/100)
	total := 0
	for total < g.max {
		select {
		case <-g.stop:
			return
		case <-tick.C:
		}
		for range perTick {
			kind := garbageKinds[total%len(garbageKinds)]
			pkt, src, spoofed := g.forge(rng, kind)
			fate := g.fate(netip.AddrFrom4([4]byte(pkt[16:20])), src, spoofed)
			err := unix.Sendto(g.fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])})
			g.mu.Lock()
			if err != nil {
				g.sendErr++
			} else {
				g.sent[kind]++
				if fate != "" {
					g.fates[fate]++
				}
			}
			g.mu.Unlock()
			total++
		}
	}
}

// forge builds one packet of the kind to a random node, and says which
// address it comes from and whether that is a node's, spoofed.
func (g *garbage) forge(rng *rand.Rand, kind string) (pkt []byte, from netip.Addr, spoofed bool) {
	dst := g.nodes[rng.IntN(len(g.nodes))]
	// A spoofed source is another node: the packet passes the tunnel
	// source check and reaches the parser.
	src := g.nodes[rng.IntN(len(g.nodes))]
	if src == dst {
		src = g.nodes[(rng.IntN(len(g.nodes)-1)+1+indexOf(g.nodes, dst))%len(g.nodes)]
	}
	dstMAC := nodeMAC(dst)
	srcMAC := nodeMAC(src)
	dstPod := netip.AddrFrom4([4]byte{10, 1, dst.As4()[3], 10})
	srcPod := netip.AddrFrom4([4]byte{10, 1, src.As4()[3], 10})
	var payload []byte
	outerSrc := src
	switch kind {
	case "random-udp":
		outerSrc = g.self
		payload = make([]byte, 8+rng.IntN(200))
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
	case "mutated-vxlan":
		inner := pkttest.IPv4{Src: srcPod, Dst: dstPod, ID: 0x6666}.UDP(6666, 7777, []byte("soak-garbage"))
		payload = pkttest.VXLAN(vniOf(src), pkttest.Ethernet(dstMAC, srcMAC, 0x0800, inner))
		flip(rng, payload, 1+rng.IntN(4))
	case "bad-flags-vxlan":
		inner := pkttest.IPv4{Src: srcPod, Dst: dstPod, ID: 0x6666}.UDP(6666, 7777, []byte("soak-garbage"))
		payload = pkttest.VXLANWords(rng.Uint32()&^0x08000000|uint32(rng.IntN(2))<<27, vniOf(src)<<8, pkttest.Ethernet(dstMAC, srcMAC, 0x0800, inner))
	case "mutated-ipv6":
		inner := pkttest.IPv6{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2")}.UDP(6666, 7777, []byte("soak-garbage"))
		payload = pkttest.VXLAN(vniOf(src), pkttest.Ethernet(dstMAC, srcMAC, 0x86dd, inner))
		flip(rng, payload[8:], 1+rng.IntN(4))
	case "mutated-geneve":
		inner := pkttest.IPv4{Src: srcPod, Dst: dstPod, ID: 0x6666}.UDP(6666, 7777, []byte("soak-garbage"))
		var opts []encap.GeneveOption
		for range rng.IntN(4) {
			data := make([]byte, 4*rng.IntN(4))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			opts = append(opts, encap.GeneveOption{Class: uint16(rng.Uint32()), Type: uint8(rng.IntN(128)), Data: data})
		}
		payload = pkttest.Geneve(vniOf(src), opts, pkttest.Ethernet(dstMAC, srcMAC, 0x0800, inner))
		flip(rng, payload, 1+rng.IntN(4))
	case "random-geneve":
		inner := pkttest.IPv4{Src: srcPod, Dst: dstPod, ID: 0x6666}.UDP(6666, 7777, []byte("soak-garbage"))
		hdr := pkttest.Geneve(vniOf(src), nil, nil)
		// Version 0, an options length of 0-63 words filled with random
		// bytes, and random O and C bits: the option walk meets every
		// length, class and critical bit, and lengths past the area.
		words := rng.IntN(64)
		hdr[0] = byte(words)
		hdr[1] = byte(rng.IntN(4)) << 6
		area := make([]byte, 4*words)
		for i := range area {
			area[i] = byte(rng.Uint32())
		}
		payload = slices.Concat(hdr, area, pkttest.Ethernet(dstMAC, srcMAC, 0x0800, inner))
	case "truncated":
		payload = make([]byte, rng.IntN(16))
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
	}
	return pkttest.NoUDPChecksum(pkttest.IPv4{Src: outerSrc, Dst: dst, ID: 0x6666}.UDP(uint16(40000+rng.IntN(20000)), tunnelPort, payload)),
		outerSrc, outerSrc != g.self
}

func flip(rng *rand.Rand, b []byte, n int) {
	for range n {
		b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
	}
}

func indexOf(s []netip.Addr, a netip.Addr) int {
	for i, x := range s {
		if x == a {
			return i
		}
	}
	return 0
}

// nodeMAC is a node's tunnel MAC: 02:58 and its IPv4 address.
func nodeMAC(a netip.Addr) [6]byte {
	b := a.As4()
	return [6]byte{0x02, 0x58, b[0], b[1], b[2], b[3]}
}

// vniOf is the VNI a packet from a pod of node src carries: the pods'
// identities (see podIdentity) of its first pod.
func vniOf(src netip.Addr) uint32 { return uint32(podIdentity(int(src.As4()[3]), 0)) }

// close stops sending and returns what was sent by kind, the sends the
// kernel refused, and the packets whose fate the faults decided, by why.
func (g *garbage) close() (map[string]int, int, map[string]int) {
	close(g.stop)
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent, g.sendErr, g.fates
}
