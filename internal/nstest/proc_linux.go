//go:build linux

package nstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrWaitTimeout is returned (wrapped) by Proc.Wait when the process is still
// running after the timeout.
var ErrWaitTimeout = errors.New("process still running")

// maxOutput bounds how much of a process's log Output returns.
const maxOutput = 16 << 20

// Proc is a long-running process started by Lab.Start inside a namespace.
//
// The process leads its own process group. After it exits it is left a
// zombie until the lab's teardown: a zombie keeps its pid, and therefore the
// process group id, from being recycled, so the teardown can signal the group
// (to get rid of children it left behind) without any risk of hitting an
// unrelated process.
type Proc struct {
	Name    string // name given to Start
	LogPath string // file receiving stdout and stderr

	cmd *exec.Cmd
	pid int

	done      chan struct{} // closed once the process has exited
	status    syscall.WaitStatus
	statusErr error

	reapMu sync.Mutex
	reaped bool
}

// Launch starts a long-running process inside ns (`ip netns exec`). Its
// stdout and stderr go to <name>.log in the lab's directory; Output returns
// them. The process and everything in its process group are killed by Close
// (SIGTERM, then SIGKILL after 3 s), and by the kernel should this process
// die first. name must be unique within the lab.
func (l *Lab) Launch(ns *Netns, name string, args ...string) (*Proc, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("nstest: bad process name %q", name)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("nstest: Launch(%q) needs a command", name)
	}
	if ns == nil || ns.lab != l {
		return nil, fmt.Errorf("nstest: Launch(%q): namespace does not belong to this lab", name)
	}
	logPath := filepath.Join(l.logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("nstest: Launch(%q): %w", name, err)
	}
	defer f.Close() // the child has its own copy

	cmd := ns.Command(context.Background(), args...)
	cmd.Stdout = f
	cmd.Stderr = f
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}

	// Starting under the lock guarantees the teardown either refuses this
	// process or sees it in l.procs; nothing can slip in between.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("nstest: Launch(%q) after the lab was closed", name)
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("nstest: Launch(%q): %w", name, err)
	}
	p.pid = cmd.Process.Pid
	l.procs = append(l.procs, p)
	l.mu.Unlock()

	go p.watch()
	return p, nil
}

// watch waits for the process to exit without reaping it and records its
// wait status.
func (p *Proc) watch() {
	defer close(p.done)
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			p.statusErr = fmt.Errorf("waitid %d: %w", p.pid, err)
			return
		}
		break
	}
	// siginfo's layout is architecture specific; the zombie's stat file
	// carries the same wait status portably (field 52, exit_code).
	f, err := procStat(p.pid)
	if err != nil || len(f) < 50 {
		p.statusErr = fmt.Errorf("read exit status of pid %d: %v", p.pid, err)
		return
	}
	code, err := strconv.ParseUint(f[49], 10, 32)
	if err != nil {
		p.statusErr = fmt.Errorf("parse exit status of pid %d: %w", p.pid, err)
		return
	}
	p.status = syscall.WaitStatus(code)
}

// Pid returns the process id (also its process group id).
func (p *Proc) Pid() int { return p.pid }

// Output returns what the process wrote to stdout and stderr so far (at most
// the last 16 MiB; the log file has everything).
func (p *Proc) Output() string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return fmt.Sprintf("[nstest: %v]", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxOutput {
		if _, err := f.Seek(st.Size()-maxOutput, io.SeekStart); err != nil {
			return fmt.Sprintf("[nstest: %v]", err)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxOutput))
	if err != nil {
		return string(b) + fmt.Sprintf("[nstest: %v]", err)
	}
	return string(b)
}

// Signal sends sig to the process (not to its children). It returns
// os.ErrProcessDone if the process has already exited.
func (p *Proc) Signal(sig os.Signal) error {
	if !p.Alive() {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits up to timeout for the process to exit. It returns the exit code
// when the process exited normally; when a signal killed it, the code is -1
// and the error names the signal. If the process is still running after
// timeout, the error wraps ErrWaitTimeout. Wait can be called repeatedly.
func (p *Proc) Wait(timeout time.Duration) (exitCode int, err error) {
	// Checked first so that an exited process is reported even for a zero
	// timeout, where select would otherwise pick between two ready cases.
	if p.Alive() {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			return -1, fmt.Errorf("nstest: %s (pid %d) after %v: %w", p.Name, p.pid, timeout, ErrWaitTimeout)
		}
	}
	if p.statusErr != nil {
		return -1, p.statusErr
	}
	switch {
	case p.status.Exited():
		return p.status.ExitStatus(), nil
	case p.status.Signaled():
		return -1, fmt.Errorf("nstest: %s (pid %d) killed by signal %v", p.Name, p.pid, p.status.Signal())
	default:
		return -1, fmt.Errorf("nstest: %s (pid %d) ended with wait status %#x", p.Name, p.pid, uint32(p.status))
	}
}

// signalGroup sends sig to the process's whole group, unless the leader has
// been reaped (then the group id might belong to someone else by now).
func (p *Proc) signalGroup(sig syscall.Signal) error {
	p.reapMu.Lock()
	defer p.reapMu.Unlock()
	if p.reaped {
		return nil
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}

// reap collects the exited process. Must only be called after done closed.
func (p *Proc) reap() {
	p.reapMu.Lock()
	defer p.reapMu.Unlock()
	if !p.reaped {
		p.cmd.Wait() // its status is already known from watch
		p.reaped = true
	}
}

func (p *Proc) isReaped() bool {
	p.reapMu.Lock()
	defer p.reapMu.Unlock()
	return p.reaped
}

// stopProcs terminates procs (newest first): SIGTERM to every group, a shared
// 3 s grace period, then SIGKILL to every group, which also removes children
// that outlived their leader. It returns one error per process it could not
// get rid of.
func stopProcs(procs []*Proc) []error {
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].signalGroup(syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Errorf("SIGTERM %s (pid %d): %w", procs[i].Name, procs[i].pid, err))
		}
	}
	waitAll(procs, procTermGrace)
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].signalGroup(syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("SIGKILL %s (pid %d): %w", procs[i].Name, procs[i].pid, err))
		}
	}
	killDeadline := time.Now().Add(procKillGrace)
	waitAll(procs, procKillGrace)
	// SIGKILL takes effect asynchronously; give children of the groups the
	// rest of the grace period to die so LeakCheck does not see them.
	for groupsAlive(procs) && time.Now().Before(killDeadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range procs {
		if p.Alive() {
			errs = append(errs, fmt.Errorf("process %s (pid %d) survived SIGKILL for %v", p.Name, p.pid, procKillGrace))
			continue
		}
		p.reap()
	}
	return errs
}

// waitAll waits until every process has exited or d has passed.
func waitAll(procs []*Proc, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-timer.C:
			return
		}
	}
}

// groupsAlive reports whether any live process other than a leader belongs
// to the process group of one of procs.
func groupsAlive(procs []*Proc) bool {
	if len(procs) == 0 {
		return false
	}
	leaders := map[int]bool{}
	for _, p := range procs {
		leaders[p.pid] = true
	}
	for pid, pgid := range processGroups() {
		if leaders[pgid] && pid != pgid {
			return true
		}
	}
	return false
}
