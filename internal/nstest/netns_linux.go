//go:build linux

package nstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Netns is a named network namespace owned by a Lab.
type Netns struct {
	Name string // full name, including the lab prefix
	Path string // /run/netns/<Name>
	// Wrap, if set, goes in front of `ip netns exec` in Command (and so
	// Launch): a command that execs its arguments in place once it has
	// done something of its own, such as joining a cgroup. It runs in
	// the mount namespace of the caller, before `ip netns exec` mounts
	// the namespace's own /sys.
	Wrap []string

	lab *Lab
}

// Run runs `ip netns exec <Name> args...` and returns its combined output. It
// is bounded by a 30 s timeout, after which the command and everything it
// spawned are killed.
func (n *Netns) Run(args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("nstest: Run needs a command")
	}
	return runCmd(cmdTimeout, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Command returns `ip netns exec <Name> args...` as a command of its own
// process group, killed whole when ctx ends (see the package's Command).
func (n *Netns) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"ip", "netns", "exec", n.Name}, args...)
	if len(n.Wrap) > 0 {
		full = append(slices.Clone(n.Wrap), full...)
	}
	return Command(ctx, full[0], full[1:]...)
}

// Do runs fn on the calling goroutine with its OS thread locked and switched
// into this namespace, and switches back and unlocks afterwards, also when fn
// panics or calls t.FailNow. Sockets and links fn creates stay in this
// namespace after Do returns. Goroutines started by fn do NOT inherit the
// namespace: they run on other threads, in the namespace the process started
// in.
func (n *Netns) Do(fn func() error) error {
	target, err := netns.GetFromPath(n.Path)
	if err != nil {
		return fmt.Errorf("nstest: open namespace %s: %w", n.Name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: get current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: enter namespace %s: %w", n.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the wrong namespace. Leaving it locked
			// makes the runtime destroy it when this goroutine ends instead
			// of handing it to unrelated code; the panic makes it loud.
			panic(fmt.Sprintf("nstest: cannot return from namespace %s: %v", n.Name, err))
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Sysctl writes value to the sysctl key inside this namespace. key is either
// dotted ("net.ipv4.ip_forward") or a path below /proc/sys
// ("net/ipv4/conf/eth0.1/rp_filter", for names that contain dots).
func (n *Netns) Sysctl(key, value string) error {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	p = filepath.Join("/proc/sys", filepath.Clean("/"+p))
	// /proc/sys/net resolves against the network namespace of the thread
	// that opens the file, so the open must happen inside Do.
	return n.Do(func() error {
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return fmt.Errorf("nstest: sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// NetlinkHandle returns a netlink handle whose sockets live in this
// namespace. The caller must Close it.
func (n *Netns) NetlinkHandle() (*netlink.Handle, error) {
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("nstest: netlink handle in %s: %w", n.Name, err)
	}
	return nh, nil
}

// handle opens the namespace, refusing anything that is not a separate
// namespace. netlink treats an invalid handle as "the current namespace", so
// this check is what keeps link changes out of the root namespace.
func (n *Netns) handle() (netns.NsHandle, error) {
	if err := n.checkNotOurs(); err != nil {
		return netns.None(), err
	}
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return netns.None(), fmt.Errorf("nstest: open namespace %s: %w", n.Name, err)
	}
	if !h.IsOpen() {
		return netns.None(), fmt.Errorf("nstest: open namespace %s: invalid handle", n.Name)
	}
	return h, nil
}

// checkNotOurs verifies that Path is bound to a namespace other than the one
// this test process runs in.
func (n *Netns) checkNotOurs() error {
	var ns, self syscall.Stat_t
	if err := syscall.Stat(n.Path, &ns); err != nil {
		return fmt.Errorf("nstest: namespace %s: %w", n.Name, err)
	}
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		return fmt.Errorf("nstest: own namespace: %w", err)
	}
	if ns.Dev == self.Dev && ns.Ino == self.Ino {
		return fmt.Errorf("nstest: %s refers to the test process's own network namespace", n.Path)
	}
	return nil
}
