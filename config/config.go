// Package config turns vxdp's configuration sources into one validated
// Config.
//
// There are three sources, applied in this order so that each later one
// overrides the earlier ones key by key:
//
//  1. a YAML file (Load, Parse);
//  2. a Cilium ConfigMap mounted as a directory, one file per key (ApplyDir);
//  3. command-line flags, one key each (Set).
//
// Validate then checks the rules that span keys and fills in what depends
// on other keys (the tunnel port). Nothing is validated across keys before
// that, because a later source may still repair an earlier one.
//
// Keys are Cilium's names where Cilium has one. Every value may be written
// as a string, because a ConfigMap holds nothing else: `mtu: 1500` and
// `mtu: "1500"` mean the same. An empty value (or YAML null) means the key's
// default, which is how an empty ConfigMap entry reads.
//
// Every problem is reported as an *Error naming the key and the value as it
// was written, so the command line can print it in one line and exit 2. A
// file or directory with several problems reports them all at once, as
// Errors: one *Error each, in the order they were found.
//
// Keys of Cilium's that vxdp does not implement are not errors: a real
// cilium-config ConfigMap holds dozens of them. They are ignored and
// listed by Config.Ignored, for one warning. Any other unknown key is an
// error.
package config

import (
	"net"
	"net/netip"
	"os"
	"time"
)

// Routing modes, tunnel protocols, underlays and log levels: the accepted
// values of their keys.
const (
	RoutingTunnel = "tunnel"
	RoutingNative = "native"

	ProtocolVXLAN  = "vxlan"
	ProtocolGeneve = "geneve"

	UnderlayUDP   = "udp"
	UnderlayAFXDP = "afxdp"
	UnderlayAuto  = "auto"

	TunnelGSOAuto = "auto"
	TunnelGSOOff  = "off"

	IPAMClusterPool = "cluster-pool"
	IPAMKubernetes  = "kubernetes"

	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"
)

// Defaults that are not simply a zero value.
const (
	// DefaultVXLANPort is the Linux kernel's and Cilium's VXLAN port, not
	// IANA's 4789: peers running Cilium or a kernel vxlan device with
	// default settings expect it.
	DefaultVXLANPort uint16 = 8472
	// DefaultGenevePort is IANA's Geneve port, which Cilium also uses.
	DefaultGenevePort uint16 = 6081

	DefaultSocket   = "/run/vxdp/vxdp.sock"
	DefaultStateDir = "/var/lib/vxdp"
	DefaultProcFS   = "/proc"
	DefaultIfname   = "eth0"
)

// Limits on values.
const (
	// MinMTU is the smallest underlay MTU accepted. It is IPv6's minimum
	// link MTU; no NIC that carries an overlay today is below it, and a
	// smaller value is far more likely a typo than a real link. Over an
	// IPv4 underlay the route MTU is then at least 1230, comfortably above
	// IPv4's 576.
	MinMTU = 1280
	// MaxMTU is the largest value an IP total length can describe.
	MaxMTU = 65535

	// MinWorkloadIdentity and MaxIdentity bound the identities an endpoint
	// may be given: numbers below 256 are Cilium's reserved identities,
	// and the VNI that carries an identity has 24 bits.
	MinWorkloadIdentity = 256
	MaxIdentity         = 1<<24 - 1

	// maxEndpointName keeps an endpoint name usable as a file name in the
	// state directory and as part of a device name elsewhere.
	maxEndpointName = 63
	// maxIfname is IFNAMSIZ minus the terminating NUL.
	maxIfname = 15
	// maxNodeName is the longest DNS name, which is what Kubernetes node
	// names are.
	maxNodeName = 253
	// maxSocketPath is sizeof(sockaddr_un.sun_path) minus the NUL.
	maxSocketPath = 107
)

// Config is vxdp's node configuration. Build it with Default, Parse or Load,
// layer ApplyDir and Set on top, then call Validate before use.
//
// A program embedding vxdp may also fill the fields directly; Validate
// checks them the same way. The one exception is VTEPs: when the vtep-*
// keys are set through Parse, ApplyDir or Set, VTEPs is rebuilt from them.
type Config struct {
	NodeName string     // node-name; default: the host name
	NodeIP   netip.Addr // node-ip: underlay address of this node (required)
	Device   string     // device: underlay NIC; "" = the device holding node-ip
	// PodCIDR and PodCIDR6 are this node's pod CIDRs (pod-cidr), IPv4 and
	// IPv6; at least one. A dual-stack node has both.
	PodCIDR  netip.Prefix
	PodCIDR6 netip.Prefix
	// EnableIPv4 and EnableIPv6 (Cilium's keys) say which pod families
	// the node carries. Unset, they follow pod-cidr; set, they must agree
	// with it. Validate fills them in.
	EnableIPv4 bool
	EnableIPv6 bool
	// UnderlayProtocol (underlay-protocol, Cilium's key: "ipv4" or
	// "ipv6") is the family of the underlay; "" follows node-ip, and a
	// value that differs from node-ip's family is refused.
	UnderlayProtocol string

	RoutingMode    string // routing-mode: RoutingTunnel or RoutingNative
	TunnelProtocol string // tunnel-protocol: ProtocolVXLAN or ProtocolGeneve
	// TunnelPort is the UDP port of the overlay. 0 stands for the
	// protocol's default; Validate replaces it with that default.
	TunnelPort uint16
	Underlay   string // underlay: UnderlayUDP, UnderlayAFXDP or UnderlayAuto
	// TunnelGSO is TunnelGSOAuto (pods' TCP super-packets leave whole,
	// through a TAP device, for the kernel to segment, where the kernel
	// can) or TunnelGSOOff.
	TunnelGSO string
	// MTU is the underlay MTU; 0 means read it from the device.
	MTU int
	// PodQueues is the number of queues of each pod's TUN device, each
	// read by a worker of its own (1: single queue).
	PodQueues int
	// UnderlaySockets is the number of UDP sockets sharing the tunnel
	// port (SO_REUSEPORT), each read by a worker of its own.
	UnderlaySockets int
	// BusyPoll is how long a worker whose pod device or underlay queue
	// runs empty keeps trying before it sleeps (0: it sleeps at once;
	// DefaultBusyPoll).
	BusyPoll time.Duration
	// Nice is the scheduling niceness of the agent's threads, -20..19
	// (DefaultNice).
	Nice int
	// UnderlaySourcePorts is the number of outer UDP source ports of the
	// UDP underlay (a send socket each); flows are spread over them.
	UnderlaySourcePorts int

	// NativeRoutingCIDR is where the network routes pod traffic itself.
	// It only means something in native mode and is ignored in tunnel
	// mode, so that one file can serve both modes.
	NativeRoutingCIDR    netip.Prefix
	AutoDirectNodeRoutes bool // only valid in native mode, as in Cilium
	// EnableIPsec is accepted for compatibility with Cilium's ConfigMap.
	// vxdp does not encrypt; the key only matters because it conflicts
	// with enable-vtep.
	EnableIPsec bool
	// ClusterCIDR is the whole pod address space (Cilium's
	// cluster-pool-ipv4-cidr). When set it must contain every pod CIDR.
	ClusterCIDR netip.Prefix
	// ClusterCIDR6 (cluster-pool-ipv6-cidr) and NativeRoutingCIDR6
	// (ipv6-native-routing-cidr) are their IPv6 counterparts.
	ClusterCIDR6       netip.Prefix
	NativeRoutingCIDR6 netip.Prefix
	// HostIP and HostIP6 (host-ipv4, host-ipv6) are the host device's
	// addresses in the pod CIDRs; unset, the first address after the
	// network address (see HostAddr, HostAddr6).
	HostIP, HostIP6 netip.Addr

	Nodes     []Node
	Endpoints []Endpoint

	// EnableVTEP turns the VTEPs on. VTEPs given while it is false are
	// kept but not used, and not checked against the pod CIDRs.
	EnableVTEP bool
	VTEPs      []VTEP

	// VXLANReservedMask selects bits of the VXLAN header's first word
	// (flags and the 24 reserved bits after them, wire order, the I flag
	// excluded) that are tolerated on receive. 0 drops every packet with
	// a reserved bit set, as the Linux kernel does by default.
	VXLANReservedMask uint32
	// TunnelSourceCheck drops tunnel packets whose outer source is neither
	// a known node nor a VTEP.
	TunnelSourceCheck bool

	Socket   string // control API socket path
	LogLevel string
	StateDir string
	// ProcFS is where the proc file system is mounted (procfs), for the
	// sysctls the agent writes; a container mounts the host's there.
	ProcFS string
	// MetricsAddr is where Prometheus metrics and /healthz are served
	// (prometheus-serve-addr, Cilium's key); empty: off.
	MetricsAddr string
	// PodCIDRAuto (pod-cidr: auto) claims this node's pod CIDRs in the
	// kvstore: a block of PodCIDRMaskSize bits from ClusterCIDR and one of
	// PodCIDRMaskSize6 bits from ClusterCIDR6, for each pool that is set
	// (see AutoFamilies). The agent fills PodCIDR and PodCIDR6 in and
	// validates again.
	PodCIDRAuto      bool
	PodCIDRMaskSize  int
	PodCIDRMaskSize6 int
	// KVStore ("" or "etcd") and its options (Cilium's kvstore-opt).
	KVStore    string
	KVStoreOpt map[string]string
	// IPAM (Cilium's ipam key) says where the pod CIDRs come from:
	// IPAMClusterPool (pod-cidr) or IPAMKubernetes, with which the agent
	// fills PodCIDR and PodCIDR6 in from its Node object's spec.podCIDRs
	// and validates again.
	IPAM string
	// K8sKubeconfig (k8s-kubeconfig-path) and K8sAPIServer
	// (k8s-api-server) say how to reach the Kubernetes API server; see
	// K8sEnabled.
	K8sKubeconfig string
	K8sAPIServer  string

	// raw carries what the sources wrote for keys whose meaning depends on
	// other keys, so that the final value does not depend on the order in
	// which the keys were given.
	raw rawKeys
	// ignored lists the Cilium keys the sources set that vxdp does not
	// use, sorted (see Ignored).
	ignored []string
}

// Node is a peer node: where its pods live and how to reach it.
type Node struct {
	Name     string
	IP       netip.Addr   // underlay address
	PodCIDR  netip.Prefix // its IPv4 pods
	PodCIDR6 netip.Prefix // its IPv6 pods
}

// Endpoint is a pod on this node.
type Endpoint struct {
	Name   string     // unique; used as a file name in the state directory
	IP     netip.Addr // IPv4 address, inside PodCIDR
	IP6    netip.Addr // IPv6 address, inside PodCIDR6; at least one of the two
	Netns  string     // network namespace: a path such as /run/netns/pod1
	Ifname string     // device name inside the pod; default DefaultIfname
	// Identity is the pod's security identity; 0 asks the dataplane for
	// its default workload identity.
	Identity uint32
	// AllowFrom lists the identities allowed to reach the pod, each a
	// decimal number or a reserved name ("world", "remote-node", ...).
	// Empty leaves the decision to the dataplane's default policy.
	AllowFrom []string
}

// VTEP is a third-party VXLAN tunnel endpoint and the CIDR behind it.
type VTEP struct {
	Endpoint netip.Addr       // its underlay address (IPv4)
	CIDR     netip.Prefix     // what it owns (IPv4)
	MAC      net.HardwareAddr // inner destination MAC of frames sent to it
}

// DefaultNice is the agent's niceness unless the key nice says otherwise:
// the work it does is the kernel's softirq work for a kernel datapath,
// and pods that keep every CPU busy must not starve it (ovs-ctl starts
// Open vSwitch's userspace datapath at the same -10).
const DefaultNice = -10

// DefaultBusyPoll is the default busy-poll: long enough to catch the
// answer of a request/response exchange between pods of two nodes on the
// next hop (a round trip through two agents took 100-130 µs with it on a
// two-CPU VM, 210-235 µs without), short enough that sparse traffic costs
// little (0.13 CPUs for both agents at 200 pings a second) and that an
// idle agent costs nothing. docs/PERFORMANCE.md has the measurements.
const DefaultBusyPoll = 200 * time.Microsecond

// Default returns the configuration used when no key is given.
func Default() *Config {
	return &Config{
		NodeName:            hostname(),
		RoutingMode:         RoutingTunnel,
		TunnelProtocol:      ProtocolVXLAN,
		Underlay:            UnderlayAuto,
		TunnelGSO:           TunnelGSOAuto,
		TunnelSourceCheck:   true,
		PodQueues:           2,
		UnderlaySockets:     2,
		Nice:                DefaultNice,
		BusyPoll:            DefaultBusyPoll,
		UnderlaySourcePorts: 64,
		Socket:              DefaultSocket,
		LogLevel:            LogInfo,
		StateDir:            DefaultStateDir,
		ProcFS:              DefaultProcFS,
		PodCIDRMaskSize:     24,
		PodCIDRMaskSize6:    120,
		IPAM:                IPAMClusterPool,
	}
}

// hostname is node-name's default: $K8S_NODE_NAME, else the host name. A failure leaves it empty, which
// Validate then reports as a missing node-name rather than an obscure
// error at startup.
func hostname() string {
	// As Cilium: a DaemonSet passes the Node's name (spec.nodeName).
	if n := os.Getenv("K8S_NODE_NAME"); n != "" {
		return n
	}
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// K8sEnabled reports whether the agent learns the cluster from the
// Kubernetes API server: when enable-k8s is true, or when it is not given
// and k8s-kubeconfig-path, k8s-api-server or ipam: kubernetes asks for it.
// With neither of the two keys, the client takes the in-cluster
// configuration of the pod the agent runs in.
func (c *Config) K8sEnabled() bool {
	if c.raw.enableK8s != "" {
		return c.raw.enableK8s == "true"
	}
	return c.K8sKubeconfig != "" || c.K8sAPIServer != "" || c.IPAM == IPAMKubernetes
}

// DefaultTunnelPort returns the port a tunnel-port of 0 stands for.
func DefaultTunnelPort(protocol string) uint16 {
	if protocol == ProtocolGeneve {
		return DefaultGenevePort
	}
	return DefaultVXLANPort
}

// RouteMTU returns the MTU of routes and pod devices for an underlay with
// the given MTU: in tunnel mode the VXLAN or Geneve overhead is taken off
// (outer IP + UDP + 8-byte tunnel header + inner Ethernet: 50 bytes over
// IPv4, 70 over IPv6; vxdp sends no Geneve options), in native mode
// nothing is. The result is never negative.
func (c *Config) RouteMTU(underlayMTU int) int {
	if c.RoutingMode == RoutingNative {
		return underlayMTU
	}
	overhead := 50
	if c.NodeIP.Is6() && !c.NodeIP.Is4In6() {
		overhead = 70
	}
	return max(underlayMTU-overhead, 0)
}

// HostAddr is the host device vxdp_host's IPv4 address: host-ipv4, or the
// first address of pod-cidr after its network address; invalid without an
// IPv4 pod CIDR.
func (c *Config) HostAddr() netip.Addr { return hostAddr(c.HostIP, c.PodCIDR) }

// HostAddr6 is HostAddr for IPv6 (host-ipv6).
func (c *Config) HostAddr6() netip.Addr { return hostAddr(c.HostIP6, c.PodCIDR6) }

func hostAddr(set netip.Addr, p netip.Prefix) netip.Addr {
	if !p.IsValid() {
		return netip.Addr{}
	}
	if set.IsValid() {
		return set
	}
	return p.Masked().Addr().Next()
}
