package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"syscall"

	"github.com/vxdp/vxdp/internal/nstest"
)

// The AF_XDP underlay: both nodes on it, and one on it with the other on
// the UDP socket; the tunnel traffic really goes through the rings; the
// kernel keeps everything else; no program is left behind.
func TestAFXDPUnderlay(t *testing.T) {
	for _, tc := range []struct {
		name, protocol string
		modes          [2]string
	}{
		{"both afxdp", "vxlan", [2]string{"afxdp", "afxdp"}},
		{"afxdp and udp", "vxlan", [2]string{"afxdp", "udp"}},
		{"geneve, afxdp and udp", "geneve", [2]string{"afxdp", "udp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proto := "\ntunnel-protocol: " + tc.protocol
			c := newClusterWith(t, [2]string{"underlay: " + tc.modes[0] + proto, "underlay: " + tc.modes[1] + proto})
			for i, m := range tc.modes {
				var st struct {
					Underlay       string `json:"underlay"`
					UnderlayReason string `json:"underlay_reason"`
				}
				must(t, json.Unmarshal([]byte(c.mustCLI(i, "status", "-o", "json")), &st))
				if st.Underlay != m {
					t.Fatalf("node%d underlay %q, want %q (%s)", i+1, st.Underlay, m, st.UnderlayReason)
				}
				if m == "afxdp" {
					if !strings.Contains(st.UnderlayReason, "native XDP") || !strings.Contains(st.UnderlayReason, "copy sockets") {
						t.Fatalf("status does not show the XDP modes: %s", st.UnderlayReason)
					}
					if out := c.node[i].MustRun(t, "ip", "-d", "link", "show", "eth0"); !strings.Contains(out, "xdp") {
						t.Fatalf("no XDP program on node%d eth0:\n%s", i+1, out)
					}
				}
			}
			c.mustPing("pod1a", "10.1.2.20")
			c.mustPing("pod2b", "10.1.1.11")
			if _, err := nstest.TCPTransfer(c.pods["pod1a"], c.pods["pod2a"], addr("10.1.2.20"), 5101, 100<<20, 2*time.Minute); err != nil {
				t.Fatalf("TCP 100MB pod1a -> pod2a: %v", err)
			}
			if _, err := nstest.TCPTransfer(c.pods["pod2b"], c.pods["pod1b"], addr("10.1.1.11"), 5102, 100<<20, 2*time.Minute); err != nil {
				t.Fatalf("TCP 100MB pod2b -> pod1b: %v", err)
			}
			// The tunnel traffic went through the rings, not a UDP socket.
			var st struct {
				Devices []struct {
					Device    string `json:"device"`
					Kind      string `json:"kind"`
					RxPackets uint64 `json:"rx_packets"`
					TxPackets uint64 `json:"tx_packets"`
				} `json:"devices"`
			}
			must(t, json.Unmarshal([]byte(c.mustCLI(0, "stats", "-o", "json")), &st))
			var under []string
			for _, d := range st.Devices {
				if d.Kind == "underlay" {
					under = append(under, d.Device)
					if !strings.HasPrefix(d.Device, "afxdp:eth0/q") {
						t.Fatalf("node1 underlay device %s", d.Device)
					}
					if d.RxPackets < 10000 || d.TxPackets < 10000 {
						t.Fatalf("%s carried rx %d tx %d packets", d.Device, d.RxPackets, d.TxPackets)
					}
				}
			}
			if len(under) == 0 {
				t.Fatal("no underlay device in stats")
			}
			if out, _ := c.node[0].Run("ss", "-uan"); strings.Contains(out, "10.169.72.233:8472") || strings.Contains(out, "10.169.72.233:6081") {
				t.Fatalf("a UDP socket on the tunnel port beside AF_XDP:\n%s", out)
			}
			// Everything else still reaches node1's kernel.
			if out, err := nstest.Ping(c.node[1], "-c", "2", "-i", "0.2", "-W", "2", "10.169.72.233"); err != nil {
				t.Fatalf("ping node1's underlay address: %v\n%s", err, out)
			}
			var ln net.Listener
			must(t, c.node[0].Do(func() (err error) { ln, err = net.Listen("tcp4", "10.169.72.233:7300"); return }))
			defer ln.Close()
			go func() {
				if conn, err := ln.Accept(); err == nil {
					fmt.Fprint(conn, "kernel")
					conn.Close()
				}
			}()
			var reply string
			must(t, c.node[1].Do(func() error {
				conn, err := net.DialTimeout("tcp4", "10.169.72.233:7300", 3*time.Second)
				if err != nil {
					return err
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(3 * time.Second))
				b := make([]byte, 16)
				n, _ := conn.Read(b)
				reply = string(b[:n])
				return nil
			}))
			if reply != "kernel" {
				t.Fatalf("TCP to node1's listener answered %q", reply)
			}
			// Stopped: no program left.
			for i := range c.agents {
				c.agents[i].Signal(syscall.SIGTERM)
				if code, err := c.agents[i].Wait(10 * time.Second); err != nil || code != 0 {
					t.Fatalf("agent %d: exit %d %v\n%s", i+1, code, err, c.agents[i].Output())
				}
				if out := c.node[i].MustRun(t, "ip", "-d", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") || strings.Contains(out, "xdpgeneric") || strings.Contains(out, " xdp ") {
					t.Fatalf("XDP program left on node%d:\n%s", i+1, out)
				}
			}
		})
	}
}

// The AF_XDP underlay with dual-stack pods, over an IPv6 and over an IPv4
// underlay network: both nodes on AF_XDP, and one on it with the other on
// the UDP socket (over IPv6, its kernel-built packets reach the AF_XDP
// node with a UDP checksum the veth left for the device to finish). IPv6
// and IPv4 pods ping across nodes and a verified TCP transfer works in
// both families; the tunnel traffic goes through the rings; the node's
// own traffic (neighbour resolution included) still reaches the kernel;
// no program is left behind.
func TestAFXDPDualStack(t *testing.T) {
	for _, tc := range []struct {
		underlay, protocol string
		modes              [2]string
	}{
		{"ipv6", "vxlan", [2]string{"afxdp", "afxdp"}},
		{"ipv6", "vxlan", [2]string{"afxdp", "udp"}},
		{"ipv6", "geneve", [2]string{"afxdp", "afxdp"}},
		{"ipv4", "vxlan", [2]string{"afxdp", "afxdp"}},
	} {
		t.Run(tc.underlay+" underlay, "+tc.protocol+", "+tc.modes[0]+" and "+tc.modes[1], func(t *testing.T) {
			proto := "\ntunnel-protocol: " + tc.protocol
			c := dualClusterWith(t, tc.underlay, [2]string{"underlay: " + tc.modes[0] + proto, "underlay: " + tc.modes[1] + proto})
			hostPort := func(ip string) string { return ip + ":" }
			if tc.underlay == "ipv6" {
				hostPort = func(ip string) string { return "[" + ip + "]:" }
			}
			for i, m := range tc.modes {
				var st struct {
					Underlay       string `json:"underlay"`
					UnderlayReason string `json:"underlay_reason"`
				}
				must(t, json.Unmarshal([]byte(c.mustCLI(i, "status", "-o", "json")), &st))
				if st.Underlay != m {
					t.Fatalf("node%d underlay %q, want %q (%s)", i+1, st.Underlay, m, st.UnderlayReason)
				}
				if m != "afxdp" {
					continue
				}
				if !strings.Contains(st.UnderlayReason, "native XDP") || !strings.Contains(st.UnderlayReason, "copy sockets") {
					t.Fatalf("status does not show the XDP modes: %s", st.UnderlayReason)
				}
				if out := c.mustCLI(i, "status"); !strings.Contains(out, "afxdp on eth0") || !strings.Contains(out, c.nodeIPs[i]) {
					t.Fatalf("node%d status:\n%s", i+1, out)
				}
				if out := c.node[i].MustRun(t, "ip", "-d", "link", "show", "eth0"); !strings.Contains(out, "xdp") {
					t.Fatalf("no XDP program on node%d eth0:\n%s", i+1, out)
				}
			}
			peer := hostPort(c.nodeIPs[1]) + "0"
			if out := c.mustCLI(0, "tunnel", "list"); !strings.Contains(out, "[fd00:1:2::]:0") || !strings.Contains(out, "10.1.2.0:0") ||
				strings.Count(out, peer) != 2 {
				t.Fatalf("tunnel list:\n%s", out)
			}

			c.mustPing("pod1a", "fd00:1:2::20") // IPv6 across nodes
			c.mustPing("pod1b", "fd00:1:2::20") // IPv6-only pod
			c.mustPing("pod2a", "fd00:1:1::10") // and back
			c.mustPing("pod1a", "10.1.2.20")    // IPv4 pods over the IPv6 underlay
			c.mustPing("pod2b", "10.1.1.10")
			transfer(t, c.pods["pod1a"], c.pods["pod2a"], "fd00:1:2::20", 5201, 64<<20, time.Minute)
			transfer(t, c.pods["pod2a"], c.pods["pod1b"], "fd00:1:1::11", 5202, 32<<20, time.Minute)
			transfer(t, c.pods["pod2b"], c.pods["pod1a"], "10.1.1.10", 5203, 32<<20, time.Minute)

			// The tunnel traffic went through node1's rings.
			var st struct {
				Devices []struct {
					Device        string `json:"device"`
					Kind          string `json:"kind"`
					RxPackets     uint64 `json:"rx_packets"`
					TxPackets     uint64 `json:"tx_packets"`
					DriverDropped uint64 `json:"driver_rx_dropped"`
					KernelDropped uint64 `json:"kernel_dropped"`
					KernelDropErr string `json:"kernel_dropped_error"`
				} `json:"devices"`
			}
			must(t, json.Unmarshal([]byte(c.mustCLI(0, "stats", "-o", "json")), &st))
			var under int
			for _, d := range st.Devices {
				if d.Kind != "underlay" {
					continue
				}
				under++
				if !strings.HasPrefix(d.Device, "afxdp:eth0/q") {
					t.Fatalf("node1 underlay device %s", d.Device)
				}
				if d.RxPackets < 10000 || d.TxPackets < 10000 {
					t.Fatalf("%s carried rx %d tx %d packets", d.Device, d.RxPackets, d.TxPackets)
				}
				// Every tunnel packet's UDP checksum was taken: none
				// dropped by the driver. What overflowed the rings on
				// a busy moment is the kernel's count, read from the
				// socket.
				if d.DriverDropped != 0 {
					t.Errorf("%s dropped %d received frames", d.Device, d.DriverDropped)
				}
				if d.KernelDropErr != "" {
					t.Errorf("%s: kernel drops unread: %s", d.Device, d.KernelDropErr)
				}
				if d.KernelDropped != 0 {
					t.Logf("%s: %d frames dropped by the kernel (RX ring full or fill ring empty)", d.Device, d.KernelDropped)
				}
			}
			if under == 0 {
				t.Fatal("no underlay device in stats")
			}
			// Over IPv6 the outer checksum cost no pass of its own:
			// node1 wrote it from the headers of the segments it cut
			// from pod1a's super-packets, and an AF_XDP node2 checked
			// the inner checksums from the sum its check made, pod2a's
			// merged writes taking its word. Over IPv4 there is no
			// outer checksum, and the shortcuts say so.
			if tc.underlay == "ipv6" {
				if o := c.offload(0, "underlay", "afxdp-csum-lco"); !o.Active || o.Count == 0 {
					t.Errorf("node1 afxdp-csum-lco: %+v", o)
				}
				if tc.modes[1] == "afxdp" {
					if o := c.offload(1, "underlay", "afxdp-csum-complete"); !o.Active || o.Count == 0 {
						t.Errorf("node2 afxdp-csum-complete: %+v", o)
					}
					if o := c.offload(1, "pod2a", "tun-csum-complete"); !o.Active || o.Count == 0 {
						t.Errorf("node2 pod2a tun-csum-complete: %+v", o)
					}
				}
			} else if o := c.offload(0, "underlay", "afxdp-csum-lco"); o.Active || o.Reason == "" {
				t.Errorf("node1 afxdp-csum-lco over IPv4: %+v", o)
			}
			if out, _ := c.node[0].Run("ss", "-uan"); strings.Contains(out, hostPort(c.nodeIPs[0])+"8472") || strings.Contains(out, hostPort(c.nodeIPs[0])+"6081") {
				t.Fatalf("a UDP socket on the tunnel port beside AF_XDP:\n%s", out)
			}
			// Everything else still reaches node1's kernel: its address
			// answers, which takes ARP or neighbour discovery too.
			if out, err := nstest.Ping(c.node[1], "-c", "2", "-i", "0.2", "-W", "2", c.nodeIPs[0]); err != nil {
				t.Fatalf("ping node1's underlay address: %v\n%s", err, out)
			}
			if out := c.node[0].MustRun(t, "ip", "neigh", "show", "dev", "eth0"); !strings.Contains(out, c.nodeIPs[1]+" ") {
				t.Fatalf("node1 has no neighbour entry for node2:\n%s", out)
			}

			for i := range c.agents {
				c.agents[i].Signal(syscall.SIGTERM)
				if code, err := c.agents[i].Wait(10 * time.Second); err != nil || code != 0 {
					t.Fatalf("agent %d: exit %d %v\n%s", i+1, code, err, c.agents[i].Output())
				}
				if out := c.node[i].MustRun(t, "ip", "-d", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") || strings.Contains(out, "xdpgeneric") || strings.Contains(out, " xdp ") {
					t.Fatalf("XDP program left on node%d:\n%s", i+1, out)
				}
			}
		})
	}
}

// underlay: auto decides an IPv6 node by the probe of its device, as an
// IPv4 one: a veth offers no zero-copy AF_XDP, so the UDP socket it is,
// for that reason and no other.
func TestAFXDPAutoIPv6(t *testing.T) {
	c := dualClusterWith(t, "ipv6", [2]string{"underlay: auto", "underlay: auto"})
	for i := range c.node {
		var st struct {
			Underlay       string `json:"underlay"`
			UnderlayReason string `json:"underlay_reason"`
		}
		must(t, json.Unmarshal([]byte(c.mustCLI(i, "status", "-o", "json")), &st))
		if st.Underlay != "udp" || !strings.HasPrefix(st.UnderlayReason, "auto: veth: no zero-copy AF_XDP support") {
			t.Fatalf("node%d underlay %q (%s), want udp for want of zero-copy", i+1, st.Underlay, st.UnderlayReason)
		}
	}
	c.mustPing("pod1a", "fd00:1:2::20")
}
