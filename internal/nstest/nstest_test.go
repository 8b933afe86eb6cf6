//go:build linux

package nstest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netns"
)

func TestMain(m *testing.M) { Main(m, "nstest tests") }

var (
	addrA  = netip.MustParseAddr("192.0.2.1")
	addrB  = netip.MustParseAddr("192.0.2.2")
	addrA6 = netip.MustParseAddr("2001:db8::1")
	addrB6 = netip.MustParseAddr("2001:db8::2")
)

// twoHosts builds namespaces a and b joined by one veth pair.
func twoHosts(t *testing.T) (*TestLab, *Netns, *Netns) {
	t.Helper()
	l := New(t)
	a := l.Netns("a")
	b := l.Netns("b")
	l.Veth(a, "veth-a", "192.0.2.1/24, 2001:db8::1/64", b, "veth-b", "192.0.2.2/24, 2001:db8::2/64", 1500)
	return l, a, b
}

func TestTCPTransfer(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	const n = 20 << 20
	rate, err := TCPTransfer(a, b, addrB, 0, n, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rate <= 0 {
		t.Fatalf("rate %v", rate)
	}
	t.Logf("20 MiB over veth: %.1f MB/s", rate/1e6)

	// The other direction and IPv6, on a fixed port.
	if _, err := TCPTransfer(b, a, addrA6, 5201, 1<<20, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Zero bytes is a valid, verified transfer too.
	if _, err := TCPTransfer(a, b, addrB, 0, 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestTCPTransferUnreachable(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	// b does not own 192.0.2.3, so it cannot listen there.
	if _, err := TCPTransfer(a, b, netip.MustParseAddr("192.0.2.3"), 0, 1000, 2*time.Second); err == nil {
		t.Fatal("transfer to an address nobody owns succeeded")
	}
}

func TestUDPExchange(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	for _, tc := range []struct{ dst, wantSrc netip.Addr }{{addrB, addrA}, {addrB6, addrA6}} {
		seen, err := UDPExchange(a, b, tc.dst, 0, []byte("hello over veth"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if seen.Addr() != tc.wantSrc || seen.Port() == 0 {
			t.Errorf("receiver saw source %v, want %v:<port>", seen, tc.wantSrc)
		}
	}
}

func TestUDPEchoServer(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	echo, err := StartUDPEcho(b, netip.AddrPortFrom(addrB, 0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := UDPExchange(a, b, addrB, 0, []byte{byte(i)}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := echo.Count(); got != 0 {
		t.Errorf("long-running echo saw %d datagrams meant for one-off servers", got)
	}
	// Talk to the long-running server directly from a socket in a.
	var conn *net.UDPConn
	if err := a.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(echo.Addr()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	m, err := conn.Read(buf)
	if err != nil || string(buf[:m]) != "ping" {
		t.Fatalf("echo: %q, %v", buf[:m], err)
	}
	if p := echo.Peers(); len(p) != 1 || p[0].Addr() != addrA {
		t.Errorf("peers %v, want one from %v", p, addrA)
	}
}

func TestCapture(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	c, err := StartCapture(b, "veth-b")
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("captured payload")
	src, err := UDPExchange(a, b, addrB, 40000, payload, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TCPTransfer(a, b, addrB, 5001, 64<<10, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	frames := c.StopFrames()
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d frames, %d dropped", len(frames), c.Dropped())
	if again := c.Stop(); len(again) != len(frames) {
		t.Errorf("second Stop returned %d frames, first %d", len(again), len(frames))
	}

	dst := netip.AddrPortFrom(addrB, 40000)
	var udpIn, udpOut, syn, synAck bool
	for _, f := range frames {
		p := Decode(f.Data)
		if p.Layer(layers.LayerTypeEthernet) == nil {
			t.Fatalf("frame without Ethernet header: %v", p)
		}
		proto, s, d, ok := Endpoints(p)
		if !ok {
			continue
		}
		switch proto {
		case layers.IPProtocolUDP:
			udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !bytes.Equal(udp.Payload, payload) {
				continue
			}
			if s == src && d == dst && !f.Outgoing {
				udpIn = true
			}
			if s == dst && d == src && f.Outgoing {
				udpOut = true
			}
		case layers.IPProtocolTCP:
			tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp.SYN && !tcp.ACK && d == netip.AddrPortFrom(addrB, 5001) && s.Addr() == addrA && !f.Outgoing {
				syn = true
			}
			if tcp.SYN && tcp.ACK && s == netip.AddrPortFrom(addrB, 5001) && d.Addr() == addrA && f.Outgoing {
				synAck = true
			}
		}
	}
	if !udpIn || !udpOut || !syn || !synAck {
		t.Errorf("missing frames: udp request %v, udp reply %v, tcp syn %v, tcp syn-ack %v", udpIn, udpOut, syn, synAck)
	}
}

func TestCaptureBadInterface(t *testing.T) {
	t.Parallel()
	l := New(t)
	ns := l.Netns("c")
	if _, err := StartCapture(ns, "nosuchif0"); err == nil {
		t.Fatal("capture on a missing interface succeeded")
	}
}

func TestDecodeIP(t *testing.T) {
	// A minimal IPv4/UDP packet as a TUN device would deliver it: no
	// Ethernet header. Checksums are left zero; gopacket does not check them.
	pkt := make([]byte, 28)
	pkt[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(pkt[2:], 28)
	pkt[8] = 64
	pkt[9] = byte(layers.IPProtocolUDP)
	copy(pkt[12:], addrA.AsSlice())
	copy(pkt[16:], addrB.AsSlice())
	binary.BigEndian.PutUint16(pkt[20:], 1234)
	binary.BigEndian.PutUint16(pkt[22:], 4321)
	binary.BigEndian.PutUint16(pkt[24:], 8)
	p := DecodeIP(pkt)
	proto, s, d, ok := Endpoints(p)
	if !ok || proto != layers.IPProtocolUDP || s != netip.AddrPortFrom(addrA, 1234) || d != netip.AddrPortFrom(addrB, 4321) {
		t.Fatalf("got %v %v %v %v from %v", proto, s, d, ok, p)
	}
}

func TestDoSwitchesAndRestores(t *testing.T) {
	t.Parallel()
	_, a, _ := twoHosts(t)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	want, err := netns.GetFromPath(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	err = a.Do(func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if !cur.Equal(want) {
			return errors.New("not inside the namespace")
		}
		_, err = net.InterfaceByName("veth-a")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("from fn")
	if err := a.Do(func() error { return sentinel }); err != sentinel {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Fatal("thread left in another namespace")
	}
}

func TestRunAndSysctl(t *testing.T) {
	t.Parallel()
	_, a, _ := twoHosts(t)
	if out := a.MustRun(t, "ip", "-o", "addr", "show", "dev", "veth-a"); !strings.Contains(out, "192.0.2.1/24") || !strings.Contains(out, "2001:db8::1/64") {
		t.Fatalf("addresses missing:\n%s", out)
	}
	if out, err := a.Run("false"); err == nil {
		t.Fatalf("failing command reported success: %s", out)
	}
	rootFwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if out := strings.TrimSpace(a.MustRun(t, "cat", "/proc/sys/net/ipv4/ip_forward")); out != "1" {
		t.Fatalf("ip_forward in namespace is %q", out)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); !bytes.Equal(now, rootFwd) {
		t.Fatalf("root ip_forward changed from %q to %q", rootFwd, now)
	}
}

func TestVethRejectsBadNames(t *testing.T) {
	t.Parallel()
	l := New(t)
	a, b := l.Netns("a"), l.Netns("b")
	for _, name := range []string{"", "sixteen-chars-xx", "a/b", "has space"} {
		if err := l.veth(a, name, "", b, "ok0", "", 0); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if err := l.veth(a, "x0", "10.0.0.1", b, "y0", "", 0); err == nil {
		t.Error("address without prefix length accepted")
	}
	if out := a.MustRun(t, "ip", "-o", "link"); strings.Contains(out, "ok0") || strings.Contains(out, "x0") {
		t.Errorf("rejected veth was created:\n%s", out)
	}
}

func TestProcExitCodeAndOutput(t *testing.T) {
	t.Parallel()
	l := New(t)
	ns := l.Netns("p")
	p := l.Start(ns, "script", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 7 {
		t.Fatalf("Wait = %d, %v; want 7, nil", code, err)
	}
	out := p.Output()
	if !strings.Contains(out, "to-stdout") || !strings.Contains(out, "to-stderr") {
		t.Fatalf("output %q", out)
	}
	if p.Alive() {
		t.Fatal("exited process reported alive")
	}
	if b, err := os.ReadFile(p.LogPath); err != nil || string(b) != out {
		t.Fatalf("log file %s: %q, %v", p.LogPath, b, err)
	}

	s := l.Start(ns, "sleeper", "sleep", "60")
	if _, err := s.Wait(200 * time.Millisecond); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Wait on a running process: %v", err)
	}
	if !s.Alive() {
		t.Fatal("sleep not alive")
	}
	if err := s.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	code, err = s.Wait(10 * time.Second)
	if code != -1 || err == nil || !strings.Contains(err.Error(), "signal") {
		t.Fatalf("Wait after SIGUSR1 = %d, %v", code, err)
	}
	if err := s.Signal(syscall.SIGUSR1); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Signal to exited process: %v", err)
	}
}

// pidGone reports whether pid no longer names the process that started at
// startTime (it may have been recycled by now).
func pidGone(pid int, startTime uint64) bool {
	st, err := procStartTime(pid)
	return err != nil || st != startTime
}

func TestStartKilledAtCleanup(t *testing.T) {
	t.Parallel()
	var lab *TestLab
	var p *Proc
	var start uint64
	var nsPath string
	t.Run("lab", func(t *testing.T) {
		lab = New(t)
		ns := lab.Netns("p")
		nsPath = ns.Path
		p = lab.Start(ns, "sleeper", "sleep", "60")
		var err error
		if start, err = procStartTime(p.Pid()); err != nil {
			t.Fatal(err)
		}
		// Once ip has exec'd sleep, the process must sit in the namespace.
		var want syscall.Stat_t
		if err := syscall.Stat(ns.Path, &want); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			link, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.Pid()))
			comm := procComm(p.Pid())
			if comm == "sleep" && link == fmt.Sprintf("net:[%d]", want.Ino) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process is %q in %q, want sleep in net:[%d]", comm, link, want.Ino)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	if p == nil {
		t.Fatal("sub-test did not start the process")
	}
	if p.Alive() || !pidGone(p.Pid(), start) {
		t.Fatalf("sleep (pid %d) survived the lab's cleanup", p.Pid())
	}
	if code, err := p.Wait(0); code != -1 || err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("sleep should have died of SIGTERM, got %d, %v", code, err)
	}
	if _, err := os.Stat(nsPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still there: %v", nsPath, err)
	}
	if err := lab.LeakCheck(); err != nil {
		t.Error(err)
	}
}

// TestStubbornProcKilled checks the SIGKILL fallback for a process group that
// ignores SIGTERM.
func TestStubbornProcKilled(t *testing.T) {
	t.Parallel()
	var p *Proc
	var began time.Time
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		ns := l.Netns("p")
		p = l.Start(ns, "stubborn", "sh", "-c", "trap '' TERM; echo ready; sleep 60")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(p.Output(), "ready") {
			if time.Now().After(deadline) {
				t.Fatalf("never got ready: %q", p.Output())
			}
			time.Sleep(10 * time.Millisecond)
		}
		began = time.Now()
	})
	if p == nil || began.IsZero() {
		t.Fatal("sub-test failed")
	}
	if took := time.Since(began); took < procTermGrace {
		t.Errorf("teardown took %v, expected the %v SIGTERM grace first", took, procTermGrace)
	}
	if code, err := p.Wait(0); code != -1 || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("want death by SIGKILL, got %d, %v", code, err)
	}
}

// TestOrphanedChildKilled checks that children outliving their leader, which
// SIGTERM to the leader alone would miss, are removed by the group SIGKILL.
func TestOrphanedChildKilled(t *testing.T) {
	t.Parallel()
	var child int
	var start uint64
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		ns := l.Netns("p")
		p := l.Start(ns, "parent", "sh", "-c", "sleep 60 & echo child $!; exit 0")
		if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
			t.Fatalf("parent: %d, %v", code, err)
		}
		m := regexp.MustCompile(`child (\d+)`).FindStringSubmatch(p.Output())
		if m == nil {
			t.Fatalf("no child pid in %q", p.Output())
		}
		child, _ = strconv.Atoi(m[1])
		var err error
		if start, err = procStartTime(child); err != nil {
			t.Fatalf("child %d not running: %v", child, err)
		}
	})
	if child == 0 {
		t.Fatal("sub-test failed")
	}
	// The orphan was re-parented to init, which reaps it asynchronously.
	deadline := time.Now().Add(5 * time.Second)
	for !pidGone(child, start) {
		if time.Now().After(deadline) {
			t.Fatalf("orphaned child %d survived the cleanup", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLeakCheck(t *testing.T) {
	t.Parallel()
	var lab *TestLab
	t.Run("sublab", func(t *testing.T) {
		lab = New(t)
		a, b := lab.Netns("a"), lab.Netns("b")
		lab.Veth(a, "veth-a", "192.0.2.1/24", b, "veth-b", "192.0.2.2/24", 1400)
		lab.Start(a, "sleeper", "sleep", "60")
		if _, err := StartCapture(a, "veth-a"); err != nil { // deliberately not stopped
			t.Fatal(err)
		}
		if _, err := StartUDPEcho(b, netip.AddrPortFrom(addrB, 0)); err != nil { // not closed
			t.Fatal(err)
		}
		var undone bool
		lab.Defer("flag", func() error { undone = true; return nil })
		lab.Defer("flag check", func() error {
			if undone {
				return errors.New("Defer steps ran in creation order")
			}
			return nil
		})
		if err := lab.LeakCheck(); err == nil {
			t.Error("LeakCheck on a live lab found nothing")
		}
		if got, _ := Leftovers(); !containsPrefix(got, lab.Prefix()) {
			t.Errorf("Leftovers %v misses live lab %s", got, lab.Prefix())
		}
		if got, _ := OwnLeftovers(); !containsPrefix(got, lab.Prefix()) {
			t.Errorf("OwnLeftovers %v misses live lab %s", got, lab.Prefix())
		}
	})
	if lab == nil {
		t.Fatal("sub-test failed")
	}
	if err := lab.LeakCheck(); err != nil {
		t.Fatal(err)
	}
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if containsPrefix(left, lab.Prefix()) {
		t.Fatalf("namespaces of %s left: %v", lab.Prefix(), left)
	}
	if own, _ := OwnLeftovers(); containsPrefix(own, lab.Prefix()) {
		t.Fatalf("OwnLeftovers still lists %s: %v", lab.Prefix(), own)
	}
	links, err := rootLinks()
	if err != nil {
		t.Fatal(err)
	}
	if containsPrefix(links, lab.Prefix()) {
		t.Fatalf("links of %s left in root: %v", lab.Prefix(), links)
	}
	if _, err := os.Stat(filepath.Join(ownerDir, lab.Prefix())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("owner record of a clean lab kept: %v", err)
	}
}

func containsPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

func TestRemoveStale(t *testing.T) {
	t.Parallel()
	l := New(t)
	a := l.Netns("a")
	l.Netns("b")
	p := l.Start(a, "sleeper", "sleep", "60")
	// `ip netns exec` enters the namespace a moment after it starts; the
	// sweep can only find the process once it is in there.
	waitInNetns(t, p.Pid(), a.Path)

	// Pretend the owner died: record a pid that has certainly exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	owner := filepath.Join(ownerDir, l.Prefix())
	if err := os.WriteFile(owner, fmt.Appendf(nil, "%d 1\n", dead.Process.Pid), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only look at this lab's prefix so parallel runs are never touched.
	removed, err := removeStale(func(prefix string) bool { return prefix == l.Prefix() })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Fatalf("removed %v, want this lab's two namespaces", removed)
	}
	if left, _ := Leftovers(); containsPrefix(left, l.Prefix()) {
		t.Fatalf("still there: %v", left)
	}
	if _, err := p.Wait(5 * time.Second); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("process in stale namespace: %v", err)
	}
	if _, err := os.Stat(owner); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("owner record kept: %v", err)
	}
}

// waitInNetns waits until process pid runs `sleep` inside the namespace
// mounted at path.
func waitInNetns(t *testing.T, pid int, path string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	deadline := time.Now().Add(5 * time.Second)
	for {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if link == want && strings.TrimSpace(string(comm)) == "sleep" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not running sleep in %s after 5s (ns %q, comm %q)", pid, path, link, comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("ping not installed")
	}
	_, a, _ := twoHosts(t)
	out, err := Ping(a, "-c", "2", "-i", "0.2", "-W", "2", addrB.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "2 received") {
		t.Fatalf("unexpected ping output:\n%s", out)
	}
	if out, err := Ping(a, "-c", "1", "-W", "1", "192.0.2.3"); err == nil {
		t.Fatalf("ping to an absent host succeeded:\n%s", out)
	}
}

// A Lab used without a test, as the benchmark does: Close removes what it
// made, refuses later use and is idempotent, and a directory made by Open
// goes with it.
func TestOpenClose(t *testing.T) {
	t.Parallel()
	l, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddNetns("a")
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	b, _ := l.AddNetns("b")
	if err := l.AddVeth(a, "veth-a", "192.0.2.1/24", b, "veth-b", "192.0.2.2/24", 0); err != nil {
		t.Error(err)
	}
	if _, err := l.AddNetns("a"); err == nil {
		t.Error("second namespace a accepted")
	}
	p, err := l.Launch(a, "sleeper", "sleep", "60")
	if err != nil {
		t.Error(err)
	}
	if l.Lookup("b") != b || len(l.Namespaces()) != 2 {
		t.Errorf("Lookup(b) = %v, Namespaces = %v", l.Lookup("b"), l.Namespaces())
	}
	dir := l.Dir()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if p != nil && p.Alive() {
		t.Error("process alive after Close")
	}
	if left, _ := Leftovers(); containsPrefix(left, l.Prefix()) {
		t.Errorf("namespaces left: %v", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log directory kept: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.AddNetns("c"); err == nil {
		t.Error("AddNetns after Close accepted")
	}
	if _, err := l.Launch(a, "late", "true"); err == nil {
		t.Error("Launch after Close accepted")
	}
}

// A stream with a user timeout is given up when its path goes away for
// longer, and the error says it was cut, not corrupted.
func TestStreamUserTimeoutCut(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t)
	st, err := StartStreamWith(a, b, addrB, 5301, 1<<20, StreamOptions{UserTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, v := st.Progress(); v == 0 || st.Err() != nil {
		t.Fatalf("before the cut: %d bytes verified, err %v", v, st.Err())
	}
	b.MustRun(t, "ip", "link", "set", "veth-b", "down")
	deadline := time.Now().Add(10 * time.Second)
	for st.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	sent, verified, err := st.Abort()
	if err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("after the cut: err %v; want a timeout, not corruption", err)
	}
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("after the cut: err %v, want ETIMEDOUT", err)
	}
	if verified > sent || verified == 0 {
		t.Errorf("sent %d, verified %d", sent, verified)
	}
}
