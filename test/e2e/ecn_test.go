package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// ECN and DSCP across the overlay (RFC 6040), over an IPv4 and an IPv6
// underlay with the UDP socket driver, for IPv4 and IPv6 pods:
//
//   - encapsulation: a pod pings with a TOS (DSCP and an ECN field); on
//     the underlay every tunnel packet's outer TOS or traffic class equals
//     its inner one, and the pod on the other node receives the echo
//     requests with the TOS they were sent with;
//   - decapsulation: node2 sends node1 tunnel packets whose outer header
//     says CE (congestion experienced), as a congested hop would have
//     marked them. One over an ECN-capable inner packet reaches pod1a
//     marked CE, its DSCP kept; one over a Not-ECT inner packet never
//     reaches it and is counted as ecn_ce_not_ect.
func TestECN(t *testing.T) {
	for _, underlay := range []string{"ipv4", "ipv6"} {
		t.Run(underlay+" underlay", func(t *testing.T) { testECN(t, underlay) })
	}
}

func testECN(t *testing.T, underlay string) {
	extra := "underlay: udp\ntunnel-port: 8472\ncluster-pool-ipv6-cidr: fd00:1::/32"
	c := newLabOn(t, underlay, [2]string{"10.1.1.0/24,fd00:1:1::/64", "10.1.2.0/24,fd00:1:2::/64"}, [2]string{extra, extra})
	c.configs[0] = c.writeConfig("node1", 0, 1, fmt.Sprintf(`
  - {name: pod1a, ip: "10.1.1.10,fd00:1:1::10", netns: %s, identity: 1000}`, c.pods["pod1a"].Path))
	c.configs[1] = c.writeConfig("node2", 1, 0, fmt.Sprintf(`
  - {name: pod2a, ip: "10.1.2.20,fd00:1:2::20", netns: %s, identity: 2000}`, c.pods["pod2a"].Path))
	c.startAgents()
	c.mustPing("pod1a", "10.1.2.20")
	c.mustPing("pod1a", "fd00:1:2::20")

	t.Run("encapsulation copies DSCP and ECN", func(t *testing.T) {
		under, err := nstest.StartCapture(c.node[0], "eth0")
		must(t, err)
		at2, err := nstest.StartCapture(c.pods["pod2a"], "eth0")
		must(t, err)
		// EF with ECT(1), AF11 with ECT(0), AF41 without ECN, and CE
		// (RFC 6040 normal mode copies it too).
		tos := []uint8{0xb9, 0x2a, 0x88, 0x03}
		for _, dst := range []string{"10.1.2.20", "fd00:1:2::20"} {
			for _, v := range tos {
				out, err := c.ping("pod1a", dst, "-c", "2", "-Q", fmt.Sprintf("%#x", v))
				if err != nil || !strings.Contains(out, " 0% packet loss") {
					t.Fatalf("ping -Q %#x %s: %v\n%s", v, dst, err, out)
				}
			}
		}
		frames := under.Stop()
		// requests[family][tos] counts echo requests from pod1a seen in
		// the tunnel.
		requests := map[int]map[uint8]int{4: {}, 6: {}}
		tunnelled, mismatched := 0, 0
		for _, f := range frames {
			outerTOS, inner, ok := vxlanInner(f)
			if !ok {
				continue
			}
			tunnelled++
			innerTOS, echo := innerTOS(inner)
			if outerTOS != innerTOS {
				if mismatched++; mismatched <= 5 {
					t.Errorf("outer TOS %#x, inner %#x: %x", outerTOS, innerTOS, f[:min(len(f), 100)])
				}
			}
			if echo {
				requests[encap.IPVersion(inner)][innerTOS]++
			}
		}
		if mismatched > 5 {
			t.Errorf("%d tunnel packets in all whose outer TOS differs from the inner", mismatched)
		}
		for _, fam := range []int{4, 6} {
			for _, v := range tos {
				if requests[fam][v] < 2 {
					t.Errorf("IPv%d: %d echo requests with TOS %#x on the underlay, want 2 (all: %v; %d tunnel packets of %d frames)",
						fam, requests[fam][v], v, requests[fam], tunnelled, len(frames))
				}
			}
		}
		// tshark, another decoder, reads the same marks: each VXLAN
		// packet's outer and inner DSCP and ECN, whatever the families.
		file := filepath.Join(c.dir, "ecn-"+underlay+".pcap")
		must(t, writePcap(file, frames))
		out, err := exec.Command("tshark", "-r", file, "-d", "udp.port==8472,vxlan", "-Y", "vxlan", "-T", "fields",
			"-e", "ip.dsfield.dscp", "-e", "ipv6.tclass.dscp", "-e", "ip.dsfield.ecn", "-e", "ipv6.tclass.ecn").Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != tunnelled {
			t.Errorf("tshark saw %d VXLAN packets, the test's decoder %d", len(lines), tunnelled)
		}
		marked := 0
		for _, l := range lines {
			// Two DSCPs and two ECN fields, outer first, whichever
			// family each header is of.
			var dscp, ecn []string
			for i, f := range strings.Split(l, "\t") {
				for _, v := range strings.Split(f, ",") {
					if v == "" {
						continue
					}
					if i < 2 {
						dscp = append(dscp, v)
					} else {
						ecn = append(ecn, v)
					}
				}
			}
			if len(dscp) != 2 || len(ecn) != 2 || dscp[0] != dscp[1] || ecn[0] != ecn[1] {
				t.Errorf("tshark: outer and inner DSCP %v, ECN %v differ: %q", dscp, ecn, l)
			}
			if len(dscp) > 0 && dscp[0] != "0" || len(ecn) > 0 && ecn[0] != "0" {
				marked++
			}
		}
		if marked < 4*len(tos) {
			t.Errorf("tshark: %d marked VXLAN packets, want at least %d", marked, 4*len(tos))
		}

		// The pod on the other side gets them as they were sent.
		got := map[int]map[uint8]int{4: {}, 6: {}}
		for _, p := range at2.Stop() {
			if v, echo := innerTOS(p); echo {
				got[encap.IPVersion(p)][v]++
			}
		}
		for _, fam := range []int{4, 6} {
			for _, v := range tos {
				if got[fam][v] < 2 {
					t.Errorf("IPv%d: pod2a received %d echo requests with TOS %#x, want 2 (all: %v)", fam, got[fam][v], v, got[fam])
				}
			}
		}
	})

	t.Run("decapsulation: outer CE", func(t *testing.T) {
		at1, err := nstest.StartCapture(c.pods["pod1a"], "eth0")
		must(t, err)
		node1, node2 := addr(c.nodeIPs[0]), addr(c.nodeIPs[1])
		send := newTOSSender(t, c.node[1], node2)
		ce := uint8(encap.ECNCE)
		const dscp = 0x28 << 2 // CS5, which must survive
		cases := []struct {
			tag   string
			inner uint8 // the inner TOS
			want  uint8 // what pod1a receives; 0xff: nothing
		}{
			{"ect0", dscp | uint8(encap.ECNECT0), dscp | ce},
			{"ect1", dscp | uint8(encap.ECNECT1), dscp | ce},
			{"ce", dscp | ce, dscp | ce},
			{"notect", dscp, 0xff},
		}
		before := c.drops(0, "ecn_ce_not_ect")
		for _, tc := range cases {
			for _, v6 := range []bool{false, true} {
				var inner []byte
				et := uint16(encap.EtherTypeIPv4)
				payload := []byte("ECN-" + tc.tag)
				if v6 {
					et = encap.EtherTypeIPv6
					inner = pkttest.IPv6{Src: addr("fd00:1:2::20"), Dst: addr("fd00:1:1::10"), TrafficClass: tc.inner}.UDP(6666, 7777, payload)
				} else {
					inner = pkttest.IPv4{Src: addr("10.1.2.20"), Dst: addr("10.1.1.10"), TOS: tc.inner, ID: 7}.UDP(6666, 7777, payload)
				}
				frame := pkttest.Ethernet(encap.TunnelMAC(node1), encap.TunnelMAC(node2), et, inner)
				send(ce, netip.AddrPortFrom(node1, 8472), pkttest.VXLAN(2000, frame))
				time.Sleep(5 * time.Millisecond)
			}
		}
		// Two Not-ECT packets under CE, one of each family.
		deadline := time.Now().Add(5 * time.Second)
		for c.drops(0, "ecn_ce_not_ect") < before+2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := c.drops(0, "ecn_ce_not_ect"); got != before+2 {
			t.Errorf("ecn_ce_not_ect %d -> %d, want +2", before, got)
		}
		time.Sleep(100 * time.Millisecond)
		seen := map[string]uint8{}
		for _, p := range at1.Stop() {
			tag, tos, ok := ecnProbe(p)
			if !ok {
				continue
			}
			if _, dup := seen[tag]; dup {
				t.Errorf("%s arrived twice", tag)
			}
			seen[tag] = tos
		}
		for _, tc := range cases {
			for _, fam := range []string{"v4", "v6"} {
				key := tc.tag + "/" + fam
				got, arrived := seen[key]
				switch {
				case tc.want == 0xff && arrived:
					t.Errorf("%s: CE over Not-ECT reached pod1a (TOS %#x); it must be dropped", key, got)
				case tc.want != 0xff && !arrived:
					t.Errorf("%s: never reached pod1a (seen: %v)", key, seen)
				case tc.want != 0xff && got != tc.want:
					t.Errorf("%s: pod1a received TOS %#x, want %#x", key, got, tc.want)
				}
			}
		}
	})
}

// vxlanInner takes an Ethernet frame of the underlay apart: for a VXLAN
// packet to port 8472 it returns the outer TOS or traffic class and the
// inner IP packet.
func vxlanInner(f []byte) (tos uint8, inner []byte, ok bool) {
	if len(f) < encap.EthernetLen {
		return 0, nil, false
	}
	var udp []byte
	switch binary.BigEndian.Uint16(f[12:14]) {
	case encap.EtherTypeIPv4:
		ip := encap.IPv4(f[encap.EthernetLen:])
		if !ip.IsValid(len(ip)) || ip.Protocol() != encap.ProtoUDP || ip.IsFragment() {
			return 0, nil, false
		}
		tos, udp = ip.TOS(), ip[ip.HeaderLen():ip.TotalLen()]
	case encap.EtherTypeIPv6:
		ip := encap.IPv6(f[encap.EthernetLen:])
		if !ip.IsValid(len(ip)) || ip.NextHeader() != encap.ProtoUDP {
			return 0, nil, false
		}
		tos, udp = ip.TrafficClass(), ip[encap.IPv6Len:ip.TotalLen()]
	default:
		return 0, nil, false
	}
	const off = encap.UDPLen + encap.VXLANLen + encap.EthernetLen
	if len(udp) < off+1 || binary.BigEndian.Uint16(udp[2:4]) != 8472 {
		return 0, nil, false
	}
	return tos, udp[off:], true
}

// innerTOS returns the TOS or traffic class of an IP packet and whether it
// is an ICMP or ICMPv6 echo request.
func innerTOS(p []byte) (tos uint8, echoRequest bool) {
	switch encap.IPVersion(p) {
	case encap.IPv4Version:
		ip := encap.IPv4(p)
		if !ip.IsValid(len(p)) {
			return 0, false
		}
		pl := ip.Payload()
		return ip.TOS(), ip.Protocol() == encap.ProtoICMP && len(pl) > 0 && pl[0] == 8
	case encap.IPv6Version:
		ip := encap.IPv6(p)
		if !ip.IsValid(len(p)) {
			return 0, false
		}
		pl := p[encap.IPv6Len:]
		return ip.TrafficClass(), ip.NextHeader() == encap.ProtoICMPv6 && len(pl) > 0 && pl[0] == 128
	}
	return 0, false
}

// ecnProbe recognises the inner packets of the decapsulation case as a pod
// receives them: UDP to port 7777 with an "ECN-<tag>" payload. It returns
// "<tag>/v4" or "<tag>/v6" and the packet's TOS or traffic class.
func ecnProbe(p []byte) (tag string, tos uint8, ok bool) {
	var payload []byte
	fam := ""
	switch encap.IPVersion(p) {
	case encap.IPv4Version:
		ip := encap.IPv4(p)
		if !ip.IsValid(len(p)) || ip.Protocol() != encap.ProtoUDP {
			return "", 0, false
		}
		payload, tos, fam = ip.Payload(), ip.TOS(), "v4"
	case encap.IPv6Version:
		ip := encap.IPv6(p)
		if !ip.IsValid(len(p)) || ip.NextHeader() != encap.ProtoUDP {
			return "", 0, false
		}
		payload, tos, fam = p[encap.IPv6Len:], ip.TrafficClass(), "v6"
	default:
		return "", 0, false
	}
	if len(payload) < encap.UDPLen || binary.BigEndian.Uint16(payload[2:4]) != 7777 {
		return "", 0, false
	}
	body := string(payload[encap.UDPLen:])
	if !strings.HasPrefix(body, "ECN-") {
		return "", 0, false
	}
	return strings.TrimPrefix(body, "ECN-") + "/" + fam, tos, true
}

// newTOSSender returns a function that sends a UDP datagram from src (an
// address of ns) with a given outer TOS or traffic class: a tunnel packet
// as a node sends it, after a congested hop marked it.
func newTOSSender(t *testing.T, ns *nstest.Netns, src netip.Addr) func(tos uint8, to netip.AddrPort, payload []byte) {
	conn := ns.ListenUDP(t, netip.AddrPortFrom(src, 0))
	raw, err := conn.SyscallConn()
	must(t, err)
	return func(tos uint8, to netip.AddrPort, payload []byte) {
		t.Helper()
		setTOS(t, raw, src.Is6(), tos)
		if _, err := conn.WriteToUDPAddrPort(payload, to); err != nil {
			t.Fatalf("send to %v: %v", to, err)
		}
	}
}

func setTOS(t *testing.T, raw syscall.RawConn, v6 bool, tos uint8) {
	t.Helper()
	var serr error
	err := raw.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, int(tos))
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, int(tos))
		}
	})
	if err == nil {
		err = serr
	}
	must(t, err)
}
