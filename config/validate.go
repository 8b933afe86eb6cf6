package config

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Validate checks the rules between keys, normalizes what needs it (a
// tunnel-port of 0 becomes the protocol's default port; prefixes set in
// code are masked) and returns the first problem as an *Error. The checks
// run in the order of Keys, so the first problem reported is the one
// nearest the top of the example file.
func (c *Config) Validate() error {
	for _, check := range []func() *Error{
		c.validateNode,
		c.validateModes,
		c.validateCIDRs,
		c.validateNodes,
		c.validateEndpoints,
		c.validateVTEPs,
		c.validateMisc,
	} {
		if err := check(); err != nil {
			return err
		}
		if c.PodCIDRAuto && !c.PodCIDR.IsValid() {
			// Everything after this depends on the pod CIDR, which the
			// agent claims first and then validates again.
			if err := c.validateModes(); err != nil {
				return err
			}
			return nil
		}
	}
	return nil
}

func (c *Config) validateNode() *Error {
	if err := checkNodeName(c.NodeName); err != nil {
		if c.NodeName == "" {
			return &Error{Key: "node-name", Reason: "required (the host name is not available)"}
		}
		return &Error{Key: "node-name", Value: c.NodeName, Reason: err.Error()}
	}
	if err := checkNodeAddr(c.NodeIP); err != nil {
		return &Error{Key: "node-ip", Value: formatAddr(c.NodeIP), Reason: err.Error()}
	}
	if c.Device != "" {
		if err := checkIfname(c.Device); err != nil {
			return &Error{Key: "device", Value: c.Device, Reason: err.Error()}
		}
	}
	if c.PodCIDRAuto {
		if c.KVStore == "" {
			return &Error{Key: "pod-cidr", Value: "auto", Reason: "needs kvstore: etcd to claim a block"}
		}
		if !c.ClusterCIDR.IsValid() {
			return &Error{Key: "pod-cidr", Value: "auto", Reason: "needs cluster-pool-ipv4-cidr to claim a block of"}
		}
		if c.PodCIDRMaskSize <= c.ClusterCIDR.Bits() {
			return &Error{Key: "cluster-pool-ipv4-mask-size", Value: strconv.Itoa(c.PodCIDRMaskSize),
				Reason: "must be longer than cluster-pool-ipv4-cidr's " + strconv.Itoa(c.ClusterCIDR.Bits())}
		}
		if !c.PodCIDR.IsValid() {
			// Not claimed yet: the agent claims it and validates again.
			return nil
		}
	}
	if c.KVStore != "" && len(c.KVStoreOpt) == 0 {
		return &Error{Key: "kvstore-opt", Reason: "kvstore " + c.KVStore + " needs etcd.endpoints or etcd.config"}
	}
	if !c.PodCIDR.IsValid() {
		return &Error{Key: "pod-cidr", Reason: "required"}
	}
	c.PodCIDR = c.PodCIDR.Masked()
	if err := checkPodCIDRRoom(c.PodCIDR); err != nil {
		return &Error{Key: "pod-cidr", Value: c.PodCIDR.String(), Reason: err.Error()}
	}
	if c.PodCIDR.Contains(c.NodeIP) {
		return &Error{Key: "pod-cidr", Value: c.PodCIDR.String(), Reason: "contains node-ip " + c.NodeIP.String()}
	}
	return nil
}

func (c *Config) validateModes() *Error {
	if !isOneOf(c.RoutingMode, RoutingTunnel, RoutingNative) {
		return &Error{Key: "routing-mode", Value: c.RoutingMode, Reason: "want one of tunnel, native"}
	}
	if !isOneOf(c.TunnelProtocol, ProtocolVXLAN, ProtocolGeneve) {
		return &Error{Key: "tunnel-protocol", Value: c.TunnelProtocol, Reason: "want one of vxlan, geneve"}
	}
	if c.TunnelPort == 0 {
		c.TunnelPort = DefaultTunnelPort(c.TunnelProtocol)
	}
	if !isOneOf(c.Underlay, UnderlayUDP, UnderlayAFXDP, UnderlayAuto) {
		return &Error{Key: "underlay", Value: c.Underlay, Reason: "want one of udp, afxdp, auto"}
	}
	if err := checkMTU(c.MTU); err != nil {
		return &Error{Key: "mtu", Value: strconv.Itoa(c.MTU), Reason: err.Error()}
	}
	// IPv6 requires every link, the pods' included, to carry 1280 bytes.
	if c.MTU != 0 && c.PodCIDR.Addr().Is6() && c.RouteMTU(c.MTU) < MinMTU {
		return &Error{Key: "mtu", Value: strconv.Itoa(c.MTU),
			Reason: fmt.Sprintf("leaves a route MTU of %d, below IPv6's minimum of %d for the IPv6 pod-cidr", c.RouteMTU(c.MTU), MinMTU)}
	}
	if c.AutoDirectNodeRoutes && c.RoutingMode != RoutingNative {
		return &Error{Key: "auto-direct-node-routes", Value: "true", Reason: "only valid with routing-mode native"}
	}
	return nil
}

// isOneOf wants the exact spelling Set stores: a Config built in code must
// use it too, because the rest of vxdp compares with the constants.
func isOneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func (c *Config) validateCIDRs() *Error {
	if c.NativeRoutingCIDR.IsValid() {
		c.NativeRoutingCIDR = c.NativeRoutingCIDR.Masked()
		if !c.NativeRoutingCIDR.Addr().Is4() {
			return &Error{Key: "ipv4-native-routing-cidr", Value: c.NativeRoutingCIDR.String(), Reason: "want an IPv4 CIDR"}
		}
	}
	if !c.ClusterCIDR.IsValid() {
		return nil
	}
	c.ClusterCIDR = c.ClusterCIDR.Masked()
	if !c.ClusterCIDR.Addr().Is4() {
		return &Error{Key: "cluster-pool-ipv4-cidr", Value: c.ClusterCIDR.String(), Reason: "want an IPv4 CIDR"}
	}
	if !covers(c.ClusterCIDR, c.PodCIDR) {
		return &Error{Key: "pod-cidr", Value: c.PodCIDR.String(),
			Reason: "not inside cluster-pool-ipv4-cidr " + c.ClusterCIDR.String()}
	}
	return nil
}

// covers reports whether outer contains all of inner.
func covers(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func (c *Config) validateNodes() *Error {
	names := make(map[string]int)
	ips := make(map[netip.Addr]int)
	for i := range c.Nodes {
		n := &c.Nodes[i]
		key := func(field string) string { return fmt.Sprintf("nodes[%d].%s", i, field) }

		if n.Name == "" {
			return &Error{Key: key("name"), Reason: "required"}
		}
		if err := checkNodeName(n.Name); err != nil {
			return &Error{Key: key("name"), Value: n.Name, Reason: err.Error()}
		}
		if j, dup := names[n.Name]; dup {
			return &Error{Key: key("name"), Value: n.Name, Reason: fmt.Sprintf("also the name of nodes[%d]", j)}
		}
		if n.Name == c.NodeName {
			return &Error{Key: key("name"), Value: n.Name, Reason: "is this node's node-name"}
		}
		names[n.Name] = i

		if !n.IP.IsValid() {
			return &Error{Key: key("ip"), Reason: "required"}
		}
		if err := checkNodeAddr(n.IP); err != nil {
			return &Error{Key: key("ip"), Value: n.IP.String(), Reason: err.Error()}
		}
		if j, dup := ips[n.IP]; dup {
			return &Error{Key: key("ip"), Value: n.IP.String(), Reason: fmt.Sprintf("also the address of nodes[%d]", j)}
		}
		if n.IP == c.NodeIP {
			return &Error{Key: key("ip"), Value: n.IP.String(), Reason: "is this node's node-ip"}
		}
		// One underlay socket speaks one address family.
		if n.IP.Is4() != c.NodeIP.Is4() {
			return &Error{Key: key("ip"), Value: n.IP.String(), Reason: "address family differs from node-ip"}
		}
		ips[n.IP] = i

		if !n.PodCIDR.IsValid() {
			return &Error{Key: key("pod-cidr"), Reason: "required"}
		}
		n.PodCIDR = n.PodCIDR.Masked()
		if err := checkPodCIDRRoom(n.PodCIDR); err != nil {
			return &Error{Key: key("pod-cidr"), Value: n.PodCIDR.String(), Reason: err.Error()}
		}
		if n.PodCIDR.Overlaps(c.PodCIDR) {
			return &Error{Key: key("pod-cidr"), Value: n.PodCIDR.String(), Reason: "overlaps pod-cidr " + c.PodCIDR.String()}
		}
		for j := 0; j < i; j++ {
			if n.PodCIDR.Overlaps(c.Nodes[j].PodCIDR) {
				return &Error{Key: key("pod-cidr"), Value: n.PodCIDR.String(),
					Reason: fmt.Sprintf("overlaps nodes[%d].pod-cidr %s", j, c.Nodes[j].PodCIDR)}
			}
		}
		if c.ClusterCIDR.IsValid() && !covers(c.ClusterCIDR, n.PodCIDR) {
			return &Error{Key: key("pod-cidr"), Value: n.PodCIDR.String(),
				Reason: "not inside cluster-pool-ipv4-cidr " + c.ClusterCIDR.String()}
		}
	}
	// Underlay addresses inside a pod CIDR would route tunnel packets
	// into the overlay they travel on.
	for i, n := range c.Nodes {
		if n.PodCIDR.Contains(c.NodeIP) {
			return &Error{Key: fmt.Sprintf("nodes[%d].pod-cidr", i), Value: n.PodCIDR.String(), Reason: "contains node-ip " + c.NodeIP.String()}
		}
		for j, m := range c.Nodes {
			if m.PodCIDR.Contains(n.IP) {
				return &Error{Key: fmt.Sprintf("nodes[%d].ip", i), Value: n.IP.String(),
					Reason: fmt.Sprintf("inside nodes[%d].pod-cidr %s", j, m.PodCIDR)}
			}
		}
		if c.PodCIDR.Contains(n.IP) {
			return &Error{Key: fmt.Sprintf("nodes[%d].ip", i), Value: n.IP.String(), Reason: "inside pod-cidr " + c.PodCIDR.String()}
		}
	}
	return nil
}

func (c *Config) validateEndpoints() *Error {
	names := make(map[string]int)
	ips := make(map[netip.Addr]int)
	hostAddr := c.PodCIDR.Addr().Next()
	for i := range c.Endpoints {
		ep := &c.Endpoints[i]
		key := func(field string) string { return fmt.Sprintf("endpoints[%d].%s", i, field) }

		if err := checkEndpointName(ep.Name); err != nil {
			if ep.Name == "" {
				return &Error{Key: key("name"), Reason: "required"}
			}
			return &Error{Key: key("name"), Value: ep.Name, Reason: err.Error()}
		}
		if j, dup := names[ep.Name]; dup {
			return &Error{Key: key("name"), Value: ep.Name, Reason: fmt.Sprintf("also the name of endpoints[%d]", j)}
		}
		names[ep.Name] = i

		if !ep.IP.IsValid() {
			return &Error{Key: key("ip"), Reason: "required"}
		}
		if ep.IP.Zone() != "" || ep.IP.Is4In6() {
			return &Error{Key: key("ip"), Value: ep.IP.String(), Reason: "want a plain IPv4 or IPv6 address"}
		}
		if !c.PodCIDR.Contains(ep.IP) {
			return &Error{Key: key("ip"), Value: ep.IP.String(), Reason: "not inside pod-cidr " + c.PodCIDR.String()}
		}
		switch {
		case ep.IP == c.PodCIDR.Addr():
			return &Error{Key: key("ip"), Value: ep.IP.String(), Reason: "the network address of pod-cidr"}
		case ep.IP == hostAddr:
			return &Error{Key: key("ip"), Value: ep.IP.String(), Reason: "the first address of pod-cidr belongs to the host device vxdp_host"}
		case ep.IP.Is4() && ep.IP == lastAddr(c.PodCIDR):
			return &Error{Key: key("ip"), Value: ep.IP.String(), Reason: "the broadcast address of pod-cidr"}
		}
		if j, dup := ips[ep.IP]; dup {
			return &Error{Key: key("ip"), Value: ep.IP.String(), Reason: fmt.Sprintf("also the address of endpoints[%d]", j)}
		}
		ips[ep.IP] = i

		if err := checkPath(ep.Netns); err != nil {
			return &Error{Key: key("netns"), Value: ep.Netns, Reason: err.Error()}
		}
		if ep.Ifname == "" {
			ep.Ifname = DefaultIfname
		}
		if err := checkIfname(ep.Ifname); err != nil {
			return &Error{Key: key("ifname"), Value: ep.Ifname, Reason: err.Error()}
		}
		if err := checkIdentity(ep.Identity); err != nil {
			return &Error{Key: key("identity"), Value: strconv.FormatUint(uint64(ep.Identity), 10), Reason: err.Error()}
		}
		for _, id := range ep.AllowFrom {
			if _, err := normalizeIdentity(id); err != nil {
				return &Error{Key: key("allow-from"), Value: id, Reason: err.Error()}
			}
		}
	}
	return nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (c *Config) validateVTEPs() *Error {
	if c.raw.vtepGiven {
		if err := c.vtepProblem(); err != nil {
			return err
		}
	}
	for i, v := range c.VTEPs {
		if err := checkVTEP(v); err != nil {
			return err
		}
		c.VTEPs[i].CIDR = v.CIDR.Masked()
	}
	if !c.EnableVTEP {
		return nil
	}
	if len(c.VTEPs) == 0 {
		return &Error{Key: "enable-vtep", Value: "true", Reason: "no VTEPs: set vtep-endpoint, vtep-cidr, vtep-mask and vtep-mac"}
	}
	if c.EnableIPsec {
		return &Error{Key: "enable-vtep", Value: "true", Reason: "conflicts with enable-ipsec"}
	}
	for i, v := range c.VTEPs {
		if err := c.vtepConflict(i, v); err != nil {
			return err
		}
	}
	return nil
}

// checkVTEP checks one VTEP on its own.
func checkVTEP(v VTEP) *Error {
	if !v.Endpoint.Is4() {
		return &Error{Key: "vtep-endpoint", Value: formatAddr(v.Endpoint), Reason: "VTEP endpoints are IPv4"}
	}
	if err := checkNodeAddr(v.Endpoint); err != nil {
		return &Error{Key: "vtep-endpoint", Value: v.Endpoint.String(), Reason: err.Error()}
	}
	if !v.CIDR.IsValid() || !v.CIDR.Addr().Is4() {
		return &Error{Key: "vtep-cidr", Value: formatPrefix(v.CIDR), Reason: "VTEP CIDRs are IPv4"}
	}
	if err := checkMAC(v.MAC); err != nil {
		return &Error{Key: "vtep-mac", Value: v.MAC.String(), Reason: err.Error()}
	}
	return nil
}

// vtepConflict checks VTEP i against the rest of the configuration. Its
// CIDR is routed to it, so it may not hide any pod CIDR or another VTEP's;
// its endpoint is told apart from nodes by address alone (traffic from it
// must carry VNI 2), so it may not be a node.
func (c *Config) vtepConflict(i int, v VTEP) *Error {
	cidr := func(why string) *Error {
		return &Error{Key: "vtep-cidr", Value: v.CIDR.String(), Reason: why}
	}
	if v.CIDR.Overlaps(c.PodCIDR) {
		return cidr("overlaps pod-cidr " + c.PodCIDR.String())
	}
	for j, n := range c.Nodes {
		if v.CIDR.Overlaps(n.PodCIDR) {
			return cidr(fmt.Sprintf("overlaps nodes[%d].pod-cidr %s", j, n.PodCIDR))
		}
	}
	for j := 0; j < i; j++ {
		if v.CIDR.Overlaps(c.VTEPs[j].CIDR) {
			return cidr("overlaps vtep-cidr " + c.VTEPs[j].CIDR.String())
		}
	}
	if v.CIDR.Contains(c.NodeIP) {
		return cidr("contains node-ip " + c.NodeIP.String())
	}
	ep := func(why string) *Error {
		return &Error{Key: "vtep-endpoint", Value: v.Endpoint.String(), Reason: why}
	}
	if v.Endpoint == c.NodeIP {
		return ep("is this node's node-ip")
	}
	for j, n := range c.Nodes {
		if v.Endpoint == n.IP {
			return ep(fmt.Sprintf("is the address of nodes[%d]", j))
		}
	}
	return nil
}

func (c *Config) validateMisc() *Error {
	if err := checkReservedMask(c.VXLANReservedMask); err != nil {
		return &Error{Key: "vxlan-reserved-tolerance", Value: formatMask(c.VXLANReservedMask), Reason: err.Error()}
	}
	if err := checkSocket(c.Socket); err != nil {
		return &Error{Key: "socket", Value: c.Socket, Reason: err.Error()}
	}
	if !isOneOf(c.LogLevel, LogDebug, LogInfo, LogWarn, LogError) {
		return &Error{Key: "log-level", Value: c.LogLevel, Reason: "want one of debug, info, warn, error"}
	}
	if err := checkPath(c.StateDir); err != nil {
		return &Error{Key: "state-dir", Value: c.StateDir, Reason: err.Error()}
	}
	return nil
}

// checkPodCIDRRoom leaves room for the network address, the host device's
// address and at least one pod (and IPv4's broadcast address).
func checkPodCIDRRoom(p netip.Prefix) error {
	if p.Addr().Is4() && p.Bits() > 30 {
		return reason("too small: an IPv4 pod CIDR needs a prefix length of 30 or less")
	}
	if p.Addr().Is6() && p.Bits() > 126 {
		return reason("too small: an IPv6 pod CIDR needs a prefix length of 126 or less")
	}
	return nil
}

func checkMTU(mtu int) error {
	if mtu != 0 && (mtu < MinMTU || mtu > MaxMTU) {
		return reasonf("want 0 (read it from the device) or %d..%d", MinMTU, MaxMTU)
	}
	return nil
}

// vxlanFlagI is the VXLAN I flag in the header's first word. It is not a
// reserved bit: a packet without it is not VXLAN, so it cannot be
// tolerated away.
const vxlanFlagI = 0x08000000

func checkReservedMask(m uint32) error {
	if m&vxlanFlagI != 0 {
		return reason("bit 0x08000000 is the I flag, not a reserved bit")
	}
	return nil
}

func checkSocket(s string) error {
	if err := checkPath(s); err != nil {
		return err
	}
	if len(s) > maxSocketPath {
		return reasonf("longer than the %d bytes a unix socket path may have", maxSocketPath)
	}
	return nil
}

// checkIdentity accepts 0 (the dataplane's default workload identity) or
// a workload identity a VNI can carry.
func checkIdentity(id uint32) error {
	if id != 0 && (id < MinWorkloadIdentity || id > MaxIdentity) {
		return reasonf("want 0 (default) or %d..%d: identities below %d are reserved", MinWorkloadIdentity, MaxIdentity, MinWorkloadIdentity)
	}
	return nil
}
