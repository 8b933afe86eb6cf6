package afxdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/pkttest"

	"github.com/vxdp/vxdp/internal/nstest"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "afxdp kernel tests need root; only the ring tests run")
	} else {
		nstest.RemoveStale()
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, BPF, AF_XDP)")
	}
}

// newNetns creates a namespace deleted when the test ends, pass or fail.
func newNetns(t *testing.T) *nstest.Netns { t.Helper(); return nstest.NewNetns(t, "afxdp") }

// ipIn runs `ip -n ns args...` and returns its output.
func ipIn(t *testing.T, ns *nstest.Netns, args ...string) string {
	t.Helper()
	return ns.IP(t, args...)
}

// inNetns runs fn on an OS thread switched into the namespace.
func inNetns(t *testing.T, ns *nstest.Netns, fn func() error) { t.Helper(); ns.MustDo(t, fn) }

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

// pair is two namespaces joined by a veth: A's veth0 has 192.0.2.1/24, B's
// veth1 192.0.2.2/24.
type pair struct {
	a, b *nstest.Netns
}

// newPair makes the topology; queues > 1 gives both veth ends that many RX
// and TX queues.
func newPair(t *testing.T, queues int) pair {
	t.Helper()
	p := pair{a: newNetns(t), b: newNetns(t)}
	for _, ns := range []*nstest.Netns{p.a, p.b} {
		ipIn(t, ns, "link", "set", "lo", "up")
	}
	args := []string{"link", "add", "veth0"}
	if queues > 1 {
		q := strconv.Itoa(queues)
		args = append(args, "numtxqueues", q, "numrxqueues", q)
	}
	args = append(args, "type", "veth", "peer", "name", "veth1", "netns", p.b.Name)
	if queues > 1 {
		q := strconv.Itoa(queues)
		args = append(args, "numtxqueues", q, "numrxqueues", q)
	}
	ipIn(t, p.a, args...)
	ipIn(t, p.a, "addr", "add", "192.0.2.1/24", "dev", "veth0")
	ipIn(t, p.b, "addr", "add", "192.0.2.2/24", "dev", "veth1")
	ipIn(t, p.a, "link", "set", "veth0", "up")
	ipIn(t, p.b, "link", "set", "veth1", "up")
	return p
}

// openIn opens an Underlay in ns, closed at the end of the test.
func openIn(t *testing.T, ns *nstest.Netns, cfg Config) *Underlay {
	t.Helper()
	u, err := tryOpenIn(ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func tryOpenIn(ns *nstest.Netns, cfg Config) (*Underlay, error) {
	var u *Underlay
	err := ns.Do(func() error {
		var err error
		u, err = Open(cfg)
		return err
	})
	return u, err
}

func defaultConfig() Config {
	return Config{Device: "veth0", NodeIP: addrA, Port: 8472}
}

func udpConnIn(t *testing.T, ns *nstest.Netns, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c := ns.ListenUDP(t, addr)
	// Room for every datagram of a test burst, beyond net.core.rmem_max.
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		})
	}
	return c
}

// xdpAttachedRE matches what `ip -d link show` prints for an attached XDP
// program: "prog/xdp id N" (and "xdp"/"xdpgeneric" on the link line).
var xdpAttachedRE = regexp.MustCompile(`prog/xdp|\bxdp(generic|drv|offload)?\b`)

func xdpShown(t *testing.T, ns *nstest.Netns, dev string) (bool, string) {
	t.Helper()
	out := ipIn(t, ns, "-d", "link", "show", "dev", dev)
	return xdpAttachedRE.MatchString(out), out
}

// udpPacket builds an IPv4/UDP packet with valid checksums starting at
// offset in a buffer with that much headroom.
func udpPacket(src, dst netip.AddrPort, payload []byte, offset int) []byte {
	return append(make([]byte, offset), pkttest.UDP4(src, dst, payload)...)
}

// closeAfter closes u if the test is still running after d: a Read that
// waits for a packet that never comes then fails instead of hanging.
func closeAfter(t *testing.T, u *Underlay, d time.Duration) {
	timer := time.AfterFunc(d, func() { u.Close() })
	t.Cleanup(func() { timer.Stop() })
}

// quietAudit waits (briefly) until no frame is in flight in the kernel and
// checks the frame accounting of every queue.
func quietAudit(t *testing.T, u *Underlay) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for _, q := range u.Queues() {
		for {
			q.rxMu.Lock()
			q.txMu.Lock()
			q.reap()
			q.publishTX()
			hidden, err := q.audit()
			q.txMu.Unlock()
			q.rxMu.Unlock()
			if err != nil {
				t.Fatalf("%s: %v", q.Name(), err)
			}
			if hidden == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d frames still in the kernel", q.Name(), hidden)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// crash simulates a vxdp that died: its sockets, maps and memory go away
// with the process, the program it attached through netlink stays.
func (u *Underlay) crash() {
	u.closeOnce.Do(func() {
		for _, q := range u.queues {
			q.Close()
		}
		u.mode = 0 // skip the detach
		u.teardown()
		u.closeErr = errors.New("crashed")
	})
}
