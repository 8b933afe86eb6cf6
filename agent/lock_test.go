package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

// One holder at a time; the refusal names the holder; a released lock is
// free again.
func TestAgentLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.lock")
	l, err := takeLock(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = takeLock(path)
	if !errors.Is(err, ErrAgentRunning) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrAgentRunning naming pid %d", err, os.Getpid())
	}
	l.release()
	l2, err := takeLock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.release()
}

// Cleanup refuses while an agent holds the lock, and touches nothing.
// It runs in a namespace of its own: it removes routes and devices.
func TestCleanupRefusesWhileAgentRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ns := nstest.NewNetns(t, "agent")
	cfg := loadConfig(t, baseConfig)
	cleanup := func() (err error) {
		ns.MustDo(t, func() error { err = Cleanup(cfg, nil); return nil })
		return err
	}
	cfg.StateDir = t.TempDir()
	cfg.Socket = filepath.Join(t.TempDir(), "vxdp.sock")
	state := stateFile(cfg.StateDir, cfg.NodeIP)
	for _, f := range []string{state, cfg.Socket} {
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := takeLock(lockPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := cleanup(); !errors.Is(err, ErrAgentRunning) {
		t.Fatalf("Cleanup with an agent running: %v", err)
	}
	for _, f := range []string{state, cfg.Socket} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("Cleanup removed %s of a running agent: %v", f, err)
		}
	}
	l.release()
	if err := cleanup(); err != nil {
		t.Fatalf("Cleanup after the agent: %v", err)
	}
	for _, f := range []string{state, cfg.Socket} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Cleanup left %s: %v", f, err)
		}
	}
}
