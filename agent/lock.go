package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/config"
)

// ErrAgentRunning is returned when another live agent holds the lock of
// the same state (or, without a state directory, of the same API socket).
var ErrAgentRunning = errors.New("an agent is running")

// lockPath is the file whose lock an agent holds while it runs: beside its
// state file (agents of several network namespaces may share one state
// directory, each with its node IP's file), or beside its API socket when
// it keeps no state.
func lockPath(cfg *config.Config) string {
	if cfg.StateDir != "" {
		return strings.TrimSuffix(stateFile(cfg.StateDir, cfg.NodeIP), ".json") + ".lock"
	}
	return cfg.Socket + ".lock"
}

// agentLock is a held lock. The kernel releases it when its holder exits,
// however it exits, so a crashed agent never blocks the next one.
type agentLock struct {
	f    *os.File
	path string
}

// takeLock takes the lock at path without waiting, and writes the holder's
// pid into the file for whoever finds it taken.
func takeLock(path string) (*agentLock, error) {
	for {
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
		// The holder before us removes the file as it lets go: a lock on
		// a file no longer at path locks nothing, so take the new one.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &now) != nil || held.Ino != now.Ino || held.Dev != now.Dev {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		return &agentLock{f: f, path: path}, nil
	}
}

// release removes the lock file and gives the lock up, in that order, so
// that whoever locks next locks the file at path.
func (l *agentLock) release() {
	if l != nil && l.f != nil {
		os.Remove(l.path)
		l.f.Close()
		l.f = nil
	}
}
