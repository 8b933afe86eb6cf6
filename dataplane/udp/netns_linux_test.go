package udp

import (
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m, "udp tests") }

func inNetns(t testing.TB, ns *nstest.Netns, fn func() error) { t.Helper(); ns.MustDo(t, fn) }

// family is an address family the tests run over: the node's and the
// peer's addresses on the veth between them, and a destination that
// nothing routes to.
type family struct {
	name        string
	node, peer  netip.Addr
	unreachable netip.AddrPort
}

var (
	ipv4 = family{
		name: "ipv4",
		node: netip.MustParseAddr("192.0.2.1"), peer: netip.MustParseAddr("192.0.2.2"),
		unreachable: netip.MustParseAddrPort("203.0.113.5:8472"),
	}
	ipv6 = family{
		name: "ipv6",
		node: netip.MustParseAddr("2001:db8::1"), peer: netip.MustParseAddr("2001:db8::2"),
		unreachable: netip.MustParseAddrPort("[2001:db8:ffff::5]:8472"),
	}
	families = []family{ipv4, ipv6}
)

// other is a remote of the family that f is not.
func (f family) other() netip.AddrPort {
	if f.node.Is6() {
		return netip.AddrPortFrom(ipv4.peer, 8472)
	}
	return netip.AddrPortFrom(ipv6.peer, 8472)
}

// forEachFamily runs fn as a subtest per family.
func forEachFamily(t *testing.T, fn func(t *testing.T, f family)) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) { fn(t, f) })
	}
}

// routeMTU is the MTU of the veth between node and peer: IPv6's minimum,
// so that a datagram of ordinary size is too big for it.
const routeMTU = 1280

// twoHosts makes the node's namespace and a peer's, joined by a veth pair
// (veth0 in the node, veth1 in the peer) of MTU routeMTU that carries both
// families' addresses (IPv6 ones without duplicate address detection);
// neither namespace has a default route. Traffic from the node to its own
// address takes the loopback device, to the peer's the veth.
func twoHosts(t testing.TB) (node, peer *nstest.Netns) {
	t.Helper()
	lab := nstest.New(t)
	node, peer = lab.Netns("udpnode"), lab.Netns("udppeer")
	lab.Veth(node, "veth0", prefix(ipv4.node, 24)+","+prefix(ipv6.node, 64),
		peer, "veth1", prefix(ipv4.peer, 24)+","+prefix(ipv6.peer, 64), routeMTU)
	// Fixed MACs and permanent neighbour entries: nothing waits for ARP
	// or neighbour discovery, whose queue of unresolved packets is too
	// short for a test's burst.
	ends := []struct {
		ns        *nstest.Netns
		dev, mac  string
		peerAddrs []netip.Addr
		peerMAC   string
	}{
		{node, "veth0", "02:00:00:00:00:01", []netip.Addr{ipv4.peer, ipv6.peer}, "02:00:00:00:00:02"},
		{peer, "veth1", "02:00:00:00:00:02", []netip.Addr{ipv4.node, ipv6.node}, "02:00:00:00:00:01"},
	}
	for _, e := range ends {
		e.ns.IP(t, "link", "set", "lo", "up")
		e.ns.IP(t, "link", "set", e.dev, "address", e.mac)
	}
	for _, e := range ends {
		for _, a := range e.peerAddrs {
			e.ns.IP(t, "neigh", "replace", a.String(), "lladdr", e.peerMAC, "dev", e.dev, "nud", "permanent")
		}
	}
	return node, peer
}

func prefix(a netip.Addr, bits int) string { return netip.PrefixFrom(a, bits).String() }

// underlayNetns is the node's namespace of twoHosts, for tests that need
// no peer.
func underlayNetns(t testing.TB) *nstest.Netns {
	t.Helper()
	node, _ := twoHosts(t)
	return node
}
