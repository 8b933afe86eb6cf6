package agent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxdp/vxdp/encap"
)

// notifySocket plays systemd's side of sd_notify for the agent: it
// collects the WATCHDOG=1 pings.
type notifySocket struct {
	mu    sync.Mutex
	pings []time.Time
}

func listenNotify(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{}
	go func() {
		buf := make([]byte, 1024)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:k]), "WATCHDOG=1") {
				n.mu.Lock()
				n.pings = append(n.pings, time.Now())
				n.mu.Unlock()
			}
		}
	}()
	return n
}

// since counts the pings after t.
func (n *notifySocket) since(t time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, p := range n.pings {
		if p.After(t) {
			c++
		}
	}
	return c
}

// The watchdog pings systemd while the packet path is alive, stops while
// a worker is stuck in a device that does not take its packets, and
// starts again once the device does; health says the same.
func TestWatchdog(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, reloadBefore), nil)
	notify := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50 ms
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ta.watchdog(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	from := time.Now()
	time.Sleep(500 * time.Millisecond)
	if c := notify.since(from); c < 3 || !ta.alive() {
		t.Fatalf("%d pings in 500 ms from a healthy agent (alive %v)", c, ta.alive())
	}

	// Pod pa's packet for the world goes to the host device, which stops
	// taking packets: pa's worker is stuck in that write.
	ta.host.Stall()
	ta.pod(t, "pa").Inject(ipv4UDP(addr("10.1.1.10").As4(), addr("198.51.100.1").As4()))
	deadline := time.Now().Add(stuckLimit + 5*time.Second)
	for ta.alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ta.alive() {
		t.Fatal("alive while a worker is stuck")
	}
	time.Sleep(100 * time.Millisecond) // a ping decided before may still be on its way
	from = time.Now()
	time.Sleep(500 * time.Millisecond)
	if c := notify.since(from); c != 0 {
		t.Fatalf("%d pings while a worker is stuck", c)
	}

	ta.host.Resume()
	if got := ta.host.WaitSent(1, 2*time.Second); len(got) != 1 {
		t.Fatalf("host device got %d packets after Resume", len(got))
	}
	from = time.Now()
	time.Sleep(500 * time.Millisecond)
	if c := notify.since(from); c < 3 || !ta.alive() {
		t.Fatalf("%d pings after the worker got unstuck (alive %v)", c, ta.alive())
	}
}

// ipv4UDP is a minimal IPv4/UDP packet from src to dst.
func ipv4UDP(src, dst [4]byte) []byte {
	p := make([]byte, encap.IPv4MinLen+encap.UDPLen)
	encap.IPv4(p).Encode(&encap.IPv4Fields{TotalLen: uint16(len(p)), TTL: 64, Protocol: encap.ProtoUDP, Source: src, Destination: dst})
	encap.UDP(p[encap.IPv4MinLen:]).Encode(1234, 5678, encap.UDPLen, 0)
	return p
}
