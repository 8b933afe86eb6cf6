//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// cmdTimeout bounds every short configuration command (ip, sysctl, ...).
const cmdTimeout = 15 * time.Second

// lab is what one mode of the run builds: an nstest lab, whose namespaces
// carry a prefix unique to it and are all removed by Close together with
// the processes started in them, and the run's directory and progress log.
//
// The root namespace is never configured: links are created inside a lab
// namespace with their peer placed directly in another lab namespace, and
// every command that touches the network runs inside a lab namespace.
type lab struct {
	*nstest.Lab
	dir  string // configuration files, sockets and the processes' logs
	logf func(format string, args ...any)
	// underlayGRO: buildUnderlay turns on GRO on the node-to-node veth.
	underlayGRO bool
	// cgroups: the CPU cgroup of each pod or node namespace, by short
	// name (--pod-cgroups, --node-cgroups); removeCgroups removes them.
	cgroups       map[string]string
	removeCgroups func() error
}

func openLab(dir string, logf func(string, ...any)) (*lab, error) {
	l, err := nstest.Open(dir)
	if err != nil {
		return nil, err
	}
	return &lab{Lab: l, dir: dir, logf: logf}, nil
}

// addNetns creates the lab namespace called short.
// Every command run in it starts in its CPU cgroup, if it has one.
func (l *lab) addNetns(short string) error {
	n, err := l.AddNetns(short)
	if err == nil && l.cgroups[short] != "" {
		n.Wrap = cgroupWrap(l.cgroups[short])
	}
	return err
}

// netns returns the lab namespace called short, which must exist.
func (l *lab) netns(short string) *nstest.Netns {
	n := l.Lookup(short)
	if n == nil {
		panic("vxdp-bench: no namespace " + short + " in this lab")
	}
	return n
}

// ip runs `ip args...` inside the namespace short.
func (l *lab) ip(short string, args ...string) error {
	if out, err := l.netns(short).Run(append([]string{"ip"}, args...)...); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// exec runs a command inside the namespace short and returns its stdout.
func (l *lab) exec(ctx context.Context, short string, timeout time.Duration, args ...string) ([]byte, error) {
	out, _, err := runUsage(ctx, timeout, l.netns(short), args...)
	return out, err
}

// start runs args inside the namespace short in the background, its output
// going to <dir>/<name>.log. `ip netns exec` execs the command in place, so
// the pid is the command's own (its /proc/<pid>/stat is the command's CPU).
func (l *lab) start(short, name string, args ...string) (*nstest.Proc, error) {
	return l.Launch(l.netns(short), name, args...)
}

// useCgroups gives each of the namespaces names (pods, nodes), made
// later by addNetns, a CPU cgroup of its own under root, named after the
// lab. Close removes them.
func (l *lab) useCgroups(root cpuCgroupRoot, names []string) error {
	dirs, remove, err := makeCgroups(root, l.Prefix(), names)
	if err != nil {
		return err
	}
	l.cgroups, l.removeCgroups = dirs, remove
	return nil
}

// Close removes the lab (its processes first) and then its cgroups.
func (l *lab) Close() error {
	err := l.Lab.Close()
	if l.removeCgroups != nil {
		err = errors.Join(err, l.removeCgroups())
		l.removeCgroups = nil
	}
	return err
}

// runLocal runs a command that needs no network (the go command, the vxdp CLI
// over its unix socket) to completion, bounded by timeout and ctx.
func runLocal(ctx context.Context, timeout time.Duration, args ...string) ([]byte, error) {
	out, _, err := runUsage(ctx, timeout, nil, args...)
	return out, err
}

// runUsage runs args inside ns (nil: where this program runs) in a process
// group of its own, killing the whole group when ctx ends or timeout
// passes. It returns stdout and the CPU time (user+system) the command and
// its waited-for children used; the error carries stderr.
func runUsage(ctx context.Context, timeout time.Duration, ns *nstest.Netns, args ...string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var c *exec.Cmd
	if ns != nil {
		c = ns.Command(ctx, args...)
	} else {
		c = nstest.Command(ctx, args[0], args[1:]...)
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var cpu time.Duration
	if c.ProcessState != nil {
		cpu = c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(lastLines(stdout.String(), 3))
		}
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %v", timeout)
		}
		return stdout.Bytes(), cpu, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), cpu, nil
}

// logTail returns the end of a process's output, for error messages.
func logTail(p *nstest.Proc, n int) string { return lastLines(p.Output(), n) }

// exitError describes how a process that is no longer alive ended.
func exitError(p *nstest.Proc) error {
	code, err := p.Wait(0)
	if err != nil {
		return err
	}
	return fmt.Errorf("exit status %d", code)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
