package tun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// Namespaces made by this package's tests are named vxdpt-<pid>-tun<n>, so
// that leftovers of a killed run can be told apart from live ones.
const nsTag = "tun"

var nsSeq atomic.Int64

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tun tests need root (network namespaces, /dev/net/tun); skipping")
		os.Exit(0)
	}
	sweepStaleNetns()
	os.Exit(m.Run())
}

// sweepStaleNetns deletes namespaces this package left behind in a run that
// died before its cleanups ran (a timeout, a kill).
func sweepStaleNetns() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 3 || parts[0] != "vxdpt" || !strings.HasPrefix(parts[2], nsTag) {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// newNetns creates a named network namespace that is deleted when the test
// ends, pass or fail.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("vxdpt-%d-%s%d", os.Getpid(), nsTag, nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat("/run/netns/" + name); errors.Is(err, os.ErrNotExist) {
			return // the test deleted it itself
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// ipIn runs `ip -n ns args...`.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	full := append([]string{"-n", ns}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

// nsHandle opens a handle on a named namespace, closed at the end of the
// test.
func nsHandle(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// inNetns runs fn on an OS thread switched into the named namespace. Only
// create sockets and devices in fn: they keep their namespace afterwards,
// and everything else should run in the test's own namespace. If the thread
// cannot be switched back it stays locked, which makes the runtime discard
// it when the goroutine ends.
func inNetns(t *testing.T, name string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic in netns %s: %v", name, p)
				}
			}()
			return fn()
		}()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w (and fn: %v)", name, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
