package dataplane_test

import (
	"errors"
	"testing"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/identity"
)

func TestIngressPolicy(t *testing.T) {
	n1, n2, _ := twoNodes(t) // a=1000 and b=256 on node1, c=2000 on node2
	c := n2.pod(t, "c")
	must(t, n2.eng.SetPolicy("c", []identity.ID{1000}))

	n1.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, false, []byte("allowed")))
	if got := waitOne(t, c); string(got[28:]) != "allowed" {
		t.Fatalf("got %x", got)
	}
	n1.pod(t, "b").Inject(udpPacket(pod1b, pod2, 1, 2, 64, false, []byte("denied")))
	waitDrop(t, n2.eng, dataplane.DropPolicyDenied, 1)
	expectNone(t, c)
	// Silent: no ICMP comes back to the sender.
	expectNone(t, n1.pod(t, "b"))

	// The host is identity host; world is whatever the kernel forwards.
	n2.host.Inject(udpPacket(netipMust("10.1.2.1"), pod2, 1, 2, 64, false, nil))
	waitDrop(t, n2.eng, dataplane.DropPolicyDenied, 2)
	must(t, n2.eng.SetPolicy("c", []identity.ID{1000, identity.Host, identity.WorldIPv4}))
	n2.host.Inject(udpPacket(netipMust("10.1.2.1"), pod2, 1, 2, 64, false, nil))
	waitOne(t, c)
	n2.host.Inject(udpPacket(netipMust("198.51.100.7"), pod2, 1, 2, 64, false, nil)) // world, allowed through world-ipv4 folding
	waitOne(t, c)

	// Local pod to pod obeys the policy too.
	must(t, n1.eng.SetPolicy("b", []identity.ID{2000}))
	n1.pod(t, "a").Inject(udpPacket(pod1, pod1b, 1, 2, 64, false, nil))
	waitDrop(t, n1.eng, dataplane.DropPolicyDenied, 1)
	expectNone(t, n1.pod(t, "b"))
	// Back to allow-all at runtime.
	must(t, n1.eng.SetPolicy("b", nil))
	n1.pod(t, "a").Inject(udpPacket(pod1, pod1b, 1, 2, 64, false, nil))
	waitOne(t, n1.pod(t, "b"))

	if err := n1.eng.SetPolicy("nosuch", nil); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	if err := n1.eng.SetPolicy("a", []identity.ID{0}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Fatalf("identity 0 accepted: %v", err)
	}
	for _, ep := range n2.eng.Endpoints() {
		if ep.Name == "c" && len(ep.AllowFrom) != 3 {
			t.Fatalf("listed policy %v", ep.AllowFrom)
		}
	}
}

// A running endpoint's identity changes from the next packet: the
// receiver's allow-list judges it by the new one, locally and across
// nodes, and the listing shows it.
func TestSetIdentity(t *testing.T) {
	n1, n2, _ := twoNodes(t) // a=1000 and b=256 on node1, c=2000 on node2
	c := n2.pod(t, "c")
	must(t, n2.eng.SetPolicy("c", []identity.ID{3000}))
	n1.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, false, []byte("as 1000")))
	waitDrop(t, n2.eng, dataplane.DropPolicyDenied, 1)
	expectNone(t, c)

	must(t, n1.eng.SetIdentity("a", 3000))
	n1.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, false, []byte("as 3000")))
	if got := waitOne(t, c); string(got[28:]) != "as 3000" {
		t.Fatalf("got %x", got)
	}
	must(t, n1.eng.SetPolicy("b", []identity.ID{1000}))
	n1.pod(t, "a").Inject(udpPacket(pod1, pod1b, 1, 2, 64, false, nil))
	waitDrop(t, n1.eng, dataplane.DropPolicyDenied, 1)
	expectNone(t, n1.pod(t, "b"))
	for _, ep := range n1.eng.Endpoints() {
		if ep.Name == "a" && ep.Identity != 3000 {
			t.Fatalf("listed identity %d", ep.Identity)
		}
	}
	if err := n1.eng.SetIdentity("a", 1); !errors.Is(err, dataplane.ErrInvalid) {
		t.Fatalf("a reserved identity accepted: %v", err)
	}
	if err := n1.eng.SetIdentity("nosuch", 3000); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
}
