package tun

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/internal/nstest"
)

// The tunnel-gso device comes up with the settings it needs, its probe is
// answered by a node behind the underlay link and not by an address
// nobody holds, and Close removes it. A kernel that refuses UDP tunnel
// segmentation on TUN gets an error that says so, and nothing is left.
func TestTunnelGSODevice(t *testing.T) {
	lab := nstest.New(t)
	node, peer := lab.Netns("gso1"), lab.Netns("gso2")
	lab.Veth(node, "eth0", "192.0.2.1/24", peer, "eth0", "192.0.2.2/24", 1500)
	var g *TunnelGSO
	inNetns(t, node, func() error {
		var err error
		g, err = OpenTunnelGSO("vxdp_gso")
		return err
	})
	defer g.Close()
	if o := g.Offload(); !o.Active || o.Name != "tunnel-gso" {
		t.Fatalf("offload %+v", o)
	}
	for key, want := range map[string]string{"forwarding": "1", "accept_local": "1", "rp_filter": "0"} {
		if got := strings.TrimSpace(node.MustRun(t, "cat", "/proc/sys/net/ipv4/conf/vxdp_gso/"+key)); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if out := node.MustRun(t, "ip", "-o", "link", "show", "vxdp_gso"); !strings.Contains(out, ",UP") {
		t.Errorf("vxdp_gso not up:\n%s", out)
	}
	src := netip.MustParseAddr("192.0.2.1")
	probe := func(dst string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return g.Probe(ctx, src, netip.MustParseAddr(dst))
	}
	inNetns(t, node, func() error { return probe("192.0.2.2", 2*time.Second) })
	var err error
	node.MustDo(t, func() error {
		err = probe("192.0.2.99", 300*time.Millisecond)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "no echo reply") {
		t.Errorf("probe to an address nobody holds: %v", err)
	}
	// Cancelled while it waits for a reply that does not come: it returns
	// soon, with the cancel as its error.
	var took time.Duration
	node.MustDo(t, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		err = g.Probe(ctx, src, netip.MustParseAddr("192.0.2.99"))
		took = time.Since(start)
		return nil
	})
	if !errors.Is(err, context.Canceled) || took > 2*time.Second {
		t.Errorf("cancelled probe: %v after %v, want context.Canceled well before its 10 s deadline", err, took)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	waitLinkGone(t, routeHandleT(t, node), "vxdp_gso")

	// A kernel without the offload.
	defer func(f func(int, int) error) { setOffload = f }(setOffload)
	setOffload = func(fd, flags int) error {
		if flags&tunFUDPTunnelGSO != 0 {
			return unix.EINVAL
		}
		return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags)
	}
	node.MustDo(t, func() error {
		_, err = OpenTunnelGSO("vxdp_gso")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "Linux 6.17") {
		t.Fatalf("on a kernel that refuses the offload: %v", err)
	}
	if out, err := node.Run("ip", "link", "show", "vxdp_gso"); err == nil {
		t.Fatalf("a refused device was left:\n%s", out)
	}
}
