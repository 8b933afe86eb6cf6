package e2e

import (
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// Both nodes on Geneve (no kernel geneve module involved): traffic, a
// capture tshark decodes as Geneve on 6081 with the sender's identity as
// VNI, and crafted bad Geneve from node2's own address dropped with the
// right reasons.
func TestGeneve(t *testing.T) {
	c := newClusterWith(t, [2]string{"tunnel-protocol: geneve", "tunnel-protocol: geneve"})
	if out := c.mustCLI(0, "status"); !strings.Contains(out, "geneve port 6081") {
		t.Fatalf("status:\n%s", out)
	}
	capt, err := nstest.StartCapture(c.node[0], "eth0")
	must(t, err)
	c.mustPing("pod1a", "10.1.2.20")
	c.mustPing("node1", "10.1.2.21")
	frames := capt.Stop()
	if _, err := nstest.TCPTransfer(c.pods["pod1a"], c.pods["pod2a"], addr("10.1.2.20"), 5201, 100<<20, 2*time.Minute); err != nil {
		t.Fatalf("TCP over geneve: %v", err)
	}

	t.Run("tshark decodes it", func(t *testing.T) {
		file := filepath.Join(c.dir, "geneve.pcap")
		must(t, writePcap(file, frames))
		out, err := exec.Command("tshark", "-r", file, "-Y", "geneve", "-T", "fields",
			"-e", "udp.dstport", "-e", "geneve.vni", "-e", "ip.src", "-e", "_ws.expert").Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) < 6 {
			t.Fatalf("tshark saw %d geneve packets:\n%s", len(lines), out)
		}
		vnis := map[string]string{"10.1.1.10": "1000", "10.1.2.20": "2000", "10.1.1.1": "6", "10.1.2.21": "256"}
		seen := map[string]bool{}
		defer func() {
			for src := range vnis {
				if !seen[src] {
					t.Errorf("no geneve packet from inner source %s", src)
				}
			}
		}()
		for _, l := range lines {
			f := strings.Split(l, "\t")
			if len(f) < 3 {
				t.Fatalf("line %q", l)
			}
			if f[0] != "6081" && !strings.HasSuffix(f[0], "6081") {
				t.Fatalf("geneve not on 6081: %q", l)
			}
			if len(f) > 3 && strings.TrimSpace(f[3]) != "" {
				t.Fatalf("tshark expert warning: %q", l)
			}
			inner := f[2][strings.LastIndex(f[2], ",")+1:]
			vni, err := strconv.ParseUint(f[1], 0, 32) // tshark prints 0x0003e8
			if err != nil {
				t.Fatalf("vni %q: %v", f[1], err)
			}
			seen[inner] = true
			if want, ok := vnis[inner]; ok && strconv.FormatUint(vni, 10) != want {
				t.Fatalf("inner source %s carried VNI %d, want %s", inner, vni, want)
			}
		}
	})

	t.Run("bad geneve from node2's address", func(t *testing.T) {
		inner := pkttest.UDP4(netip.MustParseAddrPort("10.1.2.20:1"), netip.MustParseAddrPort("10.1.1.10:9"), nil)
		eth := pkttest.Ethernet(encap.TunnelMAC(addr("10.169.72.233")), encap.TunnelMAC(addr("10.169.72.238")), encap.EtherTypeIPv4, inner)
		frame := func(opts []encap.GeneveOption, mod func([]byte)) []byte {
			p := pkttest.Geneve(2000, opts, eth)
			if mod != nil {
				mod(p)
			}
			return p
		}
		cases := []struct {
			name, reason string
			payload      []byte
		}{
			{"critical unknown option", "geneve_critical_option", frame([]encap.GeneveOption{{Class: 0xffff, Type: 9, Critical: true}}, nil)},
			{"O bit", "geneve_control_packet", frame(nil, func(p []byte) { p[1] |= 0x80 })},
			{"version 1", "invalid_header", frame(nil, func(p []byte) { p[0] |= 0x40 })},
			{"truncated options", "invalid_header", frame([]encap.GeneveOption{{Class: 1, Type: 1, Data: make([]byte, 8)}}, nil)[:14]},
		}
		for _, tc := range cases {
			before := c.drops(0, tc.reason)
			must(t, c.node[1].Do(func() error {
				conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IP{10, 169, 72, 238}}, &net.UDPAddr{IP: net.IP{10, 169, 72, 233}, Port: 6081})
				if err != nil {
					return err
				}
				defer conn.Close()
				for i := 0; i < 3; i++ {
					if _, err := conn.Write(tc.payload); err != nil {
						return err
					}
				}
				return nil
			}))
			deadline := time.Now().Add(3 * time.Second)
			for c.drops(0, tc.reason) < before+3 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if after := c.drops(0, tc.reason); after < before+3 {
				t.Errorf("%s: %s %d -> %d", tc.name, tc.reason, before, after)
			}
		}
	})
}
