package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// notifyListener plays systemd's side of sd_notify: a unixgram socket
// collecting every message with the time it arrived.
type notifyListener struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	must(t, err)
	n := &notifyListener{path: path, conn: conn}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// waitFor waits for a message containing s that arrived after since.
func (n *notifyListener) waitFor(s string, since time.Time, timeout time.Duration) (notifyMsg, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		for _, m := range n.msgs {
			if !m.at.Before(since) && strings.Contains(m.text, s) {
				n.mu.Unlock()
				return m, true
			}
		}
		n.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return notifyMsg{}, false
}

func (n *notifyListener) count(s string, from, to time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if !m.at.Before(from) && m.at.Before(to) && strings.Contains(m.text, s) {
			c++
		}
	}
	return c
}

// scrape fetches an HTTP path from a server listening inside ns.
func scrape(ns *nstest.Netns, addr, path string) (string, error) {
	var body string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
		b, err := io.ReadAll(c)
		body = string(b)
		return err
	})
	return body, err
}

func metricValue(body, prefix string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			var v float64
			if _, err := fmt.Sscanf(line[len(prefix)+1:], "%g", &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

// The agent under systemd: READY only once traffic flows, watchdog pings
// (that they stop when a worker is stuck is agent's TestWatchdog),
// RELOADING/READY around SIGHUP, reload
// applying a diff without disturbing other flows, an invalid reload
// refused, metrics that move with traffic.
func TestSystemdReloadMetrics(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	n1, n2 := lab.Netns("node1"), lab.Netns("node2")
	pa, pb, pc := lab.Netns("pa"), lab.Netns("pb"), lab.Netns("pc")
	lab.Veth(n1, "eth0", "10.169.72.233/24", n2, "eth0", "10.169.72.238/24", 1500)
	notify := listenNotify(t)

	node1 := func(extraNode, policy string) string {
		return fmt.Sprintf(`node-name: node1
node-ip: 10.169.72.233
pod-cidr: 10.1.1.0/24
prometheus-serve-addr: 127.0.0.1:9962
nodes:
  - {name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}%s
endpoints:
  - {name: pa, ip: 10.1.1.10, netns: %s, identity: 1000}
  - {name: pb, ip: 10.1.1.11, netns: %s, identity: 1001%s}
`, extraNode, pa.Path, pb.Path, policy)
	}
	cfg1 := filepath.Join(dir, "node1.yaml")
	write(t, cfg1, node1("", ""))
	cfg2 := filepath.Join(dir, "node2.yaml")
	write(t, cfg2, fmt.Sprintf(`node-ip: 10.169.72.238
pod-cidr: 10.1.2.0/24
nodes:
  - {name: node1, ip: 10.169.72.233, pod-cidr: 10.1.1.0/24}
endpoints:
  - {name: pc, ip: 10.1.2.20, netns: %s, identity: 2000}
`, pc.Path))
	s1, s2 := filepath.Join(dir, "n1.sock"), filepath.Join(dir, "n2.sock")
	start := time.Now()
	a1 := lab.Start(n1, "agent1", "env", "NOTIFY_SOCKET="+notify.path, "WATCHDOG_USEC=400000",
		vxdpBin, "agent", "--config", cfg1, "--socket", s1)
	a2 := lab.Start(n2, "agent2", vxdpBin, "agent", "--config", cfg2, "--socket", s2)
	if _, ok := notify.waitFor("READY=1", start, 15*time.Second); !ok {
		t.Fatalf("no READY=1:\n%s", a1.Output())
	}
	waitAgent(t, a2, s2)
	// READY means traffic flows: no waiting here.
	if out, err := nstest.Ping(pa, "-c", "1", "-W", "2", "10.1.2.20"); err != nil {
		t.Fatalf("ping right after READY: %v\n%s", err, out)
	}

	t.Run("watchdog pings", func(t *testing.T) {
		from := time.Now()
		time.Sleep(time.Second)
		if c := notify.count("WATCHDOG=1", from, time.Now()); c < 3 {
			t.Fatalf("%d watchdog pings in a second (WatchdogSec 0.4 s)", c)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		body, err := scrape(n1, "127.0.0.1:9962", "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		key := `vxdp_device_packets_total{device="pa",direction="rx",kind="endpoint"}`
		before, ok := metricValue(body, key)
		if !ok {
			t.Fatalf("no %s in:\n%s", key, body)
		}
		for _, want := range []string{`vxdp_drops_total{reason="no_route"}`, "vxdp_endpoints 2", "vxdp_nodes 1", "vxdp_healthy 1", "vxdp_fib_entries",
			`vxdp_offload_active{device="pa",kind="endpoint",offload="tun-tso"} 1`,
			`vxdp_offload_units_total{device="pa",kind="endpoint",offload="tun-tso"}`} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		nstest.Ping(pa, "-c", "5", "-i", "0.05", "-W", "2", "10.1.2.20")
		body, _ = scrape(n1, "127.0.0.1:9962", "/metrics")
		if after, _ := metricValue(body, key); after < before+5 {
			t.Fatalf("%s %v -> %v after 5 pings", key, before, after)
		}
		if h, err := scrape(n1, "127.0.0.1:9962", "/healthz"); err != nil || !strings.Contains(h, "200 OK") {
			t.Fatalf("healthz: %v\n%s", err, h)
		}
	})

	t.Run("reload by SIGHUP", func(t *testing.T) {
		// A ping on the untouched flow pa -> pc runs across the reload.
		type res struct {
			out string
			err error
		}
		pingc := make(chan res, 1)
		go func() {
			out, err := nstest.Ping(pa, "-c", "40", "-i", "0.05", "-W", "1", "10.1.2.20")
			pingc <- res{out, err}
		}()
		time.Sleep(300 * time.Millisecond)
		write(t, cfg1, node1("\n  - {name: node3, ip: 10.169.72.240, pod-cidr: 10.1.3.0/24}", ", allow-from: [2000]"))
		sent := time.Now()
		must(t, a1.Signal(syscall.SIGHUP))
		m, ok := notify.waitFor("RELOADING=1", sent, 5*time.Second)
		if !ok || !strings.Contains(m.text, "MONOTONIC_USEC=") {
			t.Fatalf("no RELOADING=1 with MONOTONIC_USEC: %q", m.text)
		}
		if _, ok := notify.waitFor("READY=1", m.at, 5*time.Second); !ok {
			t.Fatal("no READY=1 after the reload")
		}
		r := <-pingc
		if !strings.Contains(r.out, " 0% packet loss") {
			t.Fatalf("the untouched flow lost packets during the reload:\n%s", r.out)
		}
		if out, _ := runCLI(s1, "node", "list"); !strings.Contains(out, "node3") {
			t.Fatalf("node3 not added:\n%s", out)
		}
		if out, _ := runCLI(s1, "endpoint", "list"); !strings.Contains(out, "2000") {
			t.Fatalf("policy not applied:\n%s", out)
		}
		if out, err := nstest.Ping(pb, "-c", "1", "-W", "1", "10.1.2.20"); err != nil {
			t.Fatalf("pb's outgoing traffic broke: %v\n%s", err, out)
		}

		// An invalid file is refused; the agent and its state stay.
		write(t, cfg1, "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/33\n")
		sent = time.Now()
		must(t, a1.Signal(syscall.SIGHUP))
		if _, ok := notify.waitFor("READY=1", sent, 5*time.Second); !ok {
			t.Fatal("no READY=1 after a refused reload")
		}
		time.Sleep(200 * time.Millisecond)
		if !a1.Alive() {
			t.Fatalf("agent died on an invalid reload:\n%s", a1.Output())
		}
		if !strings.Contains(a1.Output(), "reload refused") || !strings.Contains(a1.Output(), "pod-cidr") {
			t.Fatalf("refusal not logged with the key:\n%s", a1.Output())
		}
		if out, _ := runCLI(s1, "node", "list"); !strings.Contains(out, "node3") {
			t.Fatalf("state changed by a refused reload:\n%s", out)
		}
	})

	t.Run("STOPPING on shutdown", func(t *testing.T) {
		sent := time.Now()
		must(t, a1.Signal(syscall.SIGTERM))
		if _, ok := notify.waitFor("STOPPING=1", sent, 5*time.Second); !ok {
			t.Fatal("no STOPPING=1")
		}
		if code, err := a1.Wait(10 * time.Second); err != nil || code != 0 {
			t.Fatalf("exit %d %v", code, err)
		}
	})
	_ = os.Getpid
}
