package config

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Entries — remote nodes, endpoints and VTEPs — reach an agent from the
// file, from its API, from the state a restarted agent adopts and from
// etcd. Every one of those ways goes through the checks below, so that
// what the file refuses is refused everywhere. Errors name the entry's
// field ("name", "ip", "pod-cidr", ...); the file's validation prefixes
// them with the list ("nodes[2].pod-cidr"), the API renames them to its
// JSON fields.

// Local is what an entry is checked against: this node's name, underlay
// address and pod CIDR, and the cluster pool when one is set. It does not
// change while an agent runs.
type Local struct {
	NodeName     string
	NodeIP       netip.Addr
	PodCIDR      netip.Prefix
	PodCIDR6     netip.Prefix
	ClusterCIDR  netip.Prefix
	ClusterCIDR6 netip.Prefix
	// HostIP and HostIP6 are the host device's addresses, which no pod
	// may take.
	HostIP, HostIP6 netip.Addr
}

// Local returns the node facts entries are checked against.
func (c *Config) Local() Local {
	return Local{NodeName: c.NodeName, NodeIP: c.NodeIP, PodCIDR: c.PodCIDR, PodCIDR6: c.PodCIDR6,
		ClusterCIDR: c.ClusterCIDR, ClusterCIDR6: c.ClusterCIDR6, HostIP: c.HostAddr(), HostIP6: c.HostAddr6()}
}

// Set sets one field of a node from text, with the file's parsers.
// Fields: name, ip, pod-cidr.
func (n *Node) Set(field, value string) *Error {
	if !contains(nodeFields, field) {
		return &Error{Key: field, Reason: "unknown field"}
	}
	if err := setNodeField(n, field, value); err != nil {
		return asError(err, field, value)
	}
	return nil
}

var nodeFields = []string{"name", "ip", "pod-cidr"}

// Set sets one field of an endpoint from text, with the file's parsers.
// Fields: name, ip, netns, ifname, identity (AllowFrom is a list: set it
// directly; CheckEndpoint checks it).
func (ep *Endpoint) Set(field, value string) *Error {
	if !contains(endpointFields, field) {
		return &Error{Key: field, Reason: "unknown field"}
	}
	if err := setEndpointField(ep, field, value); err != nil {
		return asError(err, field, value)
	}
	return nil
}

var endpointFields = []string{"name", "ip", "netns", "ifname", "identity"}

// ParseVTEP builds a VTEP from its CIDR ("a.b.c.d/len"), endpoint address
// and MAC as text, with the file's parsers, and checks it as CheckVTEP
// does. Errors name vtep-cidr, vtep-endpoint and vtep-mac.
func (l Local) ParseVTEP(cidr, endpoint, mac string) (VTEP, *Error) {
	var v VTEP
	p, err := parsePrefix(cidr)
	if err != nil {
		return v, &Error{Key: "vtep-cidr", Value: cidr, Reason: err.Error()}
	}
	a, err := parseAddr(endpoint)
	if err != nil {
		return v, &Error{Key: "vtep-endpoint", Value: endpoint, Reason: err.Error()}
	}
	m, err := parseMAC(mac)
	if err != nil {
		return v, &Error{Key: "vtep-mac", Value: mac, Reason: err.Error()}
	}
	v = VTEP{Endpoint: a, CIDR: p, MAC: m}
	return v, l.CheckVTEP(v)
}

// CheckNode checks a remote node on its own and against this node. What
// depends on the other entries (duplicate names and addresses, pod CIDRs
// overlapping another node's, the underlay subnet) is checked where all
// of them are known: by Validate for the file, by the engine for the rest.
func (l Local) CheckNode(n Node) *Error {
	if n.Name == "" {
		return &Error{Key: "name", Reason: "required"}
	}
	if err := checkNodeName(n.Name); err != nil {
		return &Error{Key: "name", Value: n.Name, Reason: err.Error()}
	}
	if n.Name == l.NodeName {
		return &Error{Key: "name", Value: n.Name, Reason: "is this node's node-name"}
	}

	if !n.IP.IsValid() {
		return &Error{Key: "ip", Reason: "required"}
	}
	if err := checkNodeAddr(n.IP); err != nil {
		return &Error{Key: "ip", Value: n.IP.String(), Reason: err.Error()}
	}
	if n.IP == l.NodeIP {
		return &Error{Key: "ip", Value: n.IP.String(), Reason: "is this node's node-ip"}
	}
	// One underlay socket speaks one address family.
	if l.NodeIP.IsValid() && n.IP.Is4() != l.NodeIP.Is4() {
		return &Error{Key: "ip", Value: n.IP.String(), Reason: "address family differs from node-ip"}
	}
	for _, own := range []netip.Prefix{l.PodCIDR, l.PodCIDR6} {
		if own.Contains(n.IP) {
			return &Error{Key: "ip", Value: n.IP.String(), Reason: "inside pod-cidr " + own.String()}
		}
	}

	if !n.PodCIDR.IsValid() && !n.PodCIDR6.IsValid() {
		return &Error{Key: "pod-cidr", Reason: "required"}
	}
	for _, f := range []struct {
		p, own, cluster netip.Prefix
		is6             bool
		clusterKey      string
	}{
		{n.PodCIDR, l.PodCIDR, l.ClusterCIDR, false, "cluster-pool-ipv4-cidr"},
		{n.PodCIDR6, l.PodCIDR6, l.ClusterCIDR6, true, "cluster-pool-ipv6-cidr"},
	} {
		if err := l.checkNodeCIDR(n, f.p, f.own, f.cluster, f.is6, f.clusterKey); err != nil {
			return err
		}
	}
	return nil
}

// checkNodeCIDR checks a node's pod CIDR of one family (none is fine).
func (l Local) checkNodeCIDR(n Node, p, own, cluster netip.Prefix, is6 bool, clusterKey string) *Error {
	if !p.IsValid() {
		return nil
	}
	if p.Addr().Is6() != is6 {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: "want at most one CIDR of each family"}
	}
	if err := checkMasked(p); err != nil {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: err.Error()}
	}
	if err := checkPodCIDRRoom(p); err != nil {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: err.Error()}
	}
	if own.IsValid() && p.Overlaps(own) {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: "overlaps pod-cidr " + own.String()}
	}
	if cluster.IsValid() && !covers(cluster, p) {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: "not inside " + clusterKey + " " + cluster.String()}
	}
	// Underlay addresses inside a pod CIDR would route tunnel packets into
	// the overlay they travel on.
	if p.Contains(l.NodeIP) {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: "contains node-ip " + l.NodeIP.String()}
	}
	if p.Contains(n.IP) {
		return &Error{Key: "pod-cidr", Value: p.String(), Reason: "contains the node's own ip " + n.IP.String()}
	}
	return nil
}

// CheckEndpoint checks an endpoint of this node on its own; an empty
// ifname becomes DefaultIfname. Duplicate names and addresses are checked
// where all endpoints are known.
func (l Local) CheckEndpoint(ep *Endpoint) *Error {
	if ep.Name == "" {
		return &Error{Key: "name", Reason: "required"}
	}
	if err := checkEndpointName(ep.Name); err != nil {
		return &Error{Key: "name", Value: ep.Name, Reason: err.Error()}
	}

	if !ep.IP.IsValid() && !ep.IP6.IsValid() {
		return &Error{Key: "ip", Reason: "required"}
	}
	if err := checkPodAddr(ep.IP, l.PodCIDR, l.HostIP, false); err != nil {
		return err
	}
	if err := checkPodAddr(ep.IP6, l.PodCIDR6, l.HostIP6, true); err != nil {
		return err
	}

	if ep.Netns == "" {
		return &Error{Key: "netns", Reason: "required"}
	}
	if err := checkPath(ep.Netns); err != nil {
		return &Error{Key: "netns", Value: ep.Netns, Reason: err.Error()}
	}
	if ep.Ifname == "" {
		ep.Ifname = DefaultIfname
	}
	if err := checkIfname(ep.Ifname); err != nil {
		return &Error{Key: "ifname", Value: ep.Ifname, Reason: err.Error()}
	}
	if err := checkIdentity(ep.Identity); err != nil {
		return &Error{Key: "identity", Value: strconv.FormatUint(uint64(ep.Identity), 10), Reason: err.Error()}
	}
	for i, id := range ep.AllowFrom {
		if id == "" {
			return &Error{Key: "allow-from", Reason: fmt.Sprintf("member %d is empty", i+1)}
		}
		if _, err := normalizeIdentity(id); err != nil {
			return &Error{Key: "allow-from", Value: id, Reason: err.Error()}
		}
	}
	return nil
}

// CheckVTEP checks one VTEP on its own and against this node's underlay
// family. What depends on the rest (pod CIDRs, other VTEPs, node
// addresses) is checked where all are known. The CIDR is IPv4, as
// Cilium's VTEPs are; the endpoint is an underlay address, so of
// node-ip's family: one underlay socket speaks one family.
func (l Local) CheckVTEP(v VTEP) *Error {
	if !v.Endpoint.IsValid() {
		return &Error{Key: "vtep-endpoint", Reason: "required"}
	}
	if err := checkNodeAddr(v.Endpoint); err != nil {
		return &Error{Key: "vtep-endpoint", Value: v.Endpoint.String(), Reason: err.Error()}
	}
	if l.NodeIP.IsValid() && v.Endpoint.Is4() != l.NodeIP.Is4() {
		return &Error{Key: "vtep-endpoint", Value: v.Endpoint.String(),
			Reason: "address family differs from node-ip " + l.NodeIP.String() + "; a VTEP endpoint is an underlay address"}
	}
	if v.Endpoint.Is6() && v.Endpoint.IsLinkLocalUnicast() {
		// Reachable only with a zone, which an underlay address has not.
		return &Error{Key: "vtep-endpoint", Value: v.Endpoint.String(), Reason: "a link-local address is not an underlay address"}
	}
	if !v.CIDR.IsValid() || !v.CIDR.Addr().Is4() {
		return &Error{Key: "vtep-cidr", Value: formatPrefix(v.CIDR), Reason: "VTEP CIDRs are IPv4"}
	}
	if err := checkMasked(v.CIDR); err != nil {
		return &Error{Key: "vtep-cidr", Value: v.CIDR.String(), Reason: err.Error()}
	}
	if err := checkMAC(v.MAC); err != nil {
		return &Error{Key: "vtep-mac", Value: v.MAC.String(), Reason: err.Error()}
	}
	return nil
}

// checkPodAddr checks an endpoint's address of one family (none is fine):
// a usable address of the node's pod CIDR of that family.
func checkPodAddr(a netip.Addr, cidr netip.Prefix, host netip.Addr, is6 bool) *Error {
	if !a.IsValid() {
		return nil
	}
	v := a.String()
	if a.Zone() != "" || a.Is4In6() || a.Is6() != is6 {
		return &Error{Key: "ip", Value: v, Reason: "want at most one plain address of each family"}
	}
	if !cidr.IsValid() {
		family := "IPv4"
		if is6 {
			family = "IPv6"
		}
		return &Error{Key: "ip", Value: v, Reason: "pod-cidr has no " + family + " CIDR"}
	}
	if !cidr.Contains(a) {
		return &Error{Key: "ip", Value: v, Reason: "not inside pod-cidr " + cidr.String()}
	}
	switch {
	case a == cidr.Addr():
		return &Error{Key: "ip", Value: v, Reason: "the network address of pod-cidr " + cidr.String()}
	case a == host:
		return &Error{Key: "ip", Value: v, Reason: "the host device vxdp_host's address in pod-cidr " + cidr.String()}
	case a.Is4() && a == lastAddr(cidr):
		return &Error{Key: "ip", Value: v, Reason: "the broadcast address of pod-cidr"}
	}
	return nil
}
