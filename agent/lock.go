package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/config"
)

// ErrAgentRunning is returned when another live agent holds the lock of
// the same state directory (or, without one, of the same API socket).
var ErrAgentRunning = errors.New("an agent is running")

// lockPath is the file whose lock an agent holds while it runs: in its
// state directory, or beside its API socket when it keeps no state.
func lockPath(cfg *config.Config) string {
	if cfg.StateDir != "" {
		return filepath.Join(cfg.StateDir, "agent.lock")
	}
	return cfg.Socket + ".lock"
}

// agentLock is a held lock. The kernel releases it when its holder exits,
// however it exits, so a crashed agent never blocks the next one.
type agentLock struct{ f *os.File }

// takeLock takes the lock at path without waiting, and writes the holder's
// pid into the file for whoever finds it taken.
func takeLock(path string) (*agentLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := strings.TrimSpace(string(pid))
			if _, perr := strconv.Atoi(who); perr != nil {
				who = "unknown"
			}
			return nil, fmt.Errorf("%w (pid %s holds %s)", ErrAgentRunning, who, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &agentLock{f: f}, nil
}

// release gives the lock up. The file stays: removing it could let two
// agents lock two different files of the same name.
func (l *agentLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
