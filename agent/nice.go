package agent

import (
	"fmt"
	"os"
	"strconv"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// applyNice sets the niceness of the key nice when it changed from was (0
// at start: a niceness the agent was started with, by a unit's Nice= for
// one, stays unless the key says otherwise). Failing is not fatal: the
// agent runs at the niceness it has, and says so.
func applyNice(log *zap.Logger, was, n int) {
	if n == was {
		return
	}
	if err := setNice(n); err != nil {
		log.Warn("cannot set the niceness of the key nice; running at the one the agent has", zap.Error(err))
	}
}

// setNice gives every thread of the process the niceness n. Linux keeps a
// niceness per thread and a new thread inherits its creator's, so once
// every thread has n, the threads the Go runtime starts later have it
// too. A thread started while the list is walked may have been made by
// one not yet changed: the walk repeats until a pass finds every thread
// at n.
func setNice(n int) error {
	for pass := 0; pass < 5; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("nice %d: %w", n, err)
		}
		changed := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cur, err := threadNice(tid)
			if err != nil || cur == n {
				continue // gone, or done
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil {
				if err == unix.ESRCH {
					continue
				}
				return fmt.Errorf("nice %d (was %d): %w", n, cur, err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return nil
}

// threadNice is the niceness of a thread of this process. The system
// call returns 20 minus the niceness, so that it is never negative.
func threadNice(tid int) (int, error) {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0, err
	}
	return 20 - p, nil
}
