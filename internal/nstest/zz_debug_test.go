//go:build linux

package nstest

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestZZDebugUDP(t *testing.T) {
	_, a, b := twoHosts(t)
	t.Log(a.MustRun(t, "ip", "-6", "addr"), a.MustRun(t, "ip", "-6", "route"), b.MustRun(t, "ip", "-6", "addr"))
	echo, err := StartUDPEcho(b, netip.AddrPortFrom(addrB6, 0))
	if err != nil {
		t.Fatal(err)
	}
	var c *net.UDPConn
	a.Do(func() error { var err error; c, err = net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(echo.Addr())); return err })
	for i := 0; i < 30; i++ {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, werr := c.Write([]byte("x"))
		buf := make([]byte, 10)
		_, rerr := c.Read(buf)
		t.Logf("%d w=%v r=%v count=%d", i, werr, rerr, echo.Count())
		if rerr == nil {
			break
		}
	}
	t.Log(a.MustRun(t, "ip", "-6", "neigh"), b.MustRun(t, "ip", "-6", "neigh"), a.MustRun(t, "nstat", "-az", "Ip6*"))
}
