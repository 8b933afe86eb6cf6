//go:build linux

package nstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// ownerDir holds one file per live lab recording which test process owns
	// the prefix. It lives on /run (tmpfs) like /run/netns, so both vanish
	// together on reboot. RemoveStale uses it to tell crashed runs from live
	// ones that merely look the same.
	ownerDir = "/run/vxdp-nstest"

	// procTermGrace is how long a process gets to exit after SIGTERM before
	// its whole process group is SIGKILLed.
	procTermGrace = 3 * time.Second
	// procKillGrace bounds the wait after SIGKILL; a process still around
	// after that is stuck in the kernel and is reported as a leak.
	procKillGrace = 5 * time.Second

	// cmdTimeout bounds every short helper command (ip, ping via Run, ...).
	cmdTimeout = 30 * time.Second
)

// prefixRE matches names made by any lab: "vx", 6 lowercase hex digits, "-".
var prefixRE = regexp.MustCompile(`^vx[0-9a-f]{6}-`)

// nameRE restricts the short names callers give to namespaces and processes
// so that they are safe both as netns names and as file names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Lab owns every namespace, link and process one test or one benchmark run
// makes. Names share a unique prefix ("vx" + 6 random lowercase hex chars +
// "-") so that parallel runs and leftovers of crashed runs never collide.
//
// Its methods return errors and know nothing of testing; tests use the
// TestLab that New returns, which fails the test instead and tears the lab
// down with t.Cleanup. A program (the benchmark) calls Open and Close.
type Lab struct {
	prefix    string
	ownerFile string
	logDir    string
	ownLogDir bool // logDir was made by Open and goes with the lab

	mu     sync.Mutex
	closed bool
	nss    map[string]*Netns
	procs  []*Proc
	undo   []undoStep
}

// undoStep is one entry of the teardown stack, run in reverse order.
type undoStep struct {
	what string
	fn   func() error
}

// Open creates a lab. Processes started in it log to <dir>/<name>.log; with
// dir "" a temporary directory is made and removed by Close. The caller
// must call Close, also on its error paths: Close is what removes the
// namespaces.
func Open(dir string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("nstest: network namespaces need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("nstest: iproute2 is required but `ip` is not in PATH: %w", err)
	}
	own := dir == ""
	if own {
		var err error
		if dir, err = os.MkdirTemp("", "nstest-"); err != nil {
			return nil, fmt.Errorf("nstest: %w", err)
		}
	}
	prefix, owner, err := claimPrefix()
	if err != nil {
		if own {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("nstest: %w", err)
	}
	return &Lab{prefix: prefix, ownerFile: owner, logDir: dir, ownLogDir: own, nss: map[string]*Netns{}}, nil
}

// Prefix returns the unique name prefix of this lab, e.g. "vx1a2b3c-".
func (l *Lab) Prefix() string { return l.prefix }

// Dir returns the directory receiving the logs of the lab's processes.
func (l *Lab) Dir() string { return l.logDir }

// Defer registers fn to run during teardown after all processes are gone and
// before the namespaces created earlier than this call are deleted. Use it for
// objects that pin a namespace (open sockets, TUN fds) so they are released
// before the namespace is deleted.
func (l *Lab) Defer(what string, fn func() error) {
	l.pushUndo(what, fn)
}

func (l *Lab) pushUndo(what string, fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.undo = append(l.undo, undoStep{what: what, fn: fn})
}

// AddNetns creates the namespace <prefix><name> with `ip netns add` and
// brings its loopback up. The namespace is deleted by Close.
func (l *Lab) AddNetns(name string) (*Netns, error) {
	if !nameRE.MatchString(name) || len(l.prefix)+len(name) > 200 {
		return nil, fmt.Errorf("nstest: bad namespace name %q (letters, digits, '_', '.', '-'; not too long)", name)
	}
	full := l.prefix + name
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("nstest: namespace %q asked for after the lab was closed", name)
	}
	if _, dup := l.nss[full]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("nstest: namespace %q created twice", name)
	}
	n := &Netns{Name: full, Path: filepath.Join("/run/netns", full), lab: l}
	l.nss[full] = n
	// Registered before the add: if it got half way, the teardown still
	// removes what exists, and deleting nothing is harmless.
	l.undo = append(l.undo, undoStep{"delete namespace " + full, func() error { return deleteNetns(full) }})
	l.mu.Unlock()

	if out, err := runCmd(cmdTimeout, "ip", "netns", "add", full); err != nil {
		return nil, fmt.Errorf("nstest: %w\n%s", err, out)
	}
	if err := n.checkNotOurs(); err != nil {
		return nil, err
	}
	if out, err := runCmd(cmdTimeout, "ip", "-n", full, "link", "set", "lo", "up"); err != nil {
		return nil, fmt.Errorf("nstest: %w\n%s", err, out)
	}
	return n, nil
}

// Lookup returns the lab's namespace called name (without the prefix), or
// nil.
func (l *Lab) Lookup(name string) *Netns {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nss[l.prefix+name]
}

// Namespaces returns the lab's namespaces, in no particular order.
func (l *Lab) Namespaces() []*Netns {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Netns, 0, len(l.nss))
	for _, n := range l.nss {
		out = append(out, n)
	}
	return out
}

// Close tears the lab down: first every process started by Launch is stopped
// (SIGTERM to its process group, SIGKILL after 3 s), then captures, servers,
// Defer functions and namespaces are removed in reverse order of creation,
// and finally LeakCheck runs. It returns everything that could not be
// removed, each naming what it is. Later calls return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := slices.Clone(l.procs)
	undo := slices.Clone(l.undo)
	l.mu.Unlock()

	var errs []error
	errs = append(errs, stopProcs(procs)...)
	for i := len(undo) - 1; i >= 0; i-- {
		if err := runGuarded(undo[i].fn); err != nil {
			errs = append(errs, fmt.Errorf("teardown step %q: %w", undo[i].what, err))
		}
	}
	if err := l.LeakCheck(); err != nil {
		errs = append(errs, fmt.Errorf("leak check after teardown: %w", err))
	}
	// Keep the owner file when something was left behind: RemoveStale then
	// recognises the leftovers once this process is gone.
	if len(errs) == 0 {
		os.Remove(l.ownerFile)
	}
	if l.ownLogDir {
		os.RemoveAll(l.logDir)
	}
	if len(errs) > 0 {
		return fmt.Errorf("nstest: %w", errors.Join(errs...))
	}
	return nil
}

// runGuarded runs fn, turning a panic into an error so that one failing
// teardown step does not skip the ones after it.
func runGuarded(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

// LeakCheck reports anything carrying this lab's prefix that still exists:
// namespaces (ip netns list), links in the test process's own (root) network
// namespace (ip -o link), and processes started by Launch, including members
// of their process groups. It is run by Close; a test may also call it
// after the lab's test has finished (for example after a t.Run sub-test that
// owned the lab). Called while the lab is still in use it reports live
// objects as leaks.
func (l *Lab) LeakCheck() error {
	problems := l.ours(netnsList, "namespace %s still exists")
	problems = append(problems, l.ours(rootLinks, "link %s exists in the root namespace")...)
	l.mu.Lock()
	procs := slices.Clone(l.procs)
	l.mu.Unlock()
	groups := map[int]*Proc{}
	for _, p := range procs {
		if p.Alive() {
			problems = append(problems, fmt.Sprintf("process %s (pid %d) is still running", p.Name, p.pid))
		} else if !p.isReaped() {
			problems = append(problems, fmt.Sprintf("process %s (pid %d) has exited but was not reaped", p.Name, p.pid))
		}
		groups[p.pid] = p
	}
	if len(groups) > 0 {
		for pid, pgid := range processGroups() {
			if p, ok := groups[pgid]; ok && pid != p.pid {
				problems = append(problems, fmt.Sprintf("pid %d (%s) of process group of %s is still running", pid, procComm(pid), p.Name))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// ours formats each name list returns that carries the lab's prefix, or the
// error list returned.
func (l *Lab) ours(list func() ([]string, error), format string) []string {
	names, err := list()
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, l.prefix) {
			out = append(out, fmt.Sprintf(format, n))
		}
	}
	return out
}

// Leftovers lists namespaces whose names look like those made by a lab
// ("vx" + 6 hex + "-"), whether or not their owner is still running. Use
// RemoveStale to delete only those of test processes that are gone.
func Leftovers() ([]string, error) {
	names, err := netnsList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if prefixRE.MatchString(n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// OwnLeftovers lists namespaces left by labs of this test process. Unlike
// Leftovers it ignores labs of other processes, so a TestMain can call it
// after m.Run to fail on leaks without tripping over parallel `go test` runs.
func OwnLeftovers() ([]string, error) {
	names, err := Leftovers()
	if err != nil {
		return nil, err
	}
	self, err := procStartTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	want := fmt.Sprintf("%d %d", os.Getpid(), self)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(ownerDir, n[:len("vx000000-")]))
		if err == nil && strings.TrimSpace(string(b)) == want {
			out = append(out, n)
		}
	}
	return out, nil
}

// RemoveStale deletes namespaces left behind by labs whose test process no
// longer exists (killed by a timeout or a signal before its cleanups ran), and
// kills processes still running inside them. Namespaces of labs whose owner is
// alive — for example a parallel `go test` of another package — and
// look-alike names without an owner record are left alone. It returns the
// namespaces it deleted. Typically called from TestMain.
func RemoveStale() ([]string, error) {
	return removeStale(func(string) bool { return true })
}

// removeStale is RemoveStale restricted to the prefixes match accepts.
func removeStale(match func(prefix string) bool) ([]string, error) {
	entries, err := os.ReadDir(ownerDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names, err := netnsList()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		prefix := e.Name()
		if !isPrefix(prefix) || !match(prefix) {
			continue
		}
		if ownerAlive(filepath.Join(ownerDir, prefix)) {
			continue
		}
		clean := true
		for _, n := range names {
			if !strings.HasPrefix(n, prefix) {
				continue
			}
			killNetnsProcs(filepath.Join("/run/netns", n))
			if err := deleteNetns(n); err != nil {
				errs = append(errs, err)
				clean = false
				continue
			}
			removed = append(removed, n)
		}
		if clean {
			os.Remove(filepath.Join(ownerDir, prefix))
		}
	}
	return removed, errors.Join(errs...)
}

// claimPrefix picks a random prefix no existing namespace uses and records
// this process as its owner. O_EXCL on the owner file makes the claim atomic
// against other test processes picking the same random value.
func claimPrefix() (prefix, ownerFile string, err error) {
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return "", "", fmt.Errorf("create %s: %w", ownerDir, err)
	}
	existing, err := netnsList()
	if err != nil {
		return "", "", err
	}
	self, err := procStartTime(os.Getpid())
	if err != nil {
		return "", "", err
	}
	for range 32 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", "", err
		}
		prefix = "vx" + hex.EncodeToString(b[:]) + "-"
		if slices.ContainsFunc(existing, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			continue
		}
		ownerFile = filepath.Join(ownerDir, prefix)
		f, err := os.OpenFile(ownerFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		_, werr := fmt.Fprintf(f, "%d %d\n", os.Getpid(), self)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(ownerFile)
			return "", "", werr
		}
		return prefix, ownerFile, nil
	}
	return "", "", errors.New("could not find an unused name prefix")
}

// isPrefix reports whether name is a lab's whole name prefix.
func isPrefix(name string) bool {
	return prefixRE.MatchString(name) && len(name) == len("vx000000-")
}

// StaleLab reports whether name is a lab's name prefix ("vx", 6 hex
// digits, "-") whose owner no longer runs. Things a lab's owner names
// after its prefix outside the namespaces (a harness's cgroups, say) are
// left over from a killed run when this is true.
func StaleLab(name string) bool {
	return isPrefix(name) && !ownerAlive(filepath.Join(ownerDir, name))
}

// ownerAlive reports whether the process recorded in an owner file still
// runs. The start time guards against the pid having been recycled.
func ownerAlive(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return false
	}
	got, err := procStartTime(pid)
	return err == nil && got == start
}

// procStat returns the fields of /proc/<pid>/stat after the command name,
// so index 0 is field 3 (state) of proc(5).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// The command name may contain spaces and parentheses; it ends at the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

func procStartTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 20 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22, starttime
}

func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// processGroups maps every live pid on the system to its process group id.
// Zombies are left out: they are dead and only wait for their parent (for
// orphans, init) to collect them.
func processGroups() map[int]int {
	out := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(pid)
		if err != nil || len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pgid, err := strconv.Atoi(f[2]); err == nil { // field 5, pgrp
			out[pid] = pgid
		}
	}
	return out
}

// killNetnsProcs SIGKILLs every process whose network namespace is the one
// bound at path. Only used on namespaces of dead labs, whose processes were
// started by a test run that no longer exists.
func killNetnsProcs(path string) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && link == want {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// deleteNetns runs `ip netns del`, retrying briefly because the kernel can
// report the mount busy for a moment after the last process in it died.
func deleteNetns(name string) error {
	path := filepath.Join("/run/netns", name)
	var lastErr error
	for attempt := range 5 {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil // never created, or the test deleted it itself
		}
		out, err := runCmd(cmdTimeout, "ip", "netns", "del", name)
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	return lastErr
}

// netnsList returns the names `ip netns list` shows.
func netnsList() ([]string, error) {
	out, err := runCmd(cmdTimeout, "ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var names []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// rootLinks returns the link names `ip -o link` shows in this process's
// network namespace, with any "@peer" suffix removed.
func rootLinks() ([]string, error) {
	out, err := runCmd(cmdTimeout, "ip", "-o", "link", "show")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		name, _, _ = strings.Cut(name, "@")
		names = append(names, name)
	}
	return names, nil
}

// Command returns a command that runs in a process group of its own: when
// ctx ends the whole group is killed, not only the process, and so is it
// when this process dies (Pdeathsig). Output written by children that
// outlive it does not block Wait for more than 2 s.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// runCmd runs a short command with combined output, bounded by timeout.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := Command(ctx, name, args...).CombinedOutput()
	desc := strings.Join(append([]string{name}, args...), " ")
	if ctx.Err() == context.DeadlineExceeded {
		return string(out), fmt.Errorf("%s: timed out after %v", desc, timeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", desc, err)
	}
	return string(out), nil
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}
