package udp

import (
	"fmt"
	"os"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "udp tests need root (network namespaces, raw sockets); skipping")
		os.Exit(0)
	}
	nstest.RemoveStale()
	os.Exit(m.Run())
}

func newNetns(t *testing.T) *nstest.Netns { t.Helper(); return nstest.NewNetns(t, "udp") }

func ipIn(t *testing.T, ns *nstest.Netns, args ...string) { t.Helper(); ns.IP(t, args...) }

func inNetns(t *testing.T, ns *nstest.Netns, fn func() error) { t.Helper(); ns.MustDo(t, fn) }
