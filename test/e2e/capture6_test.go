package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/internal/nstest"
)

// The IPv6 underlay as a capture shows it, read by tshark: every tunnel
// packet is VXLAN over IPv6/UDP on port 8472 with a valid outer UDP
// checksum, the VNI is the sending endpoint's identity (6, remote-node,
// for the host), the inner packets are ICMPv6 echoes with valid
// checksums, and nothing is malformed or warned about.
func TestIPv6UnderlayCapture(t *testing.T) {
	c := dualCluster(t, "ipv6")
	for _, n := range c.node {
		softwareChecksums(t, n, "eth0")
	}
	capt, err := nstest.StartCapture(c.node[0], "eth0")
	must(t, err)
	c.mustPing("pod1a", "fd00:1:2::20") // identity 1000, answered by 2000
	c.mustPing("pod1b", "fd00:1:2::20") // identity 1001
	c.mustPing("node1", "fd00:1:2::20") // the host: remote-node
	frames := capt.Stop()
	if d := capt.Dropped(); d > 0 {
		t.Fatalf("capture lost %d frames", d)
	}
	file := filepath.Join(c.dir, "underlay6.pcap") // what tshark reads
	must(t, writePcap(file, frames))

	// The UDP checksum is verified only when asked for; an ICMPv6 one
	// always is.
	tshark := func(filter string, fields ...string) []string {
		t.Helper()
		args := []string{"-r", file, "-d", "udp.port==8472,vxlan", "-o", "udp.check_checksum:TRUE", "-Y", filter, "-T", "fields", "-E", "separator=|"}
		for _, f := range fields {
			args = append(args, "-e", f)
		}
		cmd := exec.Command("tshark", args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark %v: %v\n%s", args, err, stderr.String())
		}
		s := strings.TrimSpace(string(out))
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}

	if bad := tshark("_ws.malformed || _ws.expert.severity >= warning", "frame.number", "_ws.expert.message"); len(bad) > 0 {
		t.Errorf("tshark finds %d malformed or suspect packets; the first: %s", len(bad), bad[0])
	}
	if other := tshark("ip || (udp && !vxlan)", "frame.number", "frame.protocols"); len(other) > 0 {
		t.Errorf("underlay packets that are not VXLAN over IPv6: %q", other)
	}

	lines := tshark("vxlan", "ipv6.src", "ipv6.dst", "udp.dstport", "udp.checksum.status", "vxlan.vni", "icmpv6.type", "icmpv6.checksum.status")
	if len(lines) < 18 {
		t.Fatalf("tshark decodes %d VXLAN packets, want 18 echoes and replies:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	wantVNI := map[string]uint64{"fd00:1:1::10": 1000, "fd00:1:1::11": 1001, "fd00:1:1::1": 6, "fd00:1:2::20": 2000}
	seen := map[string]int{}
	for _, l := range lines {
		f := strings.Split(l, "|")
		if len(f) != 7 {
			t.Fatalf("tshark line %q", l)
		}
		srcs, dsts := strings.Split(f[0], ","), strings.Split(f[1], ",")
		if len(srcs) != 2 || len(dsts) != 2 {
			t.Fatalf("not IPv6 in IPv6: %q", l)
		}
		outerOK := srcs[0] == c.nodeIPs[0] && dsts[0] == c.nodeIPs[1] || srcs[0] == c.nodeIPs[1] && dsts[0] == c.nodeIPs[0]
		if !outerOK || f[2] != "8472" {
			t.Errorf("outer addresses or port: %q", l)
		}
		if f[3] != "1" {
			t.Errorf("outer UDP checksum not verified good (status %s): %q", f[3], l)
		}
		vni, err := strconv.ParseUint(f[4], 0, 32)
		if err != nil {
			t.Fatalf("vni %q: %v", f[4], err)
		}
		inner := srcs[1]
		want, ok := wantVNI[inner]
		if !ok {
			t.Errorf("unexpected inner source %s: %q", inner, l)
			continue
		}
		if vni != want {
			t.Errorf("inner source %s carried VNI %d, want %d", inner, vni, want)
		}
		switch {
		case inner == "fd00:1:2::20" && f[5] != "129":
			t.Errorf("from pod2a, not an echo reply: %q", l)
		case inner != "fd00:1:2::20" && f[5] != "128":
			t.Errorf("from %s, not an echo request: %q", inner, l)
		}
		if f[6] != "1" {
			t.Errorf("inner ICMPv6 checksum not good (status %s): %q", f[6], l)
		}
		seen[inner]++
	}
	for src := range wantVNI {
		if seen[src] < 3 {
			t.Errorf("%d packets from inner source %s, want at least 3", seen[src], src)
		}
	}
	t.Logf("VXLAN packets by inner source: %v", seen)

	t.Run("vxdp capture", func(t *testing.T) {
		// vxdp's own capture rebuilds the outer IPv6 and UDP headers the
		// socket underlay adds and strips: tshark must read them as it
		// reads the wire, checksums and all; at a pod, the bare IPv6.
		for _, point := range []string{"underlay", "pod:pod1a"} {
			pcap := filepath.Join(c.dir, strings.ReplaceAll(point, ":", "-")+".pcap")
			cmd := exec.Command(vxdpBin, "--socket", c.sockets[0], "capture", "--point", point, "--count", "6", "-w", pcap)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			must(t, cmd.Start())
			started := time.Now()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// More echoes than the count needs: the capture may start a
			// little after the command does on a busy machine.
			time.Sleep(300 * time.Millisecond)
			c.ping("pod1a", "fd00:1:2::20", "-c", "8", "-i", "0.2")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("capture %s: %v\n%s", point, err, out)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("capture %s did not finish:\n%s", point, out)
			}
			t.Logf("%s: captured in %v", point, time.Since(started).Round(time.Millisecond))
			file = pcap
			if bad := tshark("_ws.malformed || _ws.expert.severity >= warning", "frame.number", "_ws.expert.message"); len(bad) > 0 {
				t.Errorf("%s: tshark finds malformed or suspect packets: %q", point, bad)
			}
			lines := tshark("icmpv6", "ipv6.src", "ipv6.dst", "udp.checksum.status", "vxlan.vni", "icmpv6.type", "ipv6.flow")
			if len(lines) != 6 {
				t.Fatalf("%s: tshark reads %d ICMPv6 packets, want 6:\n%s", point, len(lines), strings.Join(lines, "\n"))
			}
			for _, l := range lines {
				f := strings.Split(l, "|")
				srcs := strings.Split(f[0], ",")
				if point == "pod:pod1a" {
					if len(srcs) != 1 || f[3] != "" {
						t.Errorf("%s: not bare IPv6: %q", point, l)
					}
					continue
				}
				if len(srcs) != 2 || srcs[0] != c.nodeIPs[0] && srcs[0] != c.nodeIPs[1] || f[2] != "1" {
					t.Errorf("%s: outer header or checksum: %q", point, l)
				}
				if vni, _ := strconv.ParseUint(f[3], 0, 32); vni != wantVNI[srcs[1]] {
					t.Errorf("%s: VNI %d from %s: %q", point, vni, srcs[1], l)
				}
			}
		}
	})
}

// ethtoolSTxCsum is ETHTOOL_STXCSUM of linux/ethtool.h, which sets the
// tx-checksumming features of a device as `ethtool -K dev tx` does.
const ethtoolSTxCsum = 0x17

// softwareChecksums turns off transmit checksum offload on dev in ns.
// Over veth the kernel otherwise leaves a UDP checksum for the "hardware"
// to fill in (CHECKSUM_PARTIAL) and a packet socket captures it unfilled:
// with it off, the capture holds the bytes a wire would carry.
func softwareChecksums(t *testing.T, ns *nstest.Netns, dev string) {
	t.Helper()
	must(t, ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd: ethtoolSTxCsum}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte // the rest of struct ifreq's union
		}
		copy(ifr.name[:unix.IFNAMSIZ-1], dev)
		ifr.data = unsafe.Pointer(&val)
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&val)
		if e != 0 {
			return fmt.Errorf("%s in %s: ethtool tx off: %w", dev, ns.Name, e)
		}
		return nil
	}))
}
