package agent

import (
	"errors"
	"maps"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/k8s"
)

// A reload of an ipam: kubernetes file keeps the pod CIDRs read from the
// Node object at the start; a change of the Kubernetes keys needs a
// restart.
func TestKeepClaimsKubernetes(t *testing.T) {
	load := func(s string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	const file = "node-ip: 192.0.2.1\nipam: kubernetes\nk8s-kubeconfig-path: /k\nendpoints:\n  - {name: p, ip: 10.1.7.10, netns: /run/netns/p}\n"
	o := load(file)
	o.PodCIDR = netip.MustParsePrefix("10.1.7.0/24")
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	n := load(file)
	if err := keepClaims(o, n); err != nil {
		t.Fatal(err)
	}
	if n.PodCIDR != o.PodCIDR {
		t.Fatalf("pod-cidr after reload %v, want %v", n.PodCIDR, o.PodCIDR)
	}
	// The endpoint is checked against the kept pod CIDR.
	bad := load("node-ip: 192.0.2.1\nipam: kubernetes\nk8s-kubeconfig-path: /k\nendpoints:\n  - {name: p, ip: 10.1.8.10, netns: /run/netns/p}\n")
	if err := keepClaims(o, bad); err == nil {
		t.Fatal("an endpoint outside the kept pod CIDR passed")
	}
	ta := &Agent{cfg: o}
	other := load("node-ip: 192.0.2.1\nipam: kubernetes\nk8s-kubeconfig-path: /other\n")
	if err := ta.Reload(other); !errors.Is(err, ErrNeedsRestart) {
		t.Fatalf("another kubeconfig: %v, want ErrNeedsRestart", err)
	}
}

// Kubernetes Nodes come and go as remote nodes; a configured node of the
// same name wins; a Node that becomes unusable leaves; this node's own
// Node is no remote node; only kubernetes' own nodes are deleted by it.
func TestKubeNodeEvents(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, baseConfig+"nodes:\n  - {name: static, ip: 192.0.2.9, pod-cidr: 10.1.9.0/24}\n"), nil)
	kn := func(name, ip, cidr string) k8s.Node {
		return k8s.Node{Name: name, IP: netip.MustParseAddr(ip), PodCIDR: netip.MustParsePrefix(cidr)}
	}
	ta.kubeNodeEvent(k8s.Event{Kind: k8s.EventPut, Node: kn("n2", "192.0.2.2", "10.1.2.0/24")})
	ta.kubeNodeEvent(k8s.Event{Kind: k8s.EventPut, Node: kn("static", "192.0.2.99", "10.1.9.0/24")})
	ta.kubeNodeEvent(k8s.Event{Kind: k8s.EventPut, Node: kn(ta.cfg.NodeName, "192.0.2.1", "10.1.1.0/24")})
	want := map[string]string{"n2": "kubernetes 192.0.2.2 10.1.2.0/24", "static": "config 192.0.2.9 10.1.9.0/24"}
	if got := ta.nodeOrigins(); !maps.Equal(got, want) {
		t.Fatalf("nodes %v, want %v", got, want)
	}
	ta.kubeNodeEvent(k8s.Event{Kind: k8s.EventPut, Node: kn("n2", "192.0.2.22", "10.1.2.0/24")})
	if got := ta.nodeOrigins()["n2"]; got != "kubernetes 192.0.2.22 10.1.2.0/24" {
		t.Fatalf("moved n2: %q", got)
	}
	ta.kubeNodeEvent(k8s.Event{Kind: k8s.EventDelete, Node: k8s.Node{Name: "static"}})
	ta.kubeNodeEvent(k8s.Event{Kind: k8s.EventPut, Node: k8s.Node{Name: "n2"}, Err: k8s.ErrNoPodCIDR})
	want = map[string]string{"static": "config 192.0.2.9 10.1.9.0/24"}
	if got := ta.nodeOrigins(); !maps.Equal(got, want) {
		t.Fatalf("nodes %v, want %v", got, want)
	}
}
