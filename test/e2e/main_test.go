// Package e2e runs vxdp agents for real: nodes, pods and an underlay built
// out of network namespaces, real TUN devices and real sockets. It needs
// root; every namespace, link and process it makes is removed again, also
// when a test fails.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

// vxdpBin is the agent binary built once for all tests; cniBin the CNI
// plugin.
var vxdpBin, cniBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests need root (network namespaces, TUN devices)")
		os.Exit(1)
	}
	// Namespaces of an earlier run that was killed (a test timeout skips
	// every cleanup) would collide with nothing, but they waste memory and
	// confuse whoever looks: remove those whose owner is gone.
	if stale, err := nstest.RemoveStale(); err == nil && len(stale) > 0 {
		fmt.Fprintf(os.Stderr, "removed leftovers of a killed run: %v\n", stale)
	}
	dir, err := os.MkdirTemp("", "vxdp-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vxdpBin = filepath.Join(dir, "vxdp")
	cniBin = filepath.Join(dir, "vxdp-cni")
	build := exec.Command("go", "build", "-o", dir+"/", "github.com/vxdp/vxdp/cmd/vxdp", "github.com/vxdp/vxdp/cmd/vxdp-cni")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build vxdp:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if left, err := nstest.OwnLeftovers(); err == nil && len(left) > 0 {
		fmt.Fprintf(os.Stderr, "leftover namespaces after the tests: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
