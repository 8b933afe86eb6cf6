package udp

import (
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m, "udp tests") }

func newNetns(t *testing.T) *nstest.Netns { t.Helper(); return nstest.NewNetns(t, "udp") }

func ipIn(t *testing.T, ns *nstest.Netns, args ...string) { t.Helper(); ns.IP(t, args...) }

func inNetns(t *testing.T, ns *nstest.Netns, fn func() error) { t.Helper(); ns.MustDo(t, fn) }
