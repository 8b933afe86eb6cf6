// Package soak runs three vxdp agents under load for a long time while a
// schedule of faults hits them, and reports how the overlay held up: see
// TestSoak and docs/RELIABILITY.md. It needs root; `make soak` runs it.
package soak

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

// vxdpBin is the agent binary under test.
var vxdpBin string

// interrupted ends when the soak is asked to stop (SIGINT, SIGTERM): the
// run then ends early and still tears its namespaces down, instead of the
// default action killing the process with every cleanup skipped.
var interrupted context.Context

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the soak needs root (network namespaces, TUN devices); skipping")
		os.Exit(0)
	}
	// A soak killed by SIGKILL runs no cleanup; its namespaces are
	// recognised by their dead owner and removed here.
	if stale, err := nstest.RemoveStale(); err == nil && len(stale) > 0 {
		fmt.Fprintf(os.Stderr, "removed leftovers of a killed run: %v\n", stale)
	}
	var stop context.CancelFunc
	interrupted, stop = signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)

	vxdpBin = os.Getenv("VXDP_BIN")
	var dir string
	if vxdpBin == "" {
		var err error
		if dir, err = os.MkdirTemp("", "vxdp-soak-bin"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		vxdpBin = filepath.Join(dir, "vxdp")
		build := exec.Command("go", "build", "-o", vxdpBin, "github.com/vxdp/vxdp/cmd/vxdp")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build vxdp:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	stop()
	if dir != "" {
		os.RemoveAll(dir)
	}
	if left, err := nstest.OwnLeftovers(); err == nil && len(left) > 0 {
		fmt.Fprintf(os.Stderr, "namespaces left behind by the soak: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
