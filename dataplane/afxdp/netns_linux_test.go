package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/netnstest"
	"golang.org/x/sys/unix"
)

// Namespaces made by these tests are named vxdpx-<pid>-<n>: unique per run,
// and a leftover of a killed run is recognised by its dead pid.
const nsPrefix = "vxdpx-"

var nsSeq atomic.Int64

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "afxdp kernel tests need root; only the ring tests run")
	} else {
		sweepStaleNetns()
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, BPF, AF_XDP)")
	}
}

// sweepStaleNetns deletes namespaces a previous run of these tests left
// behind when it died before its cleanups ran. A pid that looks dead may
// be a live run in another PID namespace, so only namespaces older than
// any test run (go test's default timeout is 10 minutes) go.
func sweepStaleNetns() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleAfter {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

const staleAfter = 30 * time.Minute

// newNetns creates a namespace deleted when the test ends, pass or fail.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// ipIn runs `ip -n ns args...` and returns its output.
func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	full := append([]string{"-n", ns}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// inNetns runs fn on an OS thread switched into the named namespace. If
// the thread cannot be switched back it stays locked, and the runtime
// discards it when the goroutine ends.
func inNetns(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := runInNetns(name, fn); err != nil {
		t.Fatal(err)
	}
}

func runInNetns(name string, fn func() error) error { return netnstest.Run(name, fn) }

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

// pair is two namespaces joined by a veth: A's veth0 has 192.0.2.1/24, B's
// veth1 192.0.2.2/24.
type pair struct {
	a, b string
}

// newPair makes the topology; queues > 1 gives both veth ends that many RX
// and TX queues.
func newPair(t *testing.T, queues int) pair {
	t.Helper()
	p := pair{a: newNetns(t), b: newNetns(t)}
	for _, ns := range []string{p.a, p.b} {
		ipIn(t, ns, "link", "set", "lo", "up")
	}
	args := []string{"link", "add", "veth0"}
	if queues > 1 {
		q := strconv.Itoa(queues)
		args = append(args, "numtxqueues", q, "numrxqueues", q)
	}
	args = append(args, "type", "veth", "peer", "name", "veth1", "netns", p.b)
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
func openIn(t *testing.T, ns string, cfg Config) *Underlay {
	t.Helper()
	u, err := tryOpenIn(ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func tryOpenIn(ns string, cfg Config) (*Underlay, error) {
	var u *Underlay
	err := runInNetns(ns, func() error {
		var err error
		u, err = Open(cfg)
		return err
	})
	return u, err
}

func defaultConfig() Config {
	return Config{Device: "veth0", NodeIP: addrA, Port: 8472}
}

func udpConnIn(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNetns(t, ns, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
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

func xdpShown(t *testing.T, ns, dev string) (bool, string) {
	t.Helper()
	out := ipIn(t, ns, "-d", "link", "show", "dev", dev)
	return xdpAttachedRE.MatchString(out), out
}

func sum16(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// udpPacket builds an IPv4/UDP packet with valid checksums, as the engine
// would, starting at offset in a buffer with that much headroom.
func udpPacket(src, dst netip.AddrPort, payload []byte, offset int) []byte {
	buf := make([]byte, offset+28+len(payload))
	p := buf[offset:]
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = unix.IPPROTO_UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], sum16(p[:20], 0))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	var pseudo uint32
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(p[i])<<8 | uint32(p[i+1])
	}
	pseudo += unix.IPPROTO_UDP + uint32(len(u))
	c := sum16(u, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return buf
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
