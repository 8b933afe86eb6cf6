package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/vxdp/vxdp/internal/nstest"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func runCLI(sock string, args ...string) (string, error) {
	out, err := exec.Command(vxdpBin, append([]string{"--socket", sock}, args...)...).CombinedOutput()
	return string(out), err
}

func waitAgent(t *testing.T, p *nstest.Proc, sock string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			t.Fatalf("agent exited:\n%s", p.Output())
		}
		if _, err := runCLI(sock, "status"); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("agent not ready:\n%s", p.Output())
}

func dropCount(t *testing.T, sock, reason string) int {
	t.Helper()
	return allDrops(t, sock)[reason]
}

// allDrops returns the agent's drop counters by reason.
func allDrops(t *testing.T, sock string) map[string]int {
	t.Helper()
	var st struct {
		Drops map[string]int `json:"drops"`
	}
	readStats(t, sock, &st)
	return st.Drops
}

// readStats decodes `vxdp stats -o json` of the agent at sock into v.
func readStats(t *testing.T, sock string, v any) {
	t.Helper()
	out, err := runCLI(sock, "stats", "-o", "json")
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("stats json: %v\n%s", err, out)
	}
}

// underlaySwitch puts the hosts on one underlay segment: each gets eth0
// with its address (a prefix), joined to the bridge br0 of sw.
func underlaySwitch(t *testing.T, lab *nstest.TestLab, sw *nstest.Netns, hosts []*nstest.Netns, addrs []string) {
	t.Helper()
	sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun(t, "ip", "link", "set", "br0", "up")
	for i, h := range hosts {
		port := fmt.Sprintf("p%d", i)
		lab.Veth(h, "eth0", addrs[i], sw, port, "", 1500)
		sw.MustRun(t, "ip", "link", "set", port, "master", "br0")
	}
}

// transfer sends n bytes by TCP from one namespace to to:port in another
// and logs the rate, failing the test on error.
func transfer(t *testing.T, from, to *nstest.Netns, dst string, port int, n int64, timeout time.Duration) {
	t.Helper()
	bps, err := nstest.TCPTransfer(from, to, addr(dst), port, n, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s -> %s: %.0f MB/s", from.Name, dst, bps/1e6)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// writePcap stores captured Ethernet frames as a pcap file for tshark.
func writePcap(path string, frames [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			return err
		}
	}
	return nil
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("json: %v\n%s", err, s)
	}
}

// expectMonitorDrop runs `vxdp monitor --type drop` against sock, calls
// trigger, and fails unless a line containing want arrives within 10 s.
func expectMonitorDrop(t *testing.T, sock string, trigger func(), want string) {
	t.Helper()
	cmd := exec.Command(vxdpBin, "--socket", sock, "monitor", "--type", "drop")
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond)
	trigger()
	var seen []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("monitor ended; saw:\n%s", strings.Join(seen, "\n"))
			}
			if strings.Contains(l, want) {
				return
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no %q from vxdp monitor; saw:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}
