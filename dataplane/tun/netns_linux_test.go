package tun

import (
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m, "tun tests") }
