//go:build linux

package nstest

import (
	"net"
	"net/netip"
)

// TB is the part of testing.TB the test layer uses; *testing.T and
// *testing.B satisfy it. It keeps the package free of the testing import, so
// that programs such as the benchmark can use Lab.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	TempDir() string
}

// TestLab is a Lab bound to one test: Netns, Veth and Start fail the test
// instead of returning an error, and the lab is closed by t.Cleanup, also
// when the test fails or panics. Those methods must be called from the
// test's own goroutine.
type TestLab struct {
	*Lab
	t TB
}

// New creates a lab for t. Its teardown (Lab.Close) is registered with
// t.Cleanup; anything it cannot remove fails the test with a message naming
// it. When the test has failed, the teardown first logs the end of every
// process's output.
func New(t TB) *TestLab {
	t.Helper()
	// Asking for the temp dir first registers its removal before our own
	// teardown, so it runs after it and logs stay readable while the
	// teardown reports on a failed test.
	l, err := Open(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	tl := &TestLab{Lab: l, t: t}
	t.Cleanup(tl.teardown)
	return tl
}

func (l *TestLab) teardown() {
	if l.t.Failed() {
		l.mu.Lock()
		procs := append([]*Proc(nil), l.procs...)
		l.mu.Unlock()
		for _, p := range procs {
			l.t.Logf("nstest: output of process %s (%s), last lines:\n%s", p.Name, p.LogPath, tail(p.Output(), 4096))
		}
	}
	if err := l.Close(); err != nil {
		l.t.Errorf("%v", err)
	}
}

// Netns is AddNetns failing the test on error.
func (l *TestLab) Netns(name string) *Netns {
	l.t.Helper()
	n, err := l.AddNetns(name)
	if err != nil {
		l.t.Fatalf("%v", err)
	}
	return n
}

// Veth is AddVeth failing the test on error.
func (l *TestLab) Veth(a *Netns, aName, aAddr string, b *Netns, bName, bAddr string, mtu int) {
	l.t.Helper()
	if err := l.AddVeth(a, aName, aAddr, b, bName, bAddr, mtu); err != nil {
		l.t.Fatalf("%v", err)
	}
}

// Start is Launch failing the test on error.
func (l *TestLab) Start(ns *Netns, name string, args ...string) *Proc {
	l.t.Helper()
	p, err := l.Launch(ns, name, args...)
	if err != nil {
		l.t.Fatalf("%v", err)
	}
	return p
}

// NewNetns gives t one namespace of a lab of its own, for tests that need
// nothing else (the drivers' tests). It is deleted when the test ends.
func NewNetns(t TB, name string) *Netns {
	t.Helper()
	return New(t).Netns(name)
}

// MustRun is Run that fails the test, showing the output, on error.
func (n *Netns) MustRun(t TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatalf("nstest: %v\n%s", err, out)
	}
	return out
}

// IP runs `ip args...` inside n and returns its output, failing the test on
// error.
func (n *Netns) IP(t TB, args ...string) string {
	t.Helper()
	return n.MustRun(t, append([]string{"ip"}, args...)...)
}

// MustDo is Do that fails the test on error.
func (n *Netns) MustDo(t TB, fn func() error) {
	t.Helper()
	if err := n.Do(fn); err != nil {
		t.Fatalf("in %s: %v", n.Name, err)
	}
}

// ListenUDP opens a UDP socket on addr inside n, closed when the test
// ends.
func (n *Netns) ListenUDP(t TB, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	n.MustDo(t, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}
