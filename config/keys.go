package config

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// keyKind says which YAML shapes a key accepts besides a plain scalar.
type keyKind uint8

const (
	kindScalar keyKind = iota
	// kindWords is a list written as one string split on white space (the
	// form Cilium's ConfigMap uses); a YAML sequence is accepted too.
	kindWords
	// kindItems is a list of mappings (nodes, endpoints). As a string it
	// is YAML text, which is what a ConfigMap file for it holds.
	kindItems
	// kindMap is a mapping of single values (kvstore-opt); as a string it
	// is a JSON object, the form Cilium's ConfigMap uses.
	kindMap
)

// keySpec describes one configuration key.
type keySpec struct {
	name string
	kind keyKind
	// def is the value the key has in Default(), as Get prints it; it is
	// also what an empty value resets the key to.
	def string
	doc string
	// set parses s (never empty: Set substitutes def first, and keys whose
	// def is empty handle "" as "unset").
	set func(c *Config, s string) error
	get func(c *Config) string
	// setNode takes a kindItems key's YAML sequence directly, so that
	// errors carry the line of the offending item.
	setNode func(c *Config, n *yaml.Node, d *decoder) error
}

// keyTable lists the keys in the order Keys returns them: the order of
// the design's example file.
var keyTable = []keySpec{
	{
		name: "node-name", doc: "name of this node (default: $K8S_NODE_NAME, else the host name)",
		set: func(c *Config, s string) error {
			if s == "" {
				s = hostname()
			} else if err := checkNodeName(s); err != nil {
				return err
			}
			c.NodeName = s
			return nil
		},
		get: func(c *Config) string { return c.NodeName },
	},
	{
		name: "node-ip", doc: "underlay IPv4 or IPv6 address of this node (required)",
		set: func(c *Config, s string) error {
			if s == "" {
				c.NodeIP = netip.Addr{}
				return nil
			}
			a, err := parseAddr(s)
			if err != nil {
				return err
			}
			if err := checkNodeAddr(a); err != nil {
				return err
			}
			c.NodeIP = a
			return nil
		},
		get: func(c *Config) string { return formatAddr(c.NodeIP) },
	},
	{
		name: "device", doc: `underlay network device (default "": the device that holds node-ip)`,
		set: func(c *Config, s string) error {
			if s != "" {
				if err := checkIfname(s); err != nil {
					return err
				}
			}
			c.Device = s
			return nil
		},
		get: func(c *Config) string { return c.Device },
	},
	{
		name: "pod-cidr", doc: "this node's pod CIDRs: one IPv4 and/or one IPv6 CIDR, comma separated, e.g. 10.1.1.0/24,fd00:1:1::/64 (required), or auto: a block of cluster-pool-ipv4-cidr and one of cluster-pool-ipv6-cidr (each pool that is set) claimed in the kvstore",
		set: func(c *Config, s string) error {
			var v4, v6 netip.Prefix
			if s != "" && s != "auto" {
				var err error
				if v4, v6, err = parsePodCIDRs(s); err != nil {
					return err
				}
			}
			c.PodCIDR, c.PodCIDR6, c.PodCIDRAuto = v4, v6, s == "auto"
			c.raw.podCIDRGiven = s != ""
			return nil
		},
		get: func(c *Config) string {
			return joinPair(c.PodCIDR, c.PodCIDR6, c.PodCIDR.IsValid(), c.PodCIDR6.IsValid())
		},
	},
	{
		name: "enable-ipv4", doc: "carry IPv4 between pods (default: when pod-cidr has an IPv4 CIDR)",
		set: func(c *Config, s string) error { return setFamily(&c.raw.enableIPv4, s) },
		get: func(c *Config) string { return c.raw.enableIPv4 },
	},
	{
		name: "enable-ipv6", doc: "carry IPv6 between pods (default: when pod-cidr has an IPv6 CIDR)",
		set: func(c *Config, s string) error { return setFamily(&c.raw.enableIPv6, s) },
		get: func(c *Config) string { return c.raw.enableIPv6 },
	},
	{
		name: "underlay-protocol", doc: "ipv4 or ipv6: the family of the underlay, which must be node-ip's (default: node-ip's)",
		set: func(c *Config, s string) error {
			if s == "" {
				c.UnderlayProtocol = ""
				return nil
			}
			v, err := oneOf(s, "ipv4", "ipv6")
			if err == nil {
				c.UnderlayProtocol = v
			}
			return err
		},
		get: func(c *Config) string { return c.UnderlayProtocol },
	},
	{
		name: "routing-mode", def: RoutingTunnel, doc: "tunnel (encapsulate between nodes) or native (the network routes pod CIDRs)",
		set: func(c *Config, s string) error {
			v, err := oneOf(s, RoutingTunnel, RoutingNative)
			if err != nil {
				return err
			}
			c.RoutingMode = v
			// An override of the legacy key makes it history: Get must
			// not report a value that no longer holds.
			if mode, _ := legacyTunnel(c.raw.tunnel); c.raw.tunnel != "" && mode != v {
				c.raw.tunnel = ""
			}
			return nil
		},
		get: func(c *Config) string { return c.RoutingMode },
	},
	{
		name: "tunnel", doc: "legacy Cilium key: vxlan or geneve (tunnel mode with that protocol) or disabled (native mode)",
		set: func(c *Config, s string) error {
			if s == "" {
				c.raw.tunnel = ""
				return nil
			}
			v, err := oneOf(s, ProtocolVXLAN, ProtocolGeneve, "disabled")
			if err != nil {
				return err
			}
			mode, proto := legacyTunnel(v)
			c.RoutingMode = mode
			if proto != "" {
				c.TunnelProtocol = proto
			}
			c.raw.tunnel = v
			return nil
		},
		get: func(c *Config) string { return c.raw.tunnel },
	},
	{
		name: "tunnel-protocol", def: ProtocolVXLAN, doc: "vxlan or geneve",
		set: func(c *Config, s string) error {
			v, err := oneOf(s, ProtocolVXLAN, ProtocolGeneve)
			if err != nil {
				return err
			}
			c.TunnelProtocol = v
			if _, proto := legacyTunnel(c.raw.tunnel); proto != "" && proto != v {
				c.raw.tunnel = ""
			}
			return nil
		},
		get: func(c *Config) string { return c.TunnelProtocol },
	},
	{
		name: "tunnel-port", def: "0", doc: "UDP port of the overlay; 0 = 8472 for vxlan, 6081 for geneve",
		set: func(c *Config, s string) error {
			v, err := parseUint(s, 65535)
			if err != nil {
				return err
			}
			c.TunnelPort = uint16(v)
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(int(c.TunnelPort)) },
	},
	{
		name: "underlay", def: UnderlayAuto, doc: "udp (a UDP socket), afxdp (AF_XDP on the device) or auto (afxdp where the driver does zero-copy)",
		set: func(c *Config, s string) error {
			v, err := oneOf(s, UnderlayUDP, UnderlayAFXDP, UnderlayAuto)
			if err == nil {
				c.Underlay = v
			}
			return err
		},
		get: func(c *Config) string { return c.Underlay },
	},
	{
		name: "tunnel-gso", def: TunnelGSOAuto, doc: "auto (a pod's TCP super-packets for other nodes leave whole through the TAP device vxdp_gso, for the kernel or the NIC to segment, on a udp underlay over IPv4 where the kernel takes UDP tunnel segmentation on TUN, Linux 6.17 and later) or off (the agent cuts them into segments)",
		set: func(c *Config, s string) error {
			v, err := oneOf(s, TunnelGSOAuto, TunnelGSOOff)
			if err == nil {
				c.TunnelGSO = v
			}
			return err
		},
		get: func(c *Config) string { return c.TunnelGSO },
	},
	{
		name: "mtu", def: "0", doc: "underlay MTU, 1280..65535; 0 = read it from the device",
		set: func(c *Config, s string) error {
			v, err := parseUint(s, MaxMTU)
			if err != nil {
				return err
			}
			if err := checkMTU(int(v)); err != nil {
				return err
			}
			c.MTU = int(v)
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(c.MTU) },
	},
	{
		name: "ipv4-native-routing-cidr", doc: "native mode: the IPv4 CIDR the network routes itself (ignored in tunnel mode)",
		set: func(c *Config, s string) error {
			p, err := parseOptionalPrefix4(s)
			if err == nil {
				c.NativeRoutingCIDR = p
			}
			return err
		},
		get: func(c *Config) string { return formatPrefix(c.NativeRoutingCIDR) },
	},
	{
		name: "ipv6-native-routing-cidr", doc: "native mode: the IPv6 CIDR the network routes itself (ignored in tunnel mode)",
		set: func(c *Config, s string) error {
			p, err := parseOptionalPrefix6(s)
			if err == nil {
				c.NativeRoutingCIDR6 = p
			}
			return err
		},
		get: func(c *Config) string { return formatPrefix(c.NativeRoutingCIDR6) },
	},
	{
		name: "auto-direct-node-routes", def: "false", doc: "native mode: install `pod-cidr via node-ip` routes for every node",
		set: func(c *Config, s string) error { return setBool(&c.AutoDirectNodeRoutes, s) },
		get: func(c *Config) string { return formatBool(c.AutoDirectNodeRoutes) },
	},
	{
		name: "enable-ipsec", def: "false", doc: "accepted for Cilium compatibility; vxdp does not encrypt, and it conflicts with enable-vtep",
		set: func(c *Config, s string) error { return setBool(&c.EnableIPsec, s) },
		get: func(c *Config) string { return formatBool(c.EnableIPsec) },
	},
	{
		name: "cluster-pool-ipv4-cidr", doc: "the whole IPv4 pod address space; must contain every pod CIDR (optional)",
		set: func(c *Config, s string) error {
			p, err := parseOptionalPrefix4(s)
			if err == nil {
				c.ClusterCIDR = p
			}
			return err
		},
		get: func(c *Config) string { return formatPrefix(c.ClusterCIDR) },
	},
	{
		name: "cluster-pool-ipv6-cidr", doc: "the whole IPv6 pod address space; must contain every IPv6 pod CIDR (optional)",
		set: func(c *Config, s string) error {
			p, err := parseOptionalPrefix6(s)
			if err == nil {
				c.ClusterCIDR6 = p
			}
			return err
		},
		get: func(c *Config) string { return formatPrefix(c.ClusterCIDR6) },
	},
	{
		name: "host-ipv4", doc: "the host device's IPv4 address in pod-cidr (default: the first after the network address)",
		set: func(c *Config, s string) error {
			a, err := parseOptionalAddr(s)
			if err == nil {
				c.HostIP = a
			}
			return err
		},
		get: func(c *Config) string { return formatAddr(c.HostIP) },
	},
	{
		name: "host-ipv6", doc: "the host device's IPv6 address in the IPv6 pod-cidr (default: the first after the network address)",
		set: func(c *Config, s string) error {
			a, err := parseOptionalAddr(s)
			if err == nil {
				c.HostIP6 = a
			}
			return err
		},
		get: func(c *Config) string { return formatAddr(c.HostIP6) },
	},
	{
		name: "nodes", kind: kindItems, doc: "peer nodes: a list of {name, ip, pod-cidr} (pod-cidr: one CIDR of each family, comma separated)",
		set: func(c *Config, s string) error {
			return setItemsText(c, "nodes", setNodes, s, &decoder{})
		},
		setNode: setNodes,
		get:     func(c *Config) string { return formatNodes(c.Nodes) },
	},
	{
		name: "endpoints", kind: kindItems, doc: "local pods: a list of {name, ip, netns, ifname, identity, allow-from} (ip: one address of each family, comma separated)",
		set: func(c *Config, s string) error {
			return setItemsText(c, "endpoints", setEndpoints, s, &decoder{})
		},
		setNode: setEndpoints,
		get:     func(c *Config) string { return formatEndpoints(c.Endpoints) },
	},
	{
		name: "enable-vtep", def: "false", doc: "use the VTEPs given by vtep-endpoint, vtep-cidr, vtep-mask and vtep-mac",
		set: func(c *Config, s string) error { return setBool(&c.EnableVTEP, s) },
		get: func(c *Config) string { return formatBool(c.EnableVTEP) },
	},
	{
		name: "vtep-endpoint", kind: kindWords, doc: "VTEP underlay IPv4 addresses, separated by white space",
		set: setVTEPEndpoints,
		get: func(c *Config) string { return joinWords(c.raw.vtepEndpoints) },
	},
	{
		name: "vtep-cidr", kind: kindWords, doc: "the CIDR behind each VTEP, separated by white space; a bare address takes vtep-mask",
		set: setVTEPCIDRs,
		get: func(c *Config) string { return joinWords(c.raw.vtepCIDRs) },
	},
	{
		name: "vtep-mask", doc: "dotted IPv4 mask for vtep-cidr entries written without a prefix length, e.g. 255.255.255.0",
		set: setVTEPMask,
		get: func(c *Config) string {
			if !c.raw.vtepMaskGiven {
				return ""
			}
			return formatDottedMask(c.raw.vtepMaskBits)
		},
	},
	{
		name: "vtep-mac", kind: kindWords, doc: "the MAC address of each VTEP, separated by white space",
		set: setVTEPMACs,
		get: func(c *Config) string { return joinWords(c.raw.vtepMACs) },
	},
	{
		name: "vxlan-reserved-tolerance", def: "0", doc: "VXLAN header bits (first word, I flag excluded) tolerated on receive, e.g. 0x00ffff00; 0 drops any reserved bit like the kernel",
		set: func(c *Config, s string) error {
			v, err := parseMask(s)
			if err != nil {
				return err
			}
			if err := checkReservedMask(v); err != nil {
				return err
			}
			c.VXLANReservedMask = v
			return nil
		},
		get: func(c *Config) string { return formatMask(c.VXLANReservedMask) },
	},
	{
		name: "pod-queues", def: "2", doc: "queues of each pod's TUN device (IFF_MULTI_QUEUE), 1..16, each read by its own worker",
		set: func(c *Config, s string) error { return setCount(&c.PodQueues, s) },
		get: func(c *Config) string { return strconv.Itoa(c.PodQueues) },
	},
	{
		name: "underlay-sockets", def: "2", doc: "UDP underlay only: sockets sharing the tunnel port (SO_REUSEPORT), 1..16, each read by its own worker",
		set: func(c *Config, s string) error { return setCount(&c.UnderlaySockets, s) },
		get: func(c *Config) string { return strconv.Itoa(c.UnderlaySockets) },
	},
	{
		name: "busy-poll", def: formatDuration(DefaultBusyPoll), doc: "how long a worker whose pod device or underlay queue runs empty keeps polling it before it sleeps, as a Go duration (50us), 0..100ms; 0 sleeps at once. Saves a wake-up per hop for traffic that comes within it, at the price of the CPU spent polling; a node short of CPU that values packet rate over round-trip time sets 0",
		set: func(c *Config, s string) error {
			d, err := parseBusyPoll(s)
			if err == nil {
				c.BusyPoll = d
			}
			return err
		},
		get: func(c *Config) string { return formatDuration(c.BusyPoll) },
	},
	{
		name: "nice", def: strconv.Itoa(DefaultNice), doc: "scheduling niceness of the agent's threads, -20..19 (lower runs first), so that pods keeping every CPU busy do not starve it; a negative one needs CAP_SYS_NICE",
		set: func(c *Config, s string) error {
			v, err := strconv.Atoi(s)
			if err != nil || v < -20 || v > 19 {
				return reasonf("want a whole number from -20 to 19")
			}
			c.Nice = v
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(c.Nice) },
	},
	{
		name: "underlay-source-ports", def: "64", doc: "UDP underlay only: outer UDP source ports (one send socket each, spread over 49152-65535), 1..1024; a flow keeps one port (the AF_XDP underlay uses the whole range)",
		set: func(c *Config, s string) error {
			v, err := parseRange(s, 1, 1024)
			if err == nil {
				c.UnderlaySourcePorts = int(v)
			}
			return err
		},
		get: func(c *Config) string { return strconv.Itoa(c.UnderlaySourcePorts) },
	},
	{
		name: "tunnel-source-check", def: "true", doc: "drop tunnel packets whose outer source is neither a node nor a VTEP",
		set: func(c *Config, s string) error { return setBool(&c.TunnelSourceCheck, s) },
		get: func(c *Config) string { return formatBool(c.TunnelSourceCheck) },
	},
	{
		name: "socket", def: DefaultSocket, doc: "path of the control API's unix socket",
		set: func(c *Config, s string) error {
			if err := checkSocket(s); err != nil {
				return err
			}
			c.Socket = s
			return nil
		},
		get: func(c *Config) string { return c.Socket },
	},
	{
		name: "log-level", def: LogInfo, doc: "debug, info, warn or error",
		set: func(c *Config, s string) error {
			v, err := oneOf(s, LogDebug, LogInfo, LogWarn, LogError)
			if err == nil {
				c.LogLevel = v
			}
			return err
		},
		get: func(c *Config) string { return c.LogLevel },
	},
	{
		name: "state-dir", def: DefaultStateDir, doc: "directory for state kept across restarts",
		set: func(c *Config, s string) error {
			if err := checkPath(s); err != nil {
				return err
			}
			c.StateDir = s
			return nil
		},
		get: func(c *Config) string { return c.StateDir },
	},
	{
		name: "procfs", def: DefaultProcFS, doc: "where the proc file system is mounted, for the sysctls the agent writes (a container mounts the host's, e.g. /host/proc)",
		set: func(c *Config, s string) error {
			if err := checkPath(s); err != nil {
				return err
			}
			c.ProcFS = s
			return nil
		},
		get: func(c *Config) string { return c.ProcFS },
	},
	{
		name: "prometheus-serve-addr", doc: "host:port for Prometheus metrics and /healthz; empty: off (loopback unless a host is given)",
		set: func(c *Config, s string) error {
			if s == "" {
				c.MetricsAddr = ""
				return nil
			}
			host, port, err := net.SplitHostPort(s)
			if err != nil {
				return err
			}
			if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
				return fmt.Errorf("port %q: want 1..65535", port)
			}
			if host == "" {
				// ":9962" means loopback here: exposing metrics to the
				// network must be asked for by address.
				host = "127.0.0.1"
			} else if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
				return fmt.Errorf("host %q: want an IP address", host)
			}
			c.MetricsAddr = net.JoinHostPort(host, port)
			return nil
		},
		get: func(c *Config) string { return c.MetricsAddr },
	},
	{
		name: "kvstore", doc: "where nodes find each other: empty (static nodes only) or etcd",
		set: func(c *Config, s string) error {
			if s == "" {
				c.KVStore = ""
				return nil
			}
			v, err := oneOf(s, "etcd")
			if err == nil {
				c.KVStore = v
			}
			return err
		},
		get: func(c *Config) string { return c.KVStore },
	},
	{
		name: "kvstore-opt", kind: kindMap, doc: "kvstore options: etcd.endpoints, etcd.config, etcd.prefix, etcd.lease-ttl (a mapping, or a JSON object as Cilium writes it)",
		set: func(c *Config, s string) error {
			if strings.TrimSpace(s) == "" {
				c.KVStoreOpt = nil
				return nil
			}
			m := map[string]string{}
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				return fmt.Errorf("want a mapping or a JSON object of strings: %v", err)
			}
			c.KVStoreOpt = m
			return nil
		},
		get: func(c *Config) string {
			if len(c.KVStoreOpt) == 0 {
				return ""
			}
			b, _ := json.Marshal(c.KVStoreOpt)
			return string(b)
		},
	},
	{
		name: "ipam", def: IPAMClusterPool, doc: "where this node's pod CIDRs come from: cluster-pool (pod-cidr, or pod-cidr: auto from the cluster pools) or kubernetes (spec.podCIDRs of this node's Node object)",
		set: func(c *Config, s string) error {
			v, err := oneOf(s, IPAMClusterPool, IPAMKubernetes)
			if err == nil {
				c.IPAM = v
			}
			return err
		},
		get: func(c *Config) string { return c.IPAM },
	},
	{
		name: "enable-k8s", doc: "learn the other nodes from the Kubernetes API server (default: when k8s-kubeconfig-path or k8s-api-server is set, or ipam is kubernetes); with neither key set the agent uses its pod's in-cluster configuration",
		set: func(c *Config, s string) error {
			if s == "" {
				c.raw.enableK8s = ""
				return nil
			}
			b, err := parseBool(s)
			if err == nil {
				c.raw.enableK8s = formatBool(b)
			}
			return err
		},
		get: func(c *Config) string { return c.raw.enableK8s },
	},
	{
		name: "k8s-kubeconfig-path", doc: "kubeconfig file through which the agent reaches the Kubernetes API server",
		set: func(c *Config, s string) error {
			if s != "" {
				if err := checkPath(s); err != nil {
					return err
				}
			}
			c.K8sKubeconfig = s
			return nil
		},
		get: func(c *Config) string { return c.K8sKubeconfig },
	},
	{
		name: "k8s-api-server", doc: "URL of the Kubernetes API server, e.g. https://10.169.72.10:6443; overrides the kubeconfig's server",
		set: func(c *Config, s string) error {
			if s != "" {
				if err := checkAPIServerURL(s); err != nil {
					return err
				}
			}
			c.K8sAPIServer = s
			return nil
		},
		get: func(c *Config) string { return c.K8sAPIServer },
	},
	{
		name: "cluster-pool-ipv4-mask-size", def: "24", doc: "prefix length of the blocks pod-cidr: auto claims from cluster-pool-ipv4-cidr",
		set: func(c *Config, s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < 8 || n > 30 {
				return fmt.Errorf("want a prefix length from 8 to 30")
			}
			c.PodCIDRMaskSize = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(c.PodCIDRMaskSize) },
	},
	{
		name: "cluster-pool-ipv6-mask-size", def: "120", doc: "prefix length of the blocks pod-cidr: auto claims from cluster-pool-ipv6-cidr",
		set: func(c *Config, s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < MinPodCIDR6MaskSize || n > MaxPodCIDR6MaskSize {
				return fmt.Errorf("want a prefix length from %d to %d", MinPodCIDR6MaskSize, MaxPodCIDR6MaskSize)
			}
			c.PodCIDRMaskSize6 = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(c.PodCIDRMaskSize6) },
	},
}

// The range of cluster-pool-ipv6-mask-size: a block leaves room for
// vxdp_host's address and a pod (as pod-cidr itself must, /126), and is
// no shorter than the widest pool a cluster may sensibly split.
const (
	MinPodCIDR6MaskSize = 16
	MaxPodCIDR6MaskSize = 126
)

var keyIndex = func() map[string]*keySpec {
	m := make(map[string]*keySpec, len(keyTable))
	for i := range keyTable {
		m[keyTable[i].name] = &keyTable[i]
	}
	return m
}()

// Keys returns every configuration key, in the order of the example file.
func Keys() []string {
	ks := make([]string, len(keyTable))
	for i, k := range keyTable {
		ks[i] = k.name
	}
	return ks
}

// KeyDoc returns a one-line description of key, or "" for an unknown key.
func KeyDoc(key string) string {
	if k, ok := keyIndex[key]; ok {
		return k.doc
	}
	return ""
}

// KeyDefault returns key's default value in the string form Set accepts,
// or "" when the default is empty (or the key is unknown). node-name's
// default is the host name, which is not a constant; it reports "".
func KeyDefault(key string) string {
	if k, ok := keyIndex[key]; ok {
		return k.def
	}
	return ""
}

// Set sets one key from its string form, as a flag or a ConfigMap file
// gives it. Surrounding white space is ignored and an empty value resets
// the key to its default. Parsing and errors are the same as in a YAML
// file; rules spanning several keys wait for Validate.
//
// A Set overrides whatever an earlier source said, including through the
// legacy `tunnel` key: setting routing-mode after `tunnel: vxlan` simply
// wins.
func (c *Config) Set(key, value string) error {
	k, ok := keyIndex[key]
	if !ok {
		return &Error{Key: key, Reason: "unknown key"}
	}
	v := strings.TrimSpace(value)
	if v == "" {
		v = k.def
	}
	if err := k.set(c, v); err != nil {
		return asError(err, key, v)
	}
	return nil
}

// Get returns key's current value in the string form Set accepts, so that
// c.Set(key, c.Get(key)) changes nothing.
func (c *Config) Get(key string) (string, error) {
	k, ok := keyIndex[key]
	if !ok {
		return "", &Error{Key: key, Reason: "unknown key"}
	}
	return k.get(c), nil
}

// oneOf matches s case-insensitively against the allowed values and
// returns the canonical (lower-case) one.
func oneOf(s string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a, nil
		}
	}
	return "", reasonf("want one of %s", strings.Join(allowed, ", "))
}

func setBool(dst *bool, s string) error {
	b, err := parseBool(s)
	if err == nil {
		*dst = b
	}
	return err
}

// legacyTunnel maps Cilium's old `tunnel` key onto routing-mode and
// tunnel-protocol; proto is "" for disabled, which says nothing about it.
func legacyTunnel(v string) (mode, proto string) {
	if v == "disabled" {
		return RoutingNative, ""
	}
	return RoutingTunnel, v
}

func parseOptionalAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	return parseAddr(s)
}

func parseOptionalPrefix4(s string) (p netip.Prefix, err error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err = parsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, reason("want an IPv4 CIDR")
	}
	return p, nil
}

func parseOptionalPrefix6(s string) (p netip.Prefix, err error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err = parsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !p.Addr().Is6() {
		return netip.Prefix{}, reason("want an IPv6 CIDR")
	}
	return p, nil
}

// setFamily keeps enable-ipv4 or enable-ipv6 as given ("" = not given).
func setFamily(dst *string, s string) error {
	if s == "" {
		*dst = ""
		return nil
	}
	b, err := parseBool(s)
	if err != nil {
		return err
	}
	*dst = formatBool(b)
	return nil
}

// checkAPIServerURL accepts an http or https URL naming a host.
func checkAPIServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return reason("want an http:// or https:// URL, e.g. https://10.169.72.10:6443")
	}
	return nil
}

// setCount parses a queue or socket count, 1..16.
func setCount(dst *int, s string) error {
	v, err := parseRange(s, 1, 16)
	if err == nil {
		*dst = int(v)
	}
	return err
}
