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
		if c.autoPending() {
			// Everything after this depends on the pod CIDRs, which the
			// agent claims first and then validates again.
			if err := c.validateModes(); err != nil {
				return err
			}
			if err := c.validateCIDRs(); err != nil {
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
		if err := c.validateAuto(); err != nil {
			return err
		}
		if c.autoPending() {
			// Not claimed yet: the agent claims and validates again.
			return nil
		}
	}
	if err := c.validateK8s(); err != nil {
		return err
	}
	if c.kubePending() {
		// The agent reads the pod CIDRs from the Node object and
		// validates again.
		return nil
	}
	if c.KVStore != "" && len(c.KVStoreOpt) == 0 {
		return &Error{Key: "kvstore-opt", Reason: "kvstore " + c.KVStore + " needs etcd.endpoints or etcd.config"}
	}
	if !c.PodCIDR.IsValid() && !c.PodCIDR6.IsValid() {
		return &Error{Key: "pod-cidr", Reason: "required"}
	}
	// Set in code, either may be of the other family or have host bits.
	if c.PodCIDR.IsValid() && c.PodCIDR.Addr().Is6() && !c.PodCIDR6.IsValid() {
		c.PodCIDR, c.PodCIDR6 = netip.Prefix{}, c.PodCIDR
	}
	for _, p := range []*netip.Prefix{&c.PodCIDR, &c.PodCIDR6} {
		if !p.IsValid() {
			continue
		}
		*p = p.Masked()
		if err := checkPodCIDRRoom(*p); err != nil {
			return &Error{Key: "pod-cidr", Value: p.String(), Reason: err.Error()}
		}
		if p.Contains(c.NodeIP) {
			return &Error{Key: "pod-cidr", Value: p.String(), Reason: "contains node-ip " + c.NodeIP.String()}
		}
	}
	if c.PodCIDR.IsValid() && !c.PodCIDR.Addr().Is4() || c.PodCIDR6.IsValid() && !c.PodCIDR6.Addr().Is6() {
		return &Error{Key: "pod-cidr", Value: joinPair(c.PodCIDR, c.PodCIDR6, true, true), Reason: "want at most one CIDR of each family"}
	}
	return c.validateFamilies()
}

// AutoFamilies says which pod CIDRs pod-cidr: auto claims: an IPv4 block
// where cluster-pool-ipv4-cidr is set and an IPv6 block where
// cluster-pool-ipv6-cidr is, unless enable-ipv4 or enable-ipv6 turns the
// family off. Without pod-cidr: auto, neither.
func (c *Config) AutoFamilies() (v4, v6 bool) {
	if !c.PodCIDRAuto {
		return false, false
	}
	return c.ClusterCIDR.IsValid() && c.raw.enableIPv4 != "false", c.ClusterCIDR6.IsValid() && c.raw.enableIPv6 != "false"
}

// KubeFamilies says which of the Node object's pod CIDRs ipam:
// kubernetes takes: each family unless enable-ipv4 or enable-ipv6 turns
// it off.
func (c *Config) KubeFamilies() (v4, v6 bool) {
	return c.raw.enableIPv4 != "false", c.raw.enableIPv6 != "false"
}

// autoPending reports a pod-cidr: auto whose blocks are not all claimed,
// or an ipam: kubernetes whose pod CIDRs are not read yet.
func (c *Config) autoPending() bool {
	v4, v6 := c.AutoFamilies()
	return v4 && !c.PodCIDR.IsValid() || v6 && !c.PodCIDR6.IsValid() || c.kubePending()
}

// kubePending reports an ipam: kubernetes whose pod CIDRs the agent has
// not read from the Node object yet.
func (c *Config) kubePending() bool {
	return c.IPAM == IPAMKubernetes && !c.PodCIDR.IsValid() && !c.PodCIDR6.IsValid()
}

// validateK8s checks the Kubernetes keys against each other and against
// the other sources of membership and pod CIDRs.
func (c *Config) validateK8s() *Error {
	if !isOneOf(c.IPAM, IPAMClusterPool, IPAMKubernetes) {
		return &Error{Key: "ipam", Value: c.IPAM, Reason: "want one of cluster-pool, kubernetes"}
	}
	if c.raw.enableK8s == "false" {
		for _, k := range []struct{ key, value string }{
			{"k8s-kubeconfig-path", c.K8sKubeconfig}, {"k8s-api-server", c.K8sAPIServer}, {"ipam", map[bool]string{true: c.IPAM}[c.IPAM == IPAMKubernetes]},
		} {
			if k.value != "" {
				return &Error{Key: "enable-k8s", Value: "false", Reason: "conflicts with " + k.key + " " + k.value}
			}
		}
	}
	if c.K8sAPIServer != "" {
		if err := checkAPIServerURL(c.K8sAPIServer); err != nil {
			return &Error{Key: "k8s-api-server", Value: c.K8sAPIServer, Reason: err.Error()}
		}
	}
	if c.IPAM == IPAMKubernetes && (c.raw.podCIDRGiven || c.PodCIDRAuto) {
		given, _ := c.Get("pod-cidr")
		return &Error{Key: "pod-cidr", Value: given, Reason: "ipam kubernetes takes the pod CIDRs from the Node object: leave pod-cidr unset"}
	}
	if c.K8sEnabled() && c.KVStore != "" {
		return &Error{Key: "kvstore", Value: c.KVStore, Reason: "one source of nodes at a time: Kubernetes is on (enable-k8s, k8s-kubeconfig-path, k8s-api-server or ipam kubernetes)"}
	}
	return nil
}

// validateAuto checks what pod-cidr: auto needs: etcd, and for each
// family it claims, a pool and a block size longer than the pool's.
func (c *Config) validateAuto() *Error {
	if c.KVStore == "" {
		return &Error{Key: "pod-cidr", Value: "auto", Reason: "needs kvstore: etcd to claim a block"}
	}
	for _, f := range []struct{ key, given, pool string }{
		{"enable-ipv4", c.raw.enableIPv4, "cluster-pool-ipv4-cidr"},
		{"enable-ipv6", c.raw.enableIPv6, "cluster-pool-ipv6-cidr"},
	} {
		if f.given == "true" && !c.poolFor(f.key).IsValid() {
			return &Error{Key: f.key, Value: f.given, Reason: "pod-cidr auto needs " + f.pool + " to claim a block of"}
		}
	}
	v4, v6 := c.AutoFamilies()
	if !v4 && !v6 {
		return &Error{Key: "pod-cidr", Value: "auto", Reason: "needs cluster-pool-ipv4-cidr or cluster-pool-ipv6-cidr (and that family enabled) to claim a block of"}
	}
	if v4 && c.PodCIDRMaskSize <= c.ClusterCIDR.Bits() {
		return &Error{Key: "cluster-pool-ipv4-mask-size", Value: strconv.Itoa(c.PodCIDRMaskSize),
			Reason: "must be longer than cluster-pool-ipv4-cidr's " + strconv.Itoa(c.ClusterCIDR.Bits())}
	}
	if v6 {
		if c.PodCIDRMaskSize6 < MinPodCIDR6MaskSize || c.PodCIDRMaskSize6 > MaxPodCIDR6MaskSize {
			// Set in code: the key refuses these.
			return &Error{Key: "cluster-pool-ipv6-mask-size", Value: strconv.Itoa(c.PodCIDRMaskSize6),
				Reason: fmt.Sprintf("want a prefix length from %d to %d", MinPodCIDR6MaskSize, MaxPodCIDR6MaskSize)}
		}
		if c.PodCIDRMaskSize6 <= c.ClusterCIDR6.Bits() {
			return &Error{Key: "cluster-pool-ipv6-mask-size", Value: strconv.Itoa(c.PodCIDRMaskSize6),
				Reason: "must be longer than cluster-pool-ipv6-cidr's " + strconv.Itoa(c.ClusterCIDR6.Bits())}
		}
	}
	return nil
}

// poolFor is the cluster pool of the family an enable-ipv4/enable-ipv6
// key names.
func (c *Config) poolFor(enableKey string) netip.Prefix {
	if enableKey == "enable-ipv6" {
		return c.ClusterCIDR6
	}
	return c.ClusterCIDR
}

// validateFamilies checks enable-ipv4, enable-ipv6 and underlay-protocol
// against pod-cidr and node-ip, and fills in EnableIPv4 and EnableIPv6.
func (c *Config) validateFamilies() *Error {
	for _, f := range []struct {
		key, given, family string
		cidr               netip.Prefix
		dst                *bool
	}{
		{"enable-ipv4", c.raw.enableIPv4, "IPv4", c.PodCIDR, &c.EnableIPv4},
		{"enable-ipv6", c.raw.enableIPv6, "IPv6", c.PodCIDR6, &c.EnableIPv6},
	} {
		switch {
		case f.given == "true" && !f.cidr.IsValid():
			return &Error{Key: f.key, Value: f.given, Reason: "pod-cidr has no " + f.family + " CIDR"}
		case f.given == "false" && f.cidr.IsValid():
			return &Error{Key: f.key, Value: f.given, Reason: "pod-cidr has the " + f.family + " CIDR " + f.cidr.String()}
		}
		*f.dst = f.cidr.IsValid()
	}
	family := "ipv4"
	if c.NodeIP.Is6() {
		family = "ipv6"
	}
	if c.UnderlayProtocol != "" && c.UnderlayProtocol != family {
		return &Error{Key: "underlay-protocol", Value: c.UnderlayProtocol, Reason: "node-ip " + c.NodeIP.String() + " is " + family}
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
	if c.MTU != 0 && c.PodCIDR6.IsValid() && c.RouteMTU(c.MTU) < MinMTU {
		return &Error{Key: "mtu", Value: strconv.Itoa(c.MTU),
			Reason: fmt.Sprintf("leaves a route MTU of %d, below IPv6's minimum of %d for the IPv6 pod-cidr", c.RouteMTU(c.MTU), MinMTU)}
	}
	if c.AutoDirectNodeRoutes && c.RoutingMode != RoutingNative {
		return &Error{Key: "auto-direct-node-routes", Value: "true", Reason: "only valid with routing-mode native"}
	}
	// A direct route needs a next hop the kernel can use for the prefix:
	// an IPv4 pod CIDR may go via an IPv6 node (RTA_VIA), but no kernel
	// routes IPv6 via an IPv4 address.
	if _, auto6 := c.AutoFamilies(); c.AutoDirectNodeRoutes && c.NodeIP.Is4() && (c.PodCIDR6.IsValid() || auto6) {
		v := "auto"
		if c.PodCIDR6.IsValid() {
			v = c.PodCIDR6.String()
		}
		return &Error{Key: "auto-direct-node-routes", Value: "true",
			Reason: "IPv6 pods (pod-cidr " + v + ") cannot be routed via the IPv4 node-ip " + c.NodeIP.String() +
				": the kernel has no IPv6 routes through an IPv4 next hop; use an IPv6 node-ip (underlay-protocol ipv6), " +
				"or let the network route the IPv6 pod CIDRs and turn auto-direct-node-routes off"}
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
	if c.NativeRoutingCIDR6.IsValid() {
		c.NativeRoutingCIDR6 = c.NativeRoutingCIDR6.Masked()
		if !c.NativeRoutingCIDR6.Addr().Is6() {
			return &Error{Key: "ipv6-native-routing-cidr", Value: c.NativeRoutingCIDR6.String(), Reason: "want an IPv6 CIDR"}
		}
	}
	for _, h := range []struct {
		key  string
		addr netip.Addr
		pod  netip.Prefix
		is6  bool
	}{{"host-ipv4", c.HostIP, c.PodCIDR, false}, {"host-ipv6", c.HostIP6, c.PodCIDR6, true}} {
		if !h.addr.IsValid() {
			continue
		}
		v := h.addr.String()
		switch {
		case h.addr.Is6() != h.is6 || h.addr.Is4In6():
			return &Error{Key: h.key, Value: v, Reason: map[bool]string{false: "want an IPv4 address", true: "want an IPv6 address"}[h.is6]}
		case !h.pod.IsValid():
			return &Error{Key: h.key, Value: v, Reason: "pod-cidr has no CIDR of its family"}
		case !h.pod.Contains(h.addr):
			return &Error{Key: h.key, Value: v, Reason: "not inside pod-cidr " + h.pod.String()}
		case h.addr == h.pod.Masked().Addr():
			return &Error{Key: h.key, Value: v, Reason: "the network address of pod-cidr " + h.pod.String()}
		case !h.is6 && h.pod.Bits() < 31 && h.addr == lastAddr(h.pod):
			return &Error{Key: h.key, Value: v, Reason: "the broadcast address of pod-cidr " + h.pod.String()}
		}
	}
	for _, f := range []struct {
		key      string
		cluster  *netip.Prefix
		pod      netip.Prefix
		want6    bool
		wantText string
	}{
		{"cluster-pool-ipv4-cidr", &c.ClusterCIDR, c.PodCIDR, false, "want an IPv4 CIDR"},
		{"cluster-pool-ipv6-cidr", &c.ClusterCIDR6, c.PodCIDR6, true, "want an IPv6 CIDR"},
	} {
		if !f.cluster.IsValid() {
			continue
		}
		*f.cluster = f.cluster.Masked()
		if f.cluster.Addr().Is6() != f.want6 {
			return &Error{Key: f.key, Value: f.cluster.String(), Reason: f.wantText}
		}
		if f.pod.IsValid() && !covers(*f.cluster, f.pod) {
			return &Error{Key: "pod-cidr", Value: f.pod.String(), Reason: "not inside " + f.key + " " + f.cluster.String()}
		}
	}
	return nil
}

// covers reports whether outer contains all of inner.
func covers(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func (c *Config) validateNodes() *Error {
	local := c.Local()
	names := make(map[string]int)
	ips := make(map[netip.Addr]int)
	for i := range c.Nodes {
		n := &c.Nodes[i]
		key := func(field string) string { return fmt.Sprintf("nodes[%d].%s", i, field) }
		n.PodCIDR, n.PodCIDR6 = n.PodCIDR.Masked(), n.PodCIDR6.Masked() // set in code; the file refuses host bits
		if err := local.CheckNode(*n); err != nil {
			return inList(err, "nodes", i)
		}
		if j, dup := names[n.Name]; dup {
			return &Error{Key: key("name"), Value: n.Name, Reason: fmt.Sprintf("also the name of nodes[%d]", j)}
		}
		names[n.Name] = i
		if j, dup := ips[n.IP]; dup {
			return &Error{Key: key("ip"), Value: n.IP.String(), Reason: fmt.Sprintf("also the address of nodes[%d]", j)}
		}
		ips[n.IP] = i
		for j := 0; j < i; j++ {
			for _, pair := range [][2]netip.Prefix{{n.PodCIDR, c.Nodes[j].PodCIDR}, {n.PodCIDR6, c.Nodes[j].PodCIDR6}} {
				if pair[0].IsValid() && pair[1].IsValid() && pair[0].Overlaps(pair[1]) {
					return &Error{Key: key("pod-cidr"), Value: pair[0].String(),
						Reason: fmt.Sprintf("overlaps nodes[%d].pod-cidr %s", j, pair[1])}
				}
			}
		}
	}
	// Underlay addresses inside a pod CIDR would route tunnel packets
	// into the overlay they travel on.
	for i, n := range c.Nodes {
		for j, m := range c.Nodes {
			for _, p := range []netip.Prefix{m.PodCIDR, m.PodCIDR6} {
				if p.Contains(n.IP) {
					return &Error{Key: fmt.Sprintf("nodes[%d].ip", i), Value: n.IP.String(),
						Reason: fmt.Sprintf("inside nodes[%d].pod-cidr %s", j, p)}
				}
			}
		}
	}
	return nil
}

// inList names an entry's field by its place in a list: "ip" of the third
// node becomes "nodes[2].ip".
func inList(e *Error, list string, i int) *Error {
	out := *e
	out.Key = fmt.Sprintf("%s[%d].%s", list, i, e.Key)
	return &out
}

func (c *Config) validateEndpoints() *Error {
	local := c.Local()
	names := make(map[string]int)
	ips := make(map[netip.Addr]int)
	for i := range c.Endpoints {
		ep := &c.Endpoints[i]
		key := func(field string) string { return fmt.Sprintf("endpoints[%d].%s", i, field) }
		if err := local.CheckEndpoint(ep); err != nil {
			return inList(err, "endpoints", i)
		}
		if j, dup := names[ep.Name]; dup {
			return &Error{Key: key("name"), Value: ep.Name, Reason: fmt.Sprintf("also the name of endpoints[%d]", j)}
		}
		names[ep.Name] = i
		for _, a := range []netip.Addr{ep.IP, ep.IP6} {
			if !a.IsValid() {
				continue
			}
			if j, dup := ips[a]; dup {
				return &Error{Key: key("ip"), Value: a.String(), Reason: fmt.Sprintf("also the address of endpoints[%d]", j)}
			}
			ips[a] = i
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
		c.VTEPs[i].CIDR = v.CIDR.Masked() // set in code, or a bare address completed by vtep-mask
		if err := c.Local().CheckVTEP(c.VTEPs[i]); err != nil {
			return err
		}
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
