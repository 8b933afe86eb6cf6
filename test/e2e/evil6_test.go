package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// The hostile-input topology of TestHostileInput on an IPv6 underlay,
// with dual-stack and IPv6-only pods:
//
//	pod1a 10.1.1.10,fd00:1:1::10 (1000)  pod1b fd00:1:1::11 (1001)     pod2a 10.1.2.20,fd00:1:2::20 (2000)
//	                  \                     /                                       |
//	               node1 fd69:72::233 ------------ br0 (switch) ------------ node2 fd69:72::238
//	                                                    |
//	                                           evil fd69:72::66
const (
	evil6Node1IP = "fd69:72::233"
	evil6Node2IP = "fd69:72::238"
	evil6SelfIP  = "fd69:72::66"
	evil6Pod1a   = "fd00:1:1::10"
	evil6Pod1b   = "fd00:1:1::11"
	evil6Pod2a   = "fd00:1:2::20"
	etherIPv6    = 0x86dd
)

// evil6Inner builds an inner IPv6/UDP packet src:6666 -> dst:7777 through
// the extension headers ext, carrying the marker and a tag naming the
// case.
func evil6Inner(src, dst, tag string, ext ...pkttest.Ext) []byte {
	return pkttest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Ext: ext}.UDP(6666, 7777, []byte(evilMarker+"-"+tag))
}

// evil6ICMP builds an inner ICMPv6 message of type typ from src to dst
// with hop limit hl (0: 64); an error quotes a packet pod1a might have
// sent, marker included.
func evil6ICMP(src, dst string, hl, typ uint8, tag string) []byte {
	quote := evil6Inner(evil6Pod1a, evil6Pod2a, tag)
	rest := append(make([]byte, 4), quote...)
	return pkttest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), HopLimit: hl}.ICMPv6(typ, 0, rest)
}

// evil6VXLAN is a VXLAN payload with identity vni carrying the inner IPv6
// packet l3 in a frame from node2's tunnel MAC.
func evil6VXLAN(vni uint32, l3 []byte) []byte {
	return evilVXLAN(vxlanI, vni, 0, evilNode2MAC, etherIPv6, l3)
}

// evil6Outer wraps a UDP payload in IPv6/UDP from src to node1's tunnel
// port, with the UDP checksum IPv6 requires.
func evil6Outer(src string, sport uint16, payload []byte) []byte {
	return pkttest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(evil6Node1IP)}.UDP(sport, evilPort, payload)
}

// rawSender6 is an AF_INET6 IPPROTO_RAW socket: the kernel sends the IPv6
// header as given (IPV6_HDRINCL is implied), forged source included.
type rawSender6 struct {
	fd int
}

func openRaw6(t *testing.T, lab *nstest.TestLab, ns *nstest.Netns) *rawSender6 {
	t.Helper()
	fd := -1
	must(t, ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 1})
	}))
	lab.Defer("close raw IPv6 socket in "+ns.Name, func() error { return unix.Close(fd) })
	return &rawSender6{fd: fd}
}

func (r *rawSender6) sendAll(t *testing.T, pkts ...[]byte) {
	t.Helper()
	for _, p := range pkts {
		if err := unix.Sendto(r.fd, p, 0, &unix.SockaddrInet6{Addr: [16]byte(p[24:40])}); err != nil {
			t.Fatalf("raw send of %d bytes to %s: %v", len(p), netip.AddrFrom16([16]byte(p[24:40])), err)
		}
		time.Sleep(time.Millisecond) // paced, as rawSender's
	}
}

// snmp6 reads one counter of /proc/net/snmp6 in ns.
func snmp6(t *testing.T, ns *nstest.Netns, name string) int {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/snmp6")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			n, err := strconv.Atoi(f[1])
			must(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/net/snmp6", name)
	return 0
}

// icmpSent returns the agent's count of ICMP errors sent and of those
// held back by the rate limit.
func icmpSent(t *testing.T, sock string) int {
	t.Helper()
	out, err := runCLI(sock, "stats", "-o", "json")
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	var st struct {
		Sent    int `json:"icmp_errors_sent"`
		Limited int `json:"icmp_errors_rate_limited"`
	}
	mustJSON(t, out, &st)
	return st.Sent + st.Limited
}

// TestHostileInputIPv6 sends node1 forged and malformed IPv6 tunnel
// traffic from a host on its IPv6 underlay, and hostile IPv6 from one of
// its own pods. Each kind must be dropped and counted under its reason,
// none may reach a pod, no ICMPv6 error may answer an ICMPv6 error, and
// the agent must stay up and forwarding.
func TestHostileInputIPv6(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	sw := lab.Netns("switch")
	node1 := lab.Netns("node1")
	node2 := lab.Netns("node2")
	evil := lab.Netns("evil")
	pod1a := lab.Netns("pod1a")
	pod1b := lab.Netns("pod1b")
	pod2a := lab.Netns("pod2a")
	underlaySwitch(t, lab, sw, []*nstest.Netns{node1, node2, evil}, []string{evil6Node1IP + "/64", evil6Node2IP + "/64", evil6SelfIP + "/64"})

	nodeConfig := func(name, ip, cidr, peer, peerIP, peerCIDR, endpoints string) string {
		path := filepath.Join(dir, name+".yaml")
		write(t, path, fmt.Sprintf(`node-name: %s
node-ip: %s
pod-cidr: "%s"
routing-mode: tunnel
tunnel-protocol: vxlan
tunnel-port: %d
state-dir: %s
cluster-pool-ipv4-cidr: 10.1.0.0/16
cluster-pool-ipv6-cidr: fd00:1::/32
nodes:
  - {name: %s, ip: "%s", pod-cidr: "%s"}
endpoints:%s
`, name, ip, cidr, evilPort, filepath.Join(dir, "state-"+name), peer, peerIP, peerCIDR, endpoints))
		return path
	}
	cidr1, cidr2 := "10.1.1.0/24,fd00:1:1::/64", "10.1.2.0/24,fd00:1:2::/64"
	// node1's metrics are served inside its namespace only.
	const metricsAddr = "127.0.0.1:9962"
	cfg1 := nodeConfig("node1", evil6Node1IP, cidr1, "node2", evil6Node2IP, cidr2, fmt.Sprintf(`
  - {name: pod1a, ip: "10.1.1.10,%s", netns: %s, identity: 1000}
  - {name: pod1b, ip: "%s", netns: %s, identity: 1001}
prometheus-serve-addr: %s`, evil6Pod1a, pod1a.Path, evil6Pod1b, pod1b.Path, metricsAddr))
	cfg2 := nodeConfig("node2", evil6Node2IP, cidr2, "node1", evil6Node1IP, cidr1, fmt.Sprintf(`
  - {name: pod2a, ip: "10.1.2.20,%s", netns: %s, identity: 2000}`, evil6Pod2a, pod2a.Path))
	sock1 := filepath.Join(dir, "node1.sock")
	sock2 := filepath.Join(dir, "node2.sock")
	agent1 := lab.Start(node1, "agent1", vxdpBin, "agent", "--config", cfg1, "--socket", sock1, "--log-level", "info")
	agent2 := lab.Start(node2, "agent2", vxdpBin, "agent", "--config", cfg2, "--socket", sock2, "--log-level", "info")
	waitAgent(t, agent1, sock1)
	waitAgent(t, agent2, sock2)

	ping6 := func(from *nstest.Netns, to string) {
		t.Helper()
		if out, err := nstest.Ping(from, "-c", "3", "-i", "0.2", "-W", "2", to); err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping %s -> %s: %v\n%s", from.Name, to, err, out)
		}
	}
	ping6(pod2a, evil6Pod1a)
	ping6(pod2a, evil6Pod1b)
	ping6(evil, evil6Node1IP) // evil learns node1's MAC now
	if out, err := runCLI(sock1, "endpoint", "policy", "pod1b", "--allow-from", "1000"); err != nil {
		t.Fatal(err, out)
	}

	captures := map[string]*nstest.Capture{}
	for name, ns := range map[string]*nstest.Netns{"pod1a": pod1a, "pod1b": pod1b, "pod2a": pod2a} {
		c, err := nstest.StartCapture(ns, "eth0")
		must(t, err)
		captures[name] = c
	}
	hostCapture, err := nstest.StartCapture(node1, "vxdp_host")
	must(t, err)
	captures["node1 vxdp_host"] = hostCapture

	raw := openRaw6(t, lab, evil)
	drops := func() map[string]int { return allDrops(t, sock1) }
	// expect sends pkts and holds each reason to its count.
	expect := func(t *testing.T, want map[string]int, send func()) {
		t.Helper()
		before := drops()
		icmpBefore := icmpSent(t, sock1)
		send()
		for reason, n := range want {
			expectDrops(t, sock1, reason, before, n)
		}
		// None of these may be answered: an ICMPv6 error, a packet with a
		// forged or multicast source, a broken one.
		if d := icmpSent(t, sock1) - icmpBefore; d != 0 {
			t.Errorf("node1 answered %d of them with ICMP errors", d)
		}
	}

	t.Run("unknown tunnel source", func(t *testing.T) {
		pkts := [][]byte{
			evil6Outer(evil6SelfIP, 50000, evil6VXLAN(1000, evil6Inner(evil6Pod2a, evil6Pod1a, "a6"))),
			evil6Outer(evil6SelfIP, 50000, evil6VXLAN(1000, evil6Inner(evil6Pod2a, evil6Pod1b, "a6"))),
			evil6Outer(evil6SelfIP, 50000, evilVXLAN(vxlanI, 1000, 0, evilNode2MAC, 0x0800, evilInner("10.1.2.20", "10.1.1.10", "a4"))),
			// A link-local outer source is no node either, whatever
			// interface identifier it carries.
			evil6Outer("fe80::238", 50000, evil6VXLAN(1000, evil6Inner(evil6Pod2a, evil6Pod1a, "a6-ll"))),
		}
		expect(t, map[string]int{"unknown_tunnel_source": len(pkts)}, func() { raw.sendAll(t, pkts...) })
	})

	t.Run("extension header chains", func(t *testing.T) {
		dest := func(n int) []pkttest.Ext {
			var e []pkttest.Ext
			for range n {
				e = append(e, pkttest.DestOpts(1))
			}
			return e
		}
		// One header past the bound, far past it, a Hop-by-Hop header
		// that is not first, two Fragment headers, a header longer than
		// the packet.
		inners := [][]byte{
			evil6Inner(evil6Pod2a, evil6Pod1a, "x9", dest(encap.IPv6MaxExtHeaders+1)...),
			evil6Inner(evil6Pod2a, evil6Pod1a, "x-hbh9", append([]pkttest.Ext{pkttest.HopByHop(1)}, dest(encap.IPv6MaxExtHeaders)...)...),
			evil6Inner(evil6Pod2a, evil6Pod1a, "x40", dest(40)...),
			evil6Inner(evil6Pod2a, evil6Pod1a, "x-hbh2", pkttest.DestOpts(1), pkttest.HopByHop(1)),
			evil6Inner(evil6Pod2a, evil6Pod1a, "x-frag2", pkttest.Fragment(0, false, 1), pkttest.Fragment(0, false, 2)),
		}
		long := evil6Inner(evil6Pod2a, evil6Pod1a, "x-long", pkttest.DestOpts(1))
		long[encap.IPv6Len+1] = 200 // 1608 bytes claimed
		inners = append(inners, long)
		var pkts [][]byte
		for _, in := range inners {
			pkts = append(pkts, evil6Outer(evil6Node2IP, 50001, evil6VXLAN(1000, in)))
		}
		expect(t, map[string]int{"invalid_extension_headers": len(pkts)}, func() { raw.sendAll(t, pkts...) })
	})

	t.Run("fragments", func(t *testing.T) {
		first := pkttest.Fragment(0, true, 0x66)
		later := pkttest.Fragment(8, false, 0x66)
		spoofed := [][]byte{
			evil6Inner("fd00:1:9::9", evil6Pod1a, "f-spoof-first", first),
			evil6Inner("fd00:1:9::9", evil6Pod1a, "f-spoof-later", later),
		}
		// RFC 7112: a first fragment holds the whole header chain. This
		// one's Destination Options header runs past its end.
		cut := evil6Inner(evil6Pod2a, evil6Pod1a, "f-cut", first, pkttest.DestOpts(1))
		cut[encap.IPv6Len+8+1] = 100
		// From a real pod of node2 but an identity pod1b does not allow:
		// the later fragment, without ports, meets the policy too.
		denied := [][]byte{
			evil6Inner(evil6Pod2a, evil6Pod1b, "f-deny-first", first),
			evil6Inner(evil6Pod2a, evil6Pod1b, "f-deny-later", later),
		}
		var pkts [][]byte
		for _, in := range append(append(spoofed, cut), denied...) {
			pkts = append(pkts, evil6Outer(evil6Node2IP, 50002, evil6VXLAN(2000, in)))
		}
		expect(t, map[string]int{"spoofed_inner_source": 2, "invalid_extension_headers": 1, "policy_denied": 2},
			func() { raw.sendAll(t, pkts...) })
	})

	t.Run("ICMPv6 errors", func(t *testing.T) {
		inners := map[string][][]byte{
			"spoofed_inner_source": {
				evil6ICMP("fd00:1:9::9", evil6Pod1a, 0, encap.ICMPv6DestUnreach, "i-spoof"),
				evil6ICMP("fe80::1", evil6Pod1a, 0, encap.ICMPv6PacketTooBig, "i-ll-ptb"),
				evil6ICMP("fe80::1", evil6Pod1a, 255, 137, "i-redirect"), // Redirect
			},
			// From pod2a, but its hop limit runs out at node1: dropped, and
			// no Time Exceeded answers an error.
			"ttl_exceeded": {
				evil6ICMP(evil6Pod2a, evil6Pod1a, 1, encap.ICMPv6DestUnreach, "i-hl1"),
				evil6ICMP(evil6Pod2a, evil6Pod1a, 1, encap.ICMPv6TimeExceeded, "i-hl1-te"),
			},
			// To a group or to a link-local address: nothing local.
			"no_endpoint": {
				evil6ICMP(evil6Pod2a, "ff02::1", 0, encap.ICMPv6DestUnreach, "i-mcast"),
				evil6ICMP(evil6Pod2a, "fe80::10", 0, encap.ICMPv6DestUnreach, "i-ll"),
			},
		}
		want := map[string]int{}
		var pkts [][]byte
		for reason, in := range inners {
			want[reason] = len(in)
			for _, p := range in {
				pkts = append(pkts, evil6Outer(evil6Node2IP, 50003, evil6VXLAN(2000, p)))
			}
		}
		expect(t, want, func() { raw.sendAll(t, pkts...) })
	})

	t.Run("multicast, link-local and spoofed sources", func(t *testing.T) {
		var pkts [][]byte
		// And addresses of node1's own pod CIDR, its host address among
		// them, which node2 cannot be sending for.
		for _, src := range []string{"ff02::1", "ff05::2", "fe80::1234", "::", "::1", "::ffff:10.1.2.20", evil6Pod1b, "fd00:1:1::1"} {
			pkts = append(pkts, evil6Outer(evil6Node2IP, 50004, evil6VXLAN(2000, evil6Inner(src, evil6Pod1a, "m-"+src))))
		}
		// IPv4 inside an IPv6 underlay is held to node2's IPv4 pod CIDR.
		for _, src := range []string{"10.1.9.9", "10.1.1.11", "224.0.0.1"} {
			pkts = append(pkts, evil6Outer(evil6Node2IP, 50004, evilVXLAN(vxlanI, 2000, 0, evilNode2MAC, 0x0800, evilInner(src, "10.1.1.10", "m4-"+src))))
		}
		expect(t, map[string]int{"spoofed_inner_source": len(pkts)}, func() { raw.sendAll(t, pkts...) })
	})

	t.Run("zero UDP checksum", func(t *testing.T) {
		// RFC 6935/6936 allow it for tunnels configured for it, and vxdp's
		// are not: the kernel refuses it before the agent sees it, as the
		// kernel's vxlan does without udp6zerocsumrx. Neither a pod nor
		// the agent's counters see it; the kernel counts it.
		p := evil6Outer(evil6Node2IP, 50005, evil6VXLAN(2000, evil6Inner(evil6Pod2a, evil6Pod1a, "z")))
		binary.BigEndian.PutUint16(p[encap.IPv6Len+6:], 0)
		csumBefore := snmp6(t, node1, "Udp6InCsumErrors")
		rxBefore, _ := underlayRx(t, sock1)
		raw.sendAll(t, p, p, p)
		deadline := time.Now().Add(5 * time.Second)
		for snmp6(t, node1, "Udp6InCsumErrors")-csumBefore < 3 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if d := snmp6(t, node1, "Udp6InCsumErrors") - csumBefore; d != 3 {
			t.Errorf("node1's kernel counted %d UDP checksum errors for 3 zero checksums", d)
		}
		if rx, _ := underlayRx(t, sock1); rx != rxBefore {
			t.Errorf("the agent received %d underlay packets", rx-rxBefore)
		}
	})

	t.Run("truncated", func(t *testing.T) {
		// Every cut of a deliverable packet: VXLAN (8), Ethernet (14),
		// the inner IPv6 header (40), UDP (8) and the payload.
		full := evil6VXLAN(2000, evil6Inner(evil6Pod2a, evil6Pod1a, "t-truncated"))
		var pkts [][]byte
		for n := 0; n < len(full); n++ {
			pkts = append(pkts, evil6Outer(evil6Node2IP, 50006, full[:n]))
		}
		// And inner headers that claim more than they carry, or a chain
		// longer than the payload length says.
		lies := evil6Inner(evil6Pod2a, evil6Pod1a, "t-lie")
		binary.BigEndian.PutUint16(lies[encap.IPv6PayloadLenOffset:], uint16(len(lies)))
		pkts = append(pkts, evil6Outer(evil6Node2IP, 50006, evil6VXLAN(2000, lies)))
		expect(t, map[string]int{"invalid_header": len(pkts)}, func() { raw.sendAll(t, pkts...) })

		short := evil6Inner(evil6Pod2a, evil6Pod1a, "t-chain", pkttest.DestOpts(2))
		binary.BigEndian.PutUint16(short[encap.IPv6PayloadLenOffset:], 8)
		expect(t, map[string]int{"invalid_extension_headers": 1}, func() {
			raw.sendAll(t, evil6Outer(evil6Node2IP, 50006, evil6VXLAN(2000, short)))
		})
	})

	t.Run("from a pod", func(t *testing.T) {
		podRaw := openRaw6(t, lab, pod1a)
		t.Run("extension header chains", func(t *testing.T) {
			var dest []pkttest.Ext
			for range encap.IPv6MaxExtHeaders + 1 {
				dest = append(dest, pkttest.DestOpts(1))
			}
			pkts := [][]byte{
				evil6Inner(evil6Pod1a, evil6Pod2a, "p-x9", dest...),
				evil6Inner(evil6Pod1a, evil6Pod2a, "p-hbh2", pkttest.DestOpts(1), pkttest.HopByHop(1)),
				evil6Inner(evil6Pod1a, evil6Pod1b, "p-frag2", pkttest.Fragment(0, false, 1), pkttest.Fragment(0, false, 2)),
			}
			expect(t, map[string]int{"invalid_extension_headers": len(pkts)}, func() { podRaw.sendAll(t, pkts...) })
		})
		t.Run("ICMPv6 errors toward remote", func(t *testing.T) {
			want := map[string]int{
				"invalid_source":     1, // not the pod's address
				"ttl_exceeded":       1, // hop limit 1: no Time Exceeded for an error
				"no_route":           1, // a hole in the cluster CIDR: no Destination Unreachable for an error
				"multicast_address":  1,
				"link_local_address": 1,
			}
			pkts := [][]byte{
				evil6ICMP("fd00:1:1::99", evil6Pod2a, 0, encap.ICMPv6DestUnreach, "p-i-spoof"),
				evil6ICMP(evil6Pod1a, evil6Pod2a, 1, encap.ICMPv6DestUnreach, "p-i-hl1"),
				evil6ICMP(evil6Pod1a, "fd00:1:9::9", 0, encap.ICMPv6DestUnreach, "p-i-noroute"),
				evil6ICMP(evil6Pod1a, "ff02::1", 0, encap.ICMPv6DestUnreach, "p-i-mcast"),
				evil6ICMP(evil6Pod1a, "fe80::20", 0, encap.ICMPv6DestUnreach, "p-i-ll"),
			}
			expect(t, want, func() { podRaw.sendAll(t, pkts...) })
		})
		t.Run("ICMPv6 error too big for the tunnel", func(t *testing.T) {
			// No Packet Too Big answers an error (RFC 4443 2.4(e.1)).
			pod1a.MustRun(t, "ip", "link", "set", "eth0", "mtu", "1500")
			defer pod1a.MustRun(t, "ip", "link", "set", "eth0", "mtu", "1430")
			big := evil6ICMP(evil6Pod1a, evil6Pod2a, 0, encap.ICMPv6DestUnreach, "p-big"+strings.Repeat("x", 1380))
			expect(t, map[string]int{"frag_needed": 1}, func() { podRaw.sendAll(t, big) })
		})
		t.Run("to the tunnel port", func(t *testing.T) {
			var conn net.PacketConn
			must(t, pod1a.Do(func() error {
				var err error
				conn, err = net.ListenPacket("udp6", "["+evil6Pod1a+"]:0")
				return err
			}))
			defer conn.Close()
			inner := evil6VXLAN(1000, evil6Inner(evil6Pod1a, evil6Pod1b, "p-encap"))
			expect(t, map[string]int{"encap_prohibited": 3}, func() {
				for _, node := range []string{evil6Node1IP, evil6Node2IP} {
					if _, err := conn.WriteTo(inner, &net.UDPAddr{IP: net.ParseIP(node), Port: evilPort}); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Millisecond)
				}
				// A first fragment cut inside the UDP header: no port to
				// tell by, so it is stopped as well.
				frag := pkttest.IPv6{Src: netip.MustParseAddr(evil6Pod1a), Dst: netip.MustParseAddr(evil6Node2IP),
					Ext: []pkttest.Ext{pkttest.Fragment(0, true, 7)}}.Packet(encap.ProtoUDP, []byte{0x12, 0x34})
				podRaw.sendAll(t, frag)
			})
		})
	})

	// Still alive, healthy and forwarding over IPv6.
	if !agent1.Alive() {
		t.Fatalf("agent died:\n%s", agent1.Output())
	}
	if out, err := runCLI(sock1, "status"); err != nil {
		t.Fatalf("status: exit %d\n%s", exitCode(err), out)
	}
	if out, err := nstest.Ping(pod2a, "-c", "3", "-i", "0.2", "-W", "2", evil6Pod1a); err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("pod2a -> pod1a after the attack: %v\n%s", err, out)
	}

	// Nothing forged reached a pod or the host device: no packet that
	// came in carries the marker or an attacker's source, and no ICMPv6
	// error came back to pod1a for what it sent.
	forged := []netip.Prefix{
		netip.MustParsePrefix("fd00:1:9::/48"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("ff00::/8"),
		netip.MustParsePrefix(evil6SelfIP + "/128"),
	}
	for _, name := range []string{"pod1a", "pod1b", "pod2a", "node1 vxdp_host"} {
		frames := captures[name].StopFrames()
		if err := captures[name].Err(); err != nil {
			t.Errorf("capture in %s: %v", name, err)
		}
		if d := captures[name].Dropped(); d > 0 {
			t.Errorf("capture in %s lost %d frames", name, d)
		}
		echoes := 0
		for _, f := range frames {
			if f.Outgoing {
				continue
			}
			p := nstest.DecodeIP(f.Data)
			if bytes.Contains(f.Data, []byte(evilMarker)) {
				t.Errorf("forged packet reached %s: %v", name, p)
				continue
			}
			ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if ip6 == nil {
				continue
			}
			src, _ := netip.AddrFromSlice(ip6.SrcIP)
			for _, fp := range forged {
				if fp.Contains(src) {
					t.Errorf("packet from forged source %s reached %s: %v", src, name, p)
				}
			}
			if icmp, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
				switch typ := icmp.TypeCode.Type(); {
				case typ == layers.ICMPv6TypeEchoRequest:
					echoes++
				case typ < 128:
					t.Errorf("ICMPv6 error reached %s: %v", name, p)
				}
			}
		}
		t.Logf("%s received %d frames, %d echo requests", name, len(frames), echoes)
		if name == "pod1a" && echoes < 3 {
			t.Errorf("pod1a's capture holds only %d echo requests", echoes)
		}
	}

	t.Run("metrics agree", func(t *testing.T) {
		// The Prometheus counters are the same numbers as vxdp stats.
		body, err := scrape(node1, metricsAddr, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		st := drops()
		for _, reason := range []string{"unknown_tunnel_source", "invalid_extension_headers", "spoofed_inner_source", "policy_denied",
			"ttl_exceeded", "no_endpoint", "invalid_header", "invalid_source", "no_route", "frag_needed", "encap_prohibited",
			"multicast_address", "link_local_address"} {
			v, ok := metricValue(body, `vxdp_drops_total{reason="`+reason+`"}`)
			switch {
			case !ok || v == 0:
				t.Errorf("vxdp_drops_total for %s: %v (found %v)", reason, v, ok)
			case int(v) != st[reason] && !strings.HasSuffix(reason, "_address"):
				// A pod's own router solicitations may add to the
				// *_address counters between the two reads.
				t.Errorf("vxdp_drops_total for %s is %v, vxdp stats says %d", reason, v, st[reason])
			}
		}
	})

	t.Run("random IPv6", func(t *testing.T) {
		// Mangled IPv6 (random extension header chains, hop limits that
		// run out, ICMPv6 of every kind, bytes of the headers changed at
		// random) through the tunnel from node2's address and from a pod.
		// Some of it is valid and delivered; the rest is counted, and the
		// agent survives all of it.
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		r := rand.New(rand.NewPCG(seed, 0x6666))
		dsts := []string{evil6Pod1a, evil6Pod1b, "fd00:1:1::1", "fd00:1:1::77", "fd00:1:9::9", "ff02::1", "fe80::1", evil6Pod2a, evil6Node2IP}
		gen := func(src string, trunc bool) []byte {
			var ext []pkttest.Ext
			for i := r.IntN(11); i > 0; i-- {
				switch r.IntN(3) {
				case 0:
					ext = append(ext, pkttest.DestOpts(1+r.IntN(3)))
				case 1:
					ext = append(ext, pkttest.HopByHop(1))
				default:
					ext = append(ext, pkttest.Fragment(r.IntN(4)*8, r.IntN(2) == 0, r.Uint32()))
				}
			}
			hl := []uint8{1, 2, 64}[r.IntN(3)]
			h := pkttest.IPv6{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dsts[r.IntN(len(dsts))]), HopLimit: hl, Ext: ext}
			payload := []byte("FUZZ")
			var p []byte
			if r.IntN(2) == 0 {
				p = h.UDP(uint16(r.Uint32()), []uint16{7777, evilPort}[r.IntN(2)], payload)
			} else {
				typ := []uint8{1, 2, 3, 4, 128, 129, 133, 135, 137, 143}[r.IntN(10)]
				p = h.ICMPv6(typ, uint8(r.IntN(3)), append(make([]byte, 4), evil6Inner(evil6Pod1a, evil6Pod2a, "q")...))
			}
			// Change bytes of the headers, never the destination (the
			// pod's kernel routes on it).
			for k := r.IntN(4); k > 0; k-- {
				i := r.IntN(len(p))
				if i >= 24 && i < 40 {
					continue
				}
				p[i] = byte(r.Uint32())
			}
			if trunc && r.IntN(4) == 0 {
				p = p[:r.IntN(len(p)+1)]
			}
			return p
		}
		podRaw := openRaw6(t, lab, pod1a)
		before := drops()
		const n = 4000
		sentTunnel, sentPod, podErrs := 0, 0, 0
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; i < n && time.Now().Before(deadline); i++ {
			must(t, unix.Sendto(raw.fd, evil6Outer(evil6Node2IP, uint16(50100+i%64), evil6VXLAN(2000, gen(evil6Pod2a, true))), 0,
				&unix.SockaddrInet6{Addr: netip.MustParseAddr(evil6Node1IP).As16()}))
			sentTunnel++
			p := gen(evil6Pod1a, false)
			if err := unix.Sendto(podRaw.fd, p, 0, &unix.SockaddrInet6{Addr: [16]byte(p[24:40])}); err != nil {
				podErrs++ // the pod's kernel refusing one is no concern here
			} else {
				sentPod++
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		t.Logf("sent %d through the tunnel, %d from the pod (%d refused by its kernel)", sentTunnel, sentPod, podErrs)
		time.Sleep(500 * time.Millisecond)
		if !agent1.Alive() || !agent2.Alive() {
			t.Fatalf("an agent died:\n%s\n%s", agent1.Output(), agent2.Output())
		}
		total := 0
		var moved []string
		for k, v := range drops() {
			if d := v - before[k]; d != 0 {
				moved = append(moved, fmt.Sprintf("%s+%d", k, d))
				total += d
			}
		}
		t.Logf("drops: %d, %v", total, moved)
		// Most of it is broken one way or another.
		if total < (sentTunnel+sentPod)/2 {
			t.Errorf("%d drops counted for %d packets", total, sentTunnel+sentPod)
		}
		if out, err := nstest.Ping(pod2a, "-c", "3", "-i", "0.2", "-W", "2", evil6Pod1a); err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Errorf("pod2a -> pod1a after the random packets: %v\n%s", err, out)
		}
		if out, err := runCLI(sock1, "status"); err != nil {
			t.Errorf("status: exit %d\n%s", exitCode(err), out)
		}
	})
}

// With tunnel-source-check off (a migration) a host that is no node may
// send tunnel packets, but an inner source no pod can have still does not
// get in: multicast, link-local, unspecified, loopback, IPv4-mapped.
func TestTunnelSourceCheckOffIPv6(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	sw := lab.Netns("switch")
	node1 := lab.Netns("node1")
	evil := lab.Netns("evil")
	pod1a := lab.Netns("pod1a")
	underlaySwitch(t, lab, sw, []*nstest.Netns{node1, evil}, []string{evil6Node1IP + "/64", evil6SelfIP + "/64"})
	cfg := filepath.Join(dir, "node1.yaml")
	write(t, cfg, fmt.Sprintf(`node-name: node1
node-ip: %s
pod-cidr: "fd00:1:1::/64"
tunnel-port: %d
tunnel-source-check: "false"
state-dir: %s
cluster-pool-ipv6-cidr: fd00:1::/32
endpoints:
  - {name: pod1a, ip: "%s", netns: %s, identity: 1000}
`, evil6Node1IP, evilPort, filepath.Join(dir, "state"), evil6Pod1a, pod1a.Path))
	sock := filepath.Join(dir, "node1.sock")
	agent := lab.Start(node1, "agent1", vxdpBin, "agent", "--config", cfg, "--socket", sock)
	waitAgent(t, agent, sock)
	if out, err := nstest.Ping(evil, "-c", "1", "-W", "2", evil6Node1IP); err != nil {
		t.Fatalf("evil -> node1: %v\n%s", err, out)
	}
	capt, err := nstest.StartCapture(pod1a, "eth0")
	must(t, err)
	raw := openRaw6(t, lab, evil)

	// A plausible pod source from the stranger is taken: the check is off.
	const taken = "TAKEN"
	ok := pkttest.IPv6{Src: netip.MustParseAddr(evil6Pod2a), Dst: netip.MustParseAddr(evil6Pod1a)}.UDP(6666, 7777, []byte(taken))
	raw.sendAll(t, evil6Outer(evil6SelfIP, 50000, evil6VXLAN(2000, ok)))

	srcs := []string{"ff02::1", "ff0e::5", "fe80::1", "::", "::1", "::ffff:10.1.2.20"}
	var pkts [][]byte
	for _, src := range srcs {
		pkts = append(pkts, evil6Outer(evil6SelfIP, 50001, evil6VXLAN(2000, evil6Inner(src, evil6Pod1a, "s-"+src))))
	}
	before := allDrops(t, sock)
	raw.sendAll(t, pkts...)
	expectDrops(t, sock, "spoofed_inner_source", before, len(pkts))

	time.Sleep(200 * time.Millisecond)
	frames := capt.StopFrames()
	got := 0
	for _, f := range frames {
		if f.Outgoing {
			continue
		}
		switch {
		case bytes.Contains(f.Data, []byte(evilMarker)):
			t.Errorf("impossible source reached pod1a: %v", nstest.DecodeIP(f.Data))
		case bytes.Contains(f.Data, []byte(taken)):
			got++
		}
	}
	if got != 1 {
		t.Errorf("pod1a got %d of 1 packets from a plausible source with the check off", got)
	}
	if !agent.Alive() {
		t.Fatalf("agent died:\n%s", agent.Output())
	}
}
