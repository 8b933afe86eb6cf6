package tun

import (
	"fmt"
	"os"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tun tests need root (network namespaces, /dev/net/tun); skipping")
		os.Exit(0)
	}
	nstest.RemoveStale()
	os.Exit(m.Run())
}
