package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// A TCP stream pod -> pod across nodes survives kill -9 of node1's agent
// and its restart: the pod devices are persistent, the new agent adopts
// them, and the gap in the stream stays under a second. Then kill -9
// again and `vxdp agent --cleanup` removes everything left.
func TestHitlessRestart(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	n1, n2 := lab.Netns("node1"), lab.Netns("node2")
	p1, p2 := lab.Netns("pod1"), lab.Netns("pod2")
	lab.Veth(n1, "eth0", "10.169.72.233/24", n2, "eth0", "10.169.72.238/24", 1500)
	config := func(i int, ip, cidr, peer, peerIP, peerCIDR, pod, podIP string, podNS *nstest.Netns, identity int) string {
		path := filepath.Join(dir, fmt.Sprintf("n%d.yaml", i))
		write(t, path, fmt.Sprintf(`node-ip: %s
pod-cidr: %s
state-dir: %s
nodes:
  - {name: %s, ip: %s, pod-cidr: %s}
endpoints:
  - {name: %s, ip: %s, netns: %s, identity: %d}
`, ip, cidr, filepath.Join(dir, fmt.Sprintf("state%d", i)), peer, peerIP, peerCIDR, pod, podIP, podNS.Path, identity))
		return path
	}
	cfg1 := config(1, "10.169.72.233", "10.1.1.0/24", "node2", "10.169.72.238", "10.1.2.0/24", "pod1", "10.1.1.10", p1, 1000)
	cfg2 := config(2, "10.169.72.238", "10.1.2.0/24", "node1", "10.169.72.233", "10.1.1.0/24", "pod2", "10.1.2.20", p2, 2000)
	s1, s2 := filepath.Join(dir, "n1.sock"), filepath.Join(dir, "n2.sock")
	a1 := lab.Start(n1, "agent1", vxdpBin, "agent", "--config", cfg1, "--socket", s1)
	a2 := lab.Start(n2, "agent2", vxdpBin, "agent", "--config", cfg2, "--socket", s2)
	waitAgent(t, a1, s1)
	waitAgent(t, a2, s2)
	// An endpoint added through the API must come back too.
	p3 := lab.Netns("pod3")
	if out, err := runCLI(s1, "endpoint", "add", "pod3", "--ip", "10.1.1.30", "--netns", p3.Path); err != nil {
		t.Fatal(err, out)
	}
	// --cleanup against the live agent is refused and changes nothing.
	if out, err := n1.Run(vxdpBin, "agent", "--config", cfg1, "--socket", s1, "--cleanup"); exitCode(err) != 1 || !strings.Contains(out, "an agent is running") {
		t.Fatalf("cleanup with the agent alive: exit %d\n%s", exitCode(err), out)
	}
	for _, ns := range []*nstest.Netns{p1, p3} {
		if out, err := ns.Run("ip", "link", "show", "eth0"); err != nil {
			t.Fatalf("refused cleanup removed %s's device: %v\n%s", ns.Name, err, out)
		}
	}
	if out, err := runCLI(s1, "status"); err != nil {
		t.Fatalf("agent after a refused cleanup: %v\n%s", err, out)
	}

	// The stream: pod1 writes continuously, pod2 records the longest
	// pause between two reads.
	var ln net.Listener
	must(t, p2.Do(func() (err error) { ln, err = net.Listen("tcp4", "10.1.2.20:7100"); return }))
	defer ln.Close()
	var conn net.Conn
	must(t, p1.Do(func() (err error) { conn, err = net.DialTimeout("tcp4", "10.1.2.20:7100", 5*time.Second); return }))
	defer conn.Close()
	srv, err := ln.Accept()
	must(t, err)
	defer srv.Close()
	var received atomic.Int64
	var maxGap atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var werr, rerr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 16<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(buf); err != nil {
				select {
				case <-stop: // closed by the test
				default:
					werr = err
				}
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		last := time.Now()
		for {
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := srv.Read(buf)
			if n > 0 {
				now := time.Now()
				if g := now.Sub(last); int64(g) > maxGap.Load() {
					maxGap.Store(int64(g))
				}
				last = now
				received.Add(int64(n))
			}
			if err != nil {
				select {
				case <-stop:
				default:
					if err != io.EOF {
						rerr = err
					}
				}
				return
			}
		}
	}()

	// And an iperf3 stream beside it, the way an operator would watch.
	iperfSrv := lab.Start(p2, "iperf3-server", "iperf3", "-s", "-1", "-p", "7200")
	_ = iperfSrv
	time.Sleep(300 * time.Millisecond)
	type iperfResult struct {
		out string
		err error
	}
	iperfc := make(chan iperfResult, 1)
	go func() {
		out, err := p1.Run("iperf3", "-c", "10.1.2.20", "-p", "7200", "-t", "4", "-i", "0.5", "-f", "m")
		iperfc <- iperfResult{out, err}
	}()

	time.Sleep(time.Second)
	maxGap.Store(0)
	before := received.Load()
	must(t, a1.Signal(syscall.SIGKILL))
	a1.Wait(5 * time.Second)
	// The pod keeps its interface while no agent runs.
	if out := p1.MustRun(t, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, "10.1.1.10/32") {
		t.Fatalf("pod lost its interface with the agent:\n%s", out)
	}
	restart := time.Now()
	a1b := lab.Start(n1, "agent1-restarted", vxdpBin, "agent", "--config", cfg1, "--socket", s1)
	waitAgent(t, a1b, s1)
	t.Logf("agent restarted in %v", time.Since(restart))
	time.Sleep(3 * time.Second)
	close(stop)
	conn.Close()
	wg.Wait()
	if werr != nil || rerr != nil {
		t.Fatalf("stream broken by the restart: write %v, read %v", werr, rerr)
	}
	ir := <-iperfc
	if ir.err != nil || !strings.Contains(ir.out, "receiver") {
		t.Fatalf("iperf3 across the restart: %v\n%s", ir.err, ir.out)
	}
	t.Logf("iperf3 across kill -9 and restart:\n%s", ir.out)
	gap := time.Duration(maxGap.Load())
	t.Logf("longest pause in the stream across kill -9 and restart: %v; %d MB after the kill", gap, (received.Load()-before)>>20)
	if gap >= time.Second {
		t.Fatalf("stream paused %v (want < 1s)", gap)
	}
	if received.Load()-before < 10<<20 {
		t.Fatalf("only %d bytes after the kill", received.Load()-before)
	}
	out := a1b.Output()
	if !strings.Contains(out, "endpoint device adopted") || !strings.Contains(out, "host device adopted") {
		t.Fatalf("devices not adopted:\n%s", out)
	}
	if out, _ := runCLI(s1, "endpoint", "list"); !strings.Contains(out, "pod3") {
		t.Fatalf("API endpoint not restored:\n%s", out)
	}

	// Killed for good: --cleanup removes what is left.
	must(t, a1b.Signal(syscall.SIGKILL))
	a1b.Wait(5 * time.Second)
	cl, err := n1.Run(vxdpBin, "agent", "--config", cfg1, "--socket", s1, "--cleanup")
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, cl)
	}
	for _, ns := range []*nstest.Netns{p1, p3} {
		if out, _ := ns.Run("ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Fatalf("%s keeps its device after cleanup:\n%s", ns.Name, out)
		}
	}
	if out, _ := n1.Run("ip", "-o", "link"); strings.Contains(out, "vxdp") {
		t.Fatalf("node keeps vxdp devices after cleanup:\n%s", out)
	}
	if out, _ := n1.Run("ip", "route"); strings.Contains(out, "10.1.") {
		t.Fatalf("node keeps routes after cleanup:\n%s", out)
	}
}
