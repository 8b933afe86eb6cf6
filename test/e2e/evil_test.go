package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// The hostile-input topology: node1 and node2 run agents; evil is a third
// host on the same underlay segment. A bridge in a "switch" namespace
// joins them, so evil's frames reach node1 exactly as a peer's would.
//
//	pod1a 10.1.1.10 (1000)  pod1b 10.1.1.11 (1001)      pod2a 10.1.2.20 (2000)
//	            \              /                                  |
//	       node1 10.169.72.233 ---- br0 (switch) ---- node2 10.169.72.238
//	                                  |
//	                         evil 10.169.72.66
const (
	evilNode1IP = "10.169.72.233"
	evilNode2IP = "10.169.72.238"
	evilSelfIP  = "10.169.72.66"
	evilPort    = 8472
)

// evilMarker starts the payload of every inner packet the attacker
// forges, so a capture in a pod can tell them from legitimate traffic.
const evilMarker = "EVIL"

var (
	// Inner Ethernet sources: node2's tunnel MAC (what a forged "node2"
	// packet would carry) and one of the attacker's own.
	evilNode2MAC = [6]byte{0x02, 0x58, 10, 169, 72, 238}
	evilOwnMAC   = [6]byte{0x02, 0x66, 0x66, 0x66, 0x66, 0x66}
	evilNode1MAC = [6]byte{0x02, 0x58, 10, 169, 72, 233}
)

// evilIP is the IPv4 header of every packet the attacker forges.
func evilIP(src, dst string) pkttest.IPv4 {
	return pkttest.IPv4{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), ID: 0x6666}
}

// evilInner builds the inner IPv4/UDP packet 10.x:6666 -> 10.x:7777 with
// correct checksums, carrying the marker and a tag naming the case.
func evilInner(src, dst, tag string) []byte {
	return evilIP(src, dst).UDP(6666, 7777, []byte(evilMarker+"-"+tag))
}

// evilVXLAN builds a UDP payload: a VXLAN header with the raw first word
// word0, the VNI and the last (reserved) byte, then an inner Ethernet
// header from srcMAC to node1's tunnel MAC and l3.
func evilVXLAN(word0, vni uint32, last byte, srcMAC [6]byte, etherType uint16, l3 []byte) []byte {
	return pkttest.VXLANWords(word0, vni<<8|uint32(last), pkttest.Ethernet(evilNode1MAC, srcMAC, etherType, l3))
}

const vxlanI = 0x08000000

// evilGood is a VXLAN payload that node1 would deliver to dst if it came
// from node2: VNI 1000, node2's MAC, an inner packet from pod2a.
func evilGood(dst, tag string) []byte {
	return evilVXLAN(vxlanI, 1000, 0, evilNode2MAC, 0x0800, evilInner("10.1.2.20", dst, tag))
}

// evilOuter wraps a UDP payload in IPv4/UDP from src to node1's tunnel
// port. The UDP checksum is 0 ("none"), which IPv4 allows and VXLAN
// senders use.
func evilOuter(src string, sport uint16, payload []byte) []byte {
	return pkttest.NoUDPChecksum(evilIP(src, evilNode1IP).UDP(sport, evilPort, payload))
}

// rawSender is an IPPROTO_RAW socket (IP_HDRINCL): the kernel sends the
// IPv4 header as given, forged source address included.
type rawSender struct {
	fd int
}

func openRaw(t *testing.T, lab *nstest.TestLab, ns *nstest.Netns) *rawSender {
	t.Helper()
	fd := -1
	must(t, ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		// A send that cannot get buffer space gives up rather than hang
		// the test.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 1})
	}))
	// The socket pins its namespace: close it before the namespaces go.
	lab.Defer("close raw socket in "+ns.Name, func() error { return unix.Close(fd) })
	return &rawSender{fd: fd}
}

func (r *rawSender) send(pkt []byte) error {
	return unix.Sendto(r.fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])})
}

func (r *rawSender) sendAll(t *testing.T, pkts ...[]byte) {
	t.Helper()
	for _, p := range pkts {
		if err := r.send(p); err != nil {
			t.Fatalf("raw send of %d bytes: %v", len(p), err)
		}
		// Paced, so that no kernel queue between evil and node1 can drop
		// them and the counters can be held to the exact number sent.
		time.Sleep(time.Millisecond)
	}
}

// expectDrops waits until the counter reason on the agent at sock has
// risen by at least n since before, and fails the test if it does not
// within a few seconds. Every other counter that moved is logged, so a
// packet dropped for an unexpected reason shows which.
func expectDrops(t *testing.T, sock, reason string, before map[string]int, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := allDrops(t, sock)
		got := now[reason] - before[reason]
		if got >= n || time.Now().After(deadline) {
			var moved []string
			for k, v := range now {
				if d := v - before[k]; d != 0 {
					moved = append(moved, fmt.Sprintf("%s+%d", k, d))
				}
			}
			if got < n {
				t.Errorf("%s rose by %d, want at least %d (counters that moved: %v)", reason, got, n, moved)
			} else {
				t.Logf("%s +%d (sent %d); moved: %v", reason, got, n, moved)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// underlayRx returns the agent's received and driver-dropped packet
// counts of its underlay devices.
func underlayRx(t *testing.T, sock string) (rx, driverDropped int) {
	t.Helper()
	var st struct {
		Devices []struct {
			Kind            string `json:"kind"`
			RxPackets       int    `json:"rx_packets"`
			DriverRxDropped int    `json:"driver_rx_dropped"`
		} `json:"devices"`
	}
	readStats(t, sock, &st)
	for _, d := range st.Devices {
		if d.Kind == "underlay" {
			rx += d.RxPackets
			driverDropped += d.DriverRxDropped
		}
	}
	return rx, driverDropped
}

// udpInDatagrams reads the kernel's count of UDP datagrams delivered to
// sockets in ns (Udp InDatagrams of /proc/net/snmp).
func udpInDatagrams(t *testing.T, ns *nstest.Netns) int {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := range f {
			if i < len(names) && names[i] == "InDatagrams" {
				n, err := strconv.Atoi(f[i])
				must(t, err)
				return n
			}
		}
	}
	t.Fatalf("no Udp InDatagrams in /proc/net/snmp:\n%s", out)
	return 0
}

// vmRSS reads the resident set size of pid in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, err := strconv.ParseInt(string(m[1]), 10, 64)
	must(t, err)
	return kb << 10
}

// TestHostileInput sends node1 forged, malformed and flooding tunnel
// traffic from a host on its underlay, and forged traffic from one of its
// own pods. Each kind must be dropped and counted under its reason, none
// may reach a pod, and the agent must stay up, responsive and bounded in
// memory.
func TestHostileInput(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	sw := lab.Netns("switch")
	node1 := lab.Netns("node1")
	node2 := lab.Netns("node2")
	evil := lab.Netns("evil")
	pod1a := lab.Netns("pod1a")
	pod1b := lab.Netns("pod1b")
	pod2a := lab.Netns("pod2a")
	underlaySwitch(t, lab, sw, []*nstest.Netns{node1, node2, evil}, []string{evilNode1IP + "/24", evilNode2IP + "/24", evilSelfIP + "/24"})

	nodeConfig := func(name, ip, cidr, peer, peerIP, peerCIDR, endpoints string) string {
		path := filepath.Join(dir, name+".yaml")
		write(t, path, fmt.Sprintf(`state-dir: `+filepath.Join(dir, "state")+`
node-name: %s
node-ip: %s
pod-cidr: %s
routing-mode: tunnel
tunnel-protocol: vxlan
tunnel-port: %d
cluster-pool-ipv4-cidr: 10.1.0.0/16
nodes:
  - {name: %s, ip: %s, pod-cidr: %s}
endpoints:%s
`, name, ip, cidr, evilPort, peer, peerIP, peerCIDR, endpoints))
		return path
	}
	cfg1 := nodeConfig("node1", evilNode1IP, "10.1.1.0/24", "node2", evilNode2IP, "10.1.2.0/24", fmt.Sprintf(`
  - {name: pod1a, ip: 10.1.1.10, netns: %s, identity: 1000}
  - {name: pod1b, ip: 10.1.1.11, netns: %s, identity: 1001}`, pod1a.Path, pod1b.Path))
	cfg2 := nodeConfig("node2", evilNode2IP, "10.1.2.0/24", "node1", evilNode1IP, "10.1.1.0/24", fmt.Sprintf(`
  - {name: pod2a, ip: 10.1.2.20, netns: %s, identity: 2000}`, pod2a.Path))
	sock1 := filepath.Join(dir, "node1.sock")
	sock2 := filepath.Join(dir, "node2.sock")
	agent1 := lab.Start(node1, "agent1", vxdpBin, "agent", "--config", cfg1, "--socket", sock1, "--log-level", "info")
	agent2 := lab.Start(node2, "agent2", vxdpBin, "agent", "--config", cfg2, "--socket", sock2, "--log-level", "info")
	waitAgent(t, agent1, sock1)
	waitAgent(t, agent2, sock2)

	// The overlay works before the attack starts.
	if out, err := nstest.Ping(pod2a, "-c", "3", "-i", "0.2", "-W", "2", "10.1.1.10"); err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("pod2a -> pod1a before the attack: %v\n%s", err, out)
	}
	// evil learns node1's MAC now, so no forged packet waits for ARP.
	if out, err := nstest.Ping(evil, "-c", "1", "-W", "2", evilNode1IP); err != nil {
		t.Fatalf("evil -> node1: %v\n%s", err, out)
	}

	// Everything the pods receive from here on is recorded.
	captures := map[string]*nstest.Capture{}
	for name, ns := range map[string]*nstest.Netns{"pod1a": pod1a, "pod1b": pod1b, "pod2a": pod2a} {
		c, err := nstest.StartCapture(ns, "eth0")
		must(t, err)
		captures[name] = c
	}
	// Forged packets for node1's host address must not get in that way
	// either.
	hostCapture, err := nstest.StartCapture(node1, "vxdp_host")
	must(t, err)
	captures["node1 vxdp_host"] = hostCapture

	raw := openRaw(t, lab, evil)
	drops := func() map[string]int { return allDrops(t, sock1) }

	t.Run("a unknown tunnel source", func(t *testing.T) {
		// cilium#33992: a well-formed packet with a workload VNI from a
		// host that is no node must not be decapsulated.
		before := drops()
		var pkts [][]byte
		for _, dst := range []string{"10.1.1.10", "10.1.1.11"} {
			for i := 0; i < 3; i++ {
				pkts = append(pkts, evilOuter(evilSelfIP, 50000, evilGood(dst, "a")))
			}
		}
		raw.sendAll(t, pkts...)
		expectDrops(t, sock1, "unknown_tunnel_source", before, len(pkts))
	})

	t.Run("b spoofed inner source", func(t *testing.T) {
		before := drops()
		inner := evilInner("10.1.9.9", "10.1.1.10", "b")
		pkt := evilOuter(evilNode2IP, 50001, evilVXLAN(vxlanI, 1000, 0, evilNode2MAC, 0x0800, inner))
		raw.sendAll(t, pkt, pkt, pkt)
		expectDrops(t, sock1, "spoofed_inner_source", before, 3)
	})

	t.Run("c I flag clear", func(t *testing.T) {
		before := drops()
		p := evilGood("10.1.1.10", "c")
		p[0] = 0
		raw.sendAll(t, evilOuter(evilNode2IP, 50002, p), evilOuter(evilNode2IP, 50002, p))
		expectDrops(t, sock1, "invalid_header", before, 2)
	})

	t.Run("d reserved bits", func(t *testing.T) {
		before := drops()
		var pkts [][]byte
		// Every bit of the first word but I: 7 flag bits and 24 reserved.
		for bit := 0; bit < 32; bit++ {
			if uint32(1)<<bit == vxlanI {
				continue
			}
			p := evilVXLAN(vxlanI|1<<bit, 1000, 0, evilNode2MAC, 0x0800, evilInner("10.1.2.20", "10.1.1.10", fmt.Sprintf("d-w%d", bit)))
			pkts = append(pkts, evilOuter(evilNode2IP, 50003, p))
		}
		// The 8 bits of the byte after the VNI.
		for bit := 0; bit < 8; bit++ {
			p := evilVXLAN(vxlanI, 1000, 1<<bit, evilNode2MAC, 0x0800, evilInner("10.1.2.20", "10.1.1.10", fmt.Sprintf("d-b%d", bit)))
			pkts = append(pkts, evilOuter(evilNode2IP, 50003, p))
		}
		if len(pkts) != 39 {
			t.Fatalf("built %d packets, want 39", len(pkts))
		}
		raw.sendAll(t, pkts...)
		expectDrops(t, sock1, "invalid_header", before, len(pkts))
	})

	t.Run("e truncated", func(t *testing.T) {
		// Every cut of a deliverable packet below VXLAN (8) + Ethernet
		// (14) + an inner IPv4 header (20) + 16 bytes is invalid: up to 41
		// the headers are incomplete, from 42 the inner header claims a
		// total length (48) the cut does not hold.
		full := evilGood("10.1.1.10", "e-truncated")
		if len(full) <= 57 || int(binary.BigEndian.Uint16(full[22+2:])) <= 57-22 {
			t.Fatalf("base packet of %d bytes too short for the cuts", len(full))
		}
		t.Run("lengths 1-57", func(t *testing.T) {
			before := drops()
			var pkts [][]byte
			for n := 1; n <= 57; n++ {
				pkts = append(pkts, evilOuter(evilNode2IP, 50004, full[:n]))
			}
			raw.sendAll(t, pkts...)
			expectDrops(t, sock1, "invalid_header", before, len(pkts))
		})
		t.Run("length 0", func(t *testing.T) {
			// An empty datagram is no tunnel packet at all; it has to be
			// counted like any other malformed one. Should it go missing,
			// the kernel's and the underlay's counters tell where.
			before := drops()
			udpBefore := udpInDatagrams(t, node1)
			rxBefore, rxDropBefore := underlayRx(t, sock1)
			raw.sendAll(t, evilOuter(evilNode2IP, 50004, nil), evilOuter(evilNode2IP, 50004, nil))
			expectDrops(t, sock1, "invalid_header", before, 2)
			if t.Failed() {
				rx, rxDrop := underlayRx(t, sock1)
				t.Errorf("2 empty datagrams: node1's kernel delivered %d to UDP sockets; the underlay counted %d received, %d dropped by the driver",
					udpInDatagrams(t, node1)-udpBefore, rx-rxBefore, rxDrop-rxDropBefore)
			}
		})
	})

	t.Run("malformed from an unknown source", func(t *testing.T) {
		// Header checks and the source check may run in either order: a
		// broken packet from a host that is no node is counted under one of
		// the two reasons, once, whichever the engine checks first.
		before := drops()
		bad := evilGood("10.1.1.10", "order")
		bad[0] = 0
		pkts := [][]byte{
			evilOuter(evilSelfIP, 50010, bad),
			evilOuter(evilSelfIP, 50010, evilGood("10.1.1.10", "order")[:30]),
		}
		raw.sendAll(t, pkts...)
		deadline := time.Now().Add(5 * time.Second)
		for {
			now := drops()
			hdr := now["invalid_header"] - before["invalid_header"]
			src := now["unknown_tunnel_source"] - before["unknown_tunnel_source"]
			if hdr+src >= len(pkts) {
				t.Logf("counted as invalid_header +%d, unknown_tunnel_source +%d", hdr, src)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("invalid_header +%d, unknown_tunnel_source +%d for %d packets", hdr, src, len(pkts))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("f reserved identities", func(t *testing.T) {
		before := drops()
		var pkts [][]byte
		for _, vni := range []uint32{0, 1} {
			p := evilVXLAN(vxlanI, vni, 0, evilNode2MAC, 0x0800, evilInner("10.1.2.20", "10.1.1.10", fmt.Sprintf("f-vni%d", vni)))
			pkts = append(pkts, evilOuter(evilNode2IP, 50005, p))
		}
		raw.sendAll(t, pkts...)
		expectDrops(t, sock1, "invalid_identity", before, len(pkts))
	})

	t.Run("g inner VLAN tag", func(t *testing.T) {
		before := drops()
		// A real 802.1Q frame: TCI (VLAN 1), then the IPv4 ethertype.
		tagged := append([]byte{0x00, 0x01, 0x08, 0x00}, evilInner("10.1.2.20", "10.1.1.10", "g")...)
		p := evilOuter(evilNode2IP, 50006, evilVXLAN(vxlanI, 1000, 0, evilNode2MAC, 0x8100, tagged))
		raw.sendAll(t, p, p)
		expectDrops(t, sock1, "unsupported_protocol", before, 2)
	})

	t.Run("h inner IPv4 header lies", func(t *testing.T) {
		before := drops()
		mut := func(tag string, f func(ip []byte)) []byte {
			inner := evilInner("10.1.2.20", "10.1.1.10", tag)
			f(inner)
			binary.BigEndian.PutUint16(inner[10:], 0)
			binary.BigEndian.PutUint16(inner[10:], encap.Checksum(inner[:20], 0))
			return evilOuter(evilNode2IP, 50007, evilVXLAN(vxlanI, 1000, 0, evilNode2MAC, 0x0800, inner))
		}
		pkts := [][]byte{
			mut("h-ihl4", func(ip []byte) { ip[0] = 0x44 }),
			mut("h-long", func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+100)) }),
			// Beyond the brief's two: a header longer than the packet and
			// a total length shorter than the header.
			mut("h-ihl15", func(ip []byte) { ip[0] = 0x4f }),
			mut("h-short", func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], 12) }),
		}
		raw.sendAll(t, pkts...)
		expectDrops(t, sock1, "invalid_header", before, len(pkts))
	})

	t.Run("inner source MAC", func(t *testing.T) {
		// Not one of the lettered cases, but in section 6: a frame that
		// claims to come from node1 itself, or from a group address.
		before := drops()
		multicast := [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
		var pkts [][]byte
		for _, mac := range [][6]byte{evilNode1MAC, multicast, {}} {
			pkts = append(pkts, evilOuter(evilNode2IP, 50008,
				evilVXLAN(vxlanI, 1000, 0, mac, 0x0800, evilInner("10.1.2.20", "10.1.1.10", "mac"))))
		}
		raw.sendAll(t, pkts...)
		expectDrops(t, sock1, "invalid_mac", before, len(pkts))
	})

	t.Run("i flood", func(t *testing.T) {
		pid := agent1.Pid()
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "vxdp" {
			t.Fatalf("pid %d is %q, not the agent", pid, comm)
		}
		rssBefore := vmRSS(t, pid)
		dropsBefore := drops()

		const (
			floodFor = 3 * time.Second
			floodMax = 200000
			// The pace keeps the flood from being a test of the kernel's
			// veth backlog (1000 packets per CPU) instead of the agent.
			floodRate = floodMax / 3
		)
		seed := uint64(time.Now().UnixNano())
		t.Logf("flood seed %d", seed)
		var (
			wg                        sync.WaitGroup
			sent, errs, forged, empty int
			lastErr                   error
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 0x5eed))
			start := time.Now()
			buf := make([]byte, 1500)
			for i := 0; i < floodMax; i++ {
				elapsed := time.Since(start)
				if elapsed > floodFor {
					break
				}
				if ahead := time.Duration(i)*time.Second/floodRate - elapsed; ahead > time.Millisecond {
					time.Sleep(ahead)
				}
				var pkt []byte
				switch r.IntN(4) {
				case 0, 1: // garbage of any length that fits the MTU
					n := r.IntN(1500 - 28 + 1)
					for j := range buf[:n] {
						buf[j] = byte(r.Uint32())
					}
					pkt = evilOuter(evilSelfIP, uint16(r.Uint32()), buf[:n])
				case 2: // well-formed VXLAN from evil itself, random VNI
					dst := []string{"10.1.1.10", "10.1.1.11", "10.1.1.1"}[r.IntN(3)]
					pkt = evilOuter(evilSelfIP, uint16(49152+r.IntN(16384)),
						evilVXLAN(vxlanI, r.Uint32N(1<<24), 0, evilOwnMAC, 0x0800, evilInner("10.1.2.20", dst, "i")))
				default: // forged as node2, random header bits, never a valid inner source
					src := fmt.Sprintf("10.1.9.%d", 1+r.IntN(254))
					word0 := uint32(vxlanI)
					if r.IntN(2) == 0 {
						word0 = r.Uint32()
					}
					p := evilVXLAN(word0, r.Uint32N(1<<24), byte(r.IntN(2)), evilNode2MAC, 0x0800, evilInner(src, "10.1.1.10", "i-forged"))
					pkt = evilOuter(evilNode2IP, 50009, p[:r.IntN(len(p)+1)])
					forged++
				}
				if len(pkt) == 28 {
					empty++
				}
				if err := raw.send(pkt); err != nil {
					// ENOBUFS under load is the kernel shedding, not a test error.
					errs++
					lastErr = err
					continue
				}
				sent++
			}
		}()
		// The ping starts once the flood is under way and ends before it.
		time.Sleep(300 * time.Millisecond)
		out, _ := nstest.Ping(pod2a, "-c", "10", "-i", "0.2", "-W", "2", "10.1.1.10")
		wg.Wait()
		t.Logf("flood: %d packets sent (%d forged as node2, %d empty), %d send errors (last %v)", sent, forged, empty, errs, lastErr)
		t.Logf("ping during the flood:\n%s", out)

		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no ping summary:\n%s", out)
		}
		tx, _ := strconv.Atoi(m[1])
		rx, _ := strconv.Atoi(m[2])
		if tx != 10 || tx-rx > 1 {
			t.Errorf("ping lost %d of %d during the flood", tx-rx, tx)
		}
		if sent < floodMax/10 {
			t.Errorf("only %d flood packets sent", sent)
		}
		if !agent1.Alive() {
			t.Fatalf("agent died in the flood:\n%s", agent1.Output())
		}
		if out, err := runCLI(sock1, "status"); err != nil {
			t.Fatalf("status after the flood: exit %d\n%s", exitCode(err), out)
		}
		// Give the agent's queue time to drain before measuring.
		time.Sleep(500 * time.Millisecond)
		rssAfter := vmRSS(t, pid)
		t.Logf("agent RSS %d KiB before, %d KiB after", rssBefore>>10, rssAfter>>10)
		if grow := rssAfter - rssBefore; grow >= 64<<20 {
			t.Errorf("agent RSS grew by %d MiB in the flood", grow>>20)
		}
		after := drops()
		total := 0
		for k, v := range after {
			if d := v - dropsBefore[k]; d != 0 {
				t.Logf("flood drops %s +%d", k, d)
				total += d
			}
		}
		// Packets the kernel shed before the agent saw them are not the
		// agent's to count; most of the flood has to be.
		if total < sent/2 {
			t.Errorf("flood: %d drops counted for %d packets sent", total, sent)
		}
	})

	t.Run("j from a pod", func(t *testing.T) {
		before := drops()
		podRaw := openRaw(t, lab, pod1a)
		spoofed := evilInner("10.1.1.99", "10.1.2.20", "j-spoofed")
		podRaw.sendAll(t, spoofed, spoofed, spoofed)
		expectDrops(t, sock1, "invalid_source", before, 3)

		before = drops()
		var conn net.PacketConn
		must(t, pod1a.Do(func() error {
			var err error
			conn, err = net.ListenPacket("udp4", "10.1.1.10:0")
			return err
		}))
		defer conn.Close()
		inner := evilGood("10.1.1.11", "j-encap")
		for _, node := range []string{evilNode1IP, evilNode2IP} {
			if _, err := conn.WriteTo(inner, &net.UDPAddr{IP: net.ParseIP(node), Port: evilPort}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		expectDrops(t, sock1, "encap_prohibited", before, 2)
	})

	// The agent is still alive and healthy, and still forwards.
	if !agent1.Alive() {
		t.Fatalf("agent died:\n%s", agent1.Output())
	}
	if out, err := runCLI(sock1, "status"); err != nil {
		t.Fatalf("status: exit %d\n%s", exitCode(err), out)
	}
	if out, err := nstest.Ping(pod2a, "-c", "3", "-i", "0.2", "-W", "2", "10.1.1.10"); err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("pod2a -> pod1a after the attack: %v\n%s", err, out)
	}

	// Nothing forged reached a pod: no received packet carries the marker
	// or comes from an address only the attacker uses.
	forgedSources := []netip.Prefix{
		netip.MustParsePrefix("10.1.9.0/24"),
		netip.MustParsePrefix("10.1.1.99/32"),
		netip.MustParsePrefix(evilSelfIP + "/32"),
	}
	for _, name := range []string{"pod1a", "pod1b", "pod2a", "node1 vxdp_host"} {
		frames := captures[name].StopFrames()
		if err := captures[name].Err(); err != nil {
			t.Errorf("capture in %s: %v", name, err)
		}
		if d := captures[name].Dropped(); d > 0 {
			t.Errorf("capture in %s lost %d frames: its verdict would not be complete", name, d)
		}
		echoes := 0
		for _, f := range frames {
			if f.Outgoing {
				continue // what the pod itself sent, the forged packets of case j included
			}
			p := nstest.DecodeIP(f.Data)
			if bytes.Contains(f.Data, []byte(evilMarker)) {
				t.Errorf("forged packet reached %s: %v", name, p)
				continue
			}
			ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip4 == nil {
				continue
			}
			src, _ := netip.AddrFromSlice(ip4.SrcIP)
			for _, fp := range forgedSources {
				if fp.Contains(src.Unmap()) {
					t.Errorf("packet from forged source %s reached %s: %v", src, name, p)
				}
			}
			if icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && icmp.TypeCode.Type() == layers.ICMPv4TypeEchoRequest {
				echoes++
			}
		}
		t.Logf("%s received %d frames, %d echo requests", name, len(frames), echoes)
		if name == "pod1a" && echoes < 9+3 {
			// The pings of pod2a must show up, or the capture saw nothing.
			t.Errorf("pod1a's capture holds only %d echo requests", echoes)
		}
	}
}
