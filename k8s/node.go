// Package k8s is vxdp's view of a Kubernetes cluster: the client, the
// informers that follow the cluster's objects, and the annotations the
// agent publishes on its own Node. It owns the connection to the API
// server; the agent asks it for events and status and never holds a
// client of its own, so that later users of the cluster (pods through
// CNI) add an informer here rather than a second connection.
//
// A Node becomes a remote node of vxdp (Convert): its pod CIDRs are
// spec.podCIDRs (spec.podCIDR on clusters that only fill that one), its
// underlay address the vxdp.io/node-ip annotation or else the first
// InternalIP of status.addresses (ExternalIP after them), and the agent
// running there says which tunnel protocol and port it speaks in
// vxdp.io/tunnel-protocol and vxdp.io/tunnel-port, as flannel publishes
// its backend data under its own prefix.
package k8s

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// The annotations vxdp reads on Nodes and publishes on its own one.
const (
	AnnotationPrefix = "vxdp.io/"
	// AnnotationNodeIP is the node's underlay address; it wins over
	// status.addresses. The agent publishes its node-ip here.
	AnnotationNodeIP = AnnotationPrefix + "node-ip"
	// AnnotationTunnelProtocol is "vxlan" or "geneve".
	AnnotationTunnelProtocol = AnnotationPrefix + "tunnel-protocol"
	// AnnotationTunnelPort is the node's tunnel UDP port, in decimal.
	AnnotationTunnelPort = AnnotationPrefix + "tunnel-port"
)

// Node is what vxdp takes from a Node object.
type Node struct {
	Name     string
	IP       netip.Addr   // underlay address
	PodCIDR  netip.Prefix // IPv4 pods; invalid when the node has none
	PodCIDR6 netip.Prefix // IPv6 pods; invalid when the node has none
	// Protocol and Port are what the node's agent published; "" and 0
	// until it has.
	Protocol string
	Port     uint16
}

// Errors Convert returns for a Node vxdp cannot use (yet): the node
// controller has not given it pod CIDRs, or the kubelet has not reported
// an address.
var (
	ErrNoPodCIDR = errors.New("no pod CIDR in spec.podCIDRs")
	ErrNoAddress = errors.New("no address: neither the " + AnnotationNodeIP + " annotation nor an InternalIP or ExternalIP of the underlay's family")
)

// Convert turns a Node into a remote node. underlay6 says the family of
// the underlay: of status.addresses, only those of that family count,
// so that a dual-stack node is reached over the family this node's
// tunnel speaks. The annotation is taken as it is: a node whose agent
// published an address of the other family is refused by the caller's
// checks like any other wrong address.
func Convert(n *corev1.Node, underlay6 bool) (Node, error) {
	out := Node{Name: n.Name}
	v4, v6, err := PodCIDRs(n)
	if err != nil {
		return out, err
	}
	out.PodCIDR, out.PodCIDR6 = v4, v6
	ip, err := address(n, underlay6)
	if err != nil {
		return out, err
	}
	out.IP = ip
	if s, ok := n.Annotations[AnnotationTunnelProtocol]; ok {
		if s != "vxlan" && s != "geneve" {
			return out, fmt.Errorf("annotation %s %q: want vxlan or geneve", AnnotationTunnelProtocol, s)
		}
		out.Protocol = s
	}
	if s, ok := n.Annotations[AnnotationTunnelPort]; ok {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			return out, fmt.Errorf("annotation %s %q: want a port, 1..65535", AnnotationTunnelPort, s)
		}
		out.Port = uint16(p)
	}
	return out, nil
}

// PodCIDRs returns a Node's pod CIDRs, one of each family at most, as
// spec.podCIDRs lists them (spec.podCIDR when the list is empty). A
// second CIDR of one family is an error: vxdp routes one per family.
func PodCIDRs(n *corev1.Node) (v4, v6 netip.Prefix, err error) {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return v4, v6, fmt.Errorf("spec.podCIDRs %q: %w", s, err)
		}
		p = p.Masked()
		dst := &v4
		if p.Addr().Is6() {
			dst = &v6
		}
		if dst.IsValid() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("spec.podCIDRs: two CIDRs of one family, %s and %s", *dst, p)
		}
		*dst = p
	}
	if !v4.IsValid() && !v6.IsValid() {
		return v4, v6, ErrNoPodCIDR
	}
	return v4, v6, nil
}

// address picks a Node's underlay address (see Convert).
func address(n *corev1.Node, underlay6 bool) (netip.Addr, error) {
	if s, ok := n.Annotations[AnnotationNodeIP]; ok {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, fmt.Errorf("annotation %s %q: want an IP address", AnnotationNodeIP, s)
		}
		return a.Unmap(), nil
	}
	for _, kind := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, na := range n.Status.Addresses {
			if na.Type != kind {
				continue
			}
			a, err := netip.ParseAddr(na.Address)
			if err != nil || a.Zone() != "" {
				continue // the kubelet's business; another may do
			}
			if a = a.Unmap(); a.Is6() == underlay6 {
				return a, nil
			}
		}
	}
	return netip.Addr{}, ErrNoAddress
}
