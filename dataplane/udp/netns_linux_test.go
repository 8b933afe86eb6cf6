package udp

import (
	"fmt"
	"os"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vxdp/vxdp/internal/netnstest"
)

// Namespaces made by this package's tests are named vxdpt-<pid>-udp<n>, so
// that leftovers of a killed run can be told apart from live ones.
const nsTag = "udp"

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "udp tests need root (network namespaces, raw sockets); skipping")
		os.Exit(0)
	}
	netnstest.Sweep(nsTag)
	os.Exit(m.Run())
}

func newNetns(t *testing.T) string { t.Helper(); return netnstest.New(t, nsTag) }

func ipIn(t *testing.T, ns string, args ...string) { t.Helper(); netnstest.IP(t, ns, args...) }

func nsHandle(t *testing.T, name string) netns.NsHandle { t.Helper(); return netnstest.Handle(t, name) }

func inNetns(t *testing.T, name string, fn func() error) { t.Helper(); netnstest.Do(t, name, fn) }
