//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

const (
	// cmdTimeout bounds every short configuration command (ip, sysctl, ...).
	cmdTimeout = 15 * time.Second
	// termGrace is how long a background process gets between SIGTERM and
	// SIGKILL; agents remove their devices in that time.
	termGrace = 5 * time.Second
)

// lab owns every namespace and process of one run. All names it creates
// start with prefix, which contains this process's pid, so two runs never
// share one and a leftover can be traced to the run that made it.
//
// The root namespace is never configured: links are created inside a lab
// namespace with their peer placed directly in another lab namespace, and
// every command that touches the network runs as `ip -n NS` or
// `ip netns exec NS`.
type lab struct {
	prefix string
	dir    string // logs and configuration files
	logf   func(format string, args ...any)

	mu    sync.Mutex
	procs []*proc
}

func newLab(prefix, dir string, logf func(string, ...any)) *lab {
	return &lab{prefix: prefix, dir: dir, logf: logf}
}

// ns returns the full name of the lab namespace called short.
func (l *lab) ns(short string) string { return l.prefix + short }

// addNetns creates a namespace with its loopback up.
func (l *lab) addNetns(ctx context.Context, short string) error {
	name := l.ns(short)
	if _, err := l.cmd(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	_, err := l.cmd(ctx, "ip", "-n", name, "link", "set", "lo", "up")
	return err
}

// ip runs `ip -n <ns> args...`.
func (l *lab) ip(ctx context.Context, short string, args ...string) error {
	_, err := l.cmd(ctx, "ip", append([]string{"-n", l.ns(short)}, args...)...)
	return err
}

// exec runs a short command inside a lab namespace and returns its stdout.
func (l *lab) exec(ctx context.Context, short string, timeout time.Duration, args ...string) ([]byte, error) {
	return l.run(ctx, timeout, "ip", append([]string{"netns", "exec", l.ns(short)}, args...)...)
}

// cmd runs a short command bounded by cmdTimeout.
func (l *lab) cmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	return l.run(ctx, cmdTimeout, name, args...)
}

// run runs a command to completion in its own process group, killing the
// whole group when ctx ends or timeout passes. The error carries stderr.
func (l *lab) run(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	out, _, err := l.runUsage(ctx, timeout, name, args...)
	return out, err
}

// runUsage is run that also returns the CPU time (user+system) the command
// and its waited-for children used.
func (l *lab) runUsage(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
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
		return stdout.Bytes(), cpu, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), cpu, nil
}

// proc is a background process inside a lab namespace.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// start runs args inside a lab namespace in the background, its output
// going to <dir>/<name>.log. `ip netns exec` execs the command in place, so
// the pid is the command's own (its /proc/<pid>/stat is the command's CPU).
func (l *lab) start(short, name string, args ...string) (*proc, error) {
	logPath := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := exec.Command("ip", append([]string{"netns", "exec", l.ns(short)}, args...)...)
	c.Stdout, c.Stderr = f, f
	// Its own process group keeps a terminal's Ctrl-C away from it (the
	// lab stops it in order), and lets the lab signal it with anything it
	// spawned. Pdeathsig stops it should this program be killed outright;
	// SIGTERM gives an agent the chance to remove its devices.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := c.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: name, log: logPath, cmd: c, done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process group while the leader has not been
// reaped: until then its pid, and so the group id, cannot be reused.
func (p *proc) signal(sig syscall.Signal) {
	if p.alive() {
		_ = syscall.Kill(-p.pid(), sig)
	}
}

// stop ends the process: SIGTERM, then SIGKILL after termGrace.
func (p *proc) stop() {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(termGrace):
	}
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
	}
}

// logTail returns the end of the process's output, for error messages.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopAll stops every background process, newest first (clients before
// the servers and agents they depend on), in parallel within a bound.
func (l *lab) stopAll() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			p.stop()
		}(procs[i])
	}
	wg.Wait()
}

// owned lists the namespaces currently carrying the lab's prefix.
func (l *lab) owned() []string {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// teardown stops all processes and deletes every namespace with the lab's
// prefix. It uses its own time bound, not the run's context, so it also
// works after an interrupt cancelled that.
func (l *lab) teardown() error {
	l.stopAll()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, name := range l.owned() {
		if _, err := l.run(ctx, cmdTimeout, "ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	if left := l.owned(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left behind: %s", strings.Join(left, " ")))
	}
	return errors.Join(errs...)
}

// staleRuns lists namespaces made by runs of this program whose process is
// gone (killed before it could clean up), for --remove-stale.
func staleRuns() []string {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, "vxb")
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			names = append(names, name)
		}
	}
	return names
}
