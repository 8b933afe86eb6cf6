// Package netnstest gives driver tests throwaway network namespaces:
// created per test, deleted when it ends, leftovers of killed runs swept,
// and a way to run code (opening sockets and devices) inside one.
package netnstest

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

var seq atomic.Int64

// Sweep deletes the namespaces of tag that a run of the same tests left
// behind when it died before its cleanups ran (a timeout, a kill).
func Sweep(tag string) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 3 || parts[0] != "vxdpt" || !strings.HasPrefix(parts[2], tag) {
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

// New creates a network namespace named vxdpt-<pid>-<tag><n> that is
// deleted when the test ends, pass or fail.
func New(t *testing.T, tag string) string {
	t.Helper()
	name := fmt.Sprintf("vxdpt-%d-%s%d", os.Getpid(), tag, seq.Add(1))
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

// IP runs `ip -n ns args...`.
func IP(t *testing.T, ns string, args ...string) {
	t.Helper()
	full := append([]string{"-n", ns}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

// Handle opens a handle on a named namespace, closed at the end of the
// test.
func Handle(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Do runs fn on an OS thread switched into the named namespace and fails
// the test if that or fn fails. Only create sockets and devices in fn: they
// keep their namespace afterwards, and everything else should run in the
// test's own namespace.
func Do(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := Run(name, fn); err != nil {
		t.Fatal(err)
	}
}

// Run is Do returning the error. If the thread cannot be switched back it
// stays locked, which makes the runtime discard it when the goroutine ends.
func Run(name string, fn func() error) error {
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
	return <-errc
}
