// Package api is the control interface of a running vxdp agent: HTTP with
// JSON bodies under /v1/ on a unix socket. The types here are shared by the
// agent's server and the CLI's client.
package api

import (
	"net/netip"
	"time"

	"github.com/vxdp/vxdp/identity"
)

// DefaultSocket is where the agent listens unless told otherwise.
const DefaultSocket = "/run/vxdp/vxdp.sock"

// SocketEnv names the environment variable that overrides DefaultSocket.
const SocketEnv = "VXDP_SOCKET"

// Status is GET /v1/status.
type Status struct {
	Healthy        bool         `json:"healthy"`
	Problems       []string     `json:"problems,omitempty"`
	NodeName       string       `json:"node_name"`
	NodeIP         netip.Addr   `json:"node_ip"`
	PodCIDR        netip.Prefix `json:"pod_cidr"`
	HostIP         netip.Addr   `json:"host_ip"`
	PodCIDR6       netip.Prefix `json:"pod_cidr6,omitzero"` // a node with IPv6 pods
	HostIP6        netip.Addr   `json:"host_ip6,omitzero"`
	RoutingMode    string       `json:"routing_mode"`
	TunnelProtocol string       `json:"tunnel_protocol"`
	TunnelPort     uint16       `json:"tunnel_port"`
	Underlay       string       `json:"underlay"`
	UnderlayReason string       `json:"underlay_reason,omitempty"`
	Device         string       `json:"device"`
	UnderlayMTU    int          `json:"underlay_mtu"`
	RouteMTU       int          `json:"route_mtu"`
	MTUChange      string       `json:"mtu_change,omitempty"` // when and from what the underlay MTU last changed
	TunnelMAC      string       `json:"tunnel_mac"`
	Endpoints      int          `json:"endpoints"`
	Nodes          int          `json:"nodes"`
	VTEPs          int          `json:"vteps"`
	FIBEntries     int          `json:"fib_entries"`
	UptimeSeconds  float64      `json:"uptime_seconds"`
	ForwardingWas  string       `json:"ip_forward_before,omitempty"`
	Forwarding6Was string       `json:"ipv6_forwarding_before,omitempty"`
	KVStore        string       `json:"kvstore,omitempty"`
	Kubernetes     string       `json:"kubernetes,omitempty"` // the API server's connection, when Kubernetes is on
	// StateSave says why the last save of the state file failed; empty
	// when it succeeded. Not a problem of the packet path: Healthy stays.
	StateSave string   `json:"state_save,omitempty"`
	Routes    []string `json:"routes"`
	Version   string   `json:"version"`
}

// Tunnel is one row of GET /v1/tunnels: a remote pod CIDR and the node
// that holds it, as Cilium's tunnel map shows them.
type Tunnel struct {
	Prefix   netip.Prefix `json:"prefix"`
	Endpoint netip.Addr   `json:"endpoint"`
	Node     string       `json:"node"`
}

// EndpointRequest is POST /v1/endpoints.
type EndpointRequest struct {
	Name      string   `json:"name"`
	IP        string   `json:"ip"` // one address, or one of each family: "10.1.1.10,fd00:1:1::10"
	Netns     string   `json:"netns"`
	Ifname    string   `json:"ifname,omitempty"`
	Identity  string   `json:"identity,omitempty"` // number or reserved name
	AllowFrom []string `json:"allow_from,omitempty"`
}

// PolicyRequest is PUT /v1/endpoints/{name}/policy: the identities
// allowed into the endpoint (numbers or reserved names), or AllowAll. An
// empty list without AllowAll denies everything.
type PolicyRequest struct {
	AllowFrom []string `json:"allow_from"`
	AllowAll  bool     `json:"allow_all,omitempty"`
}

// NodeRequest is POST /v1/nodes.
type NodeRequest struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	PodCIDR string `json:"pod_cidr"` // one CIDR, or one of each family: "10.1.2.0/24,fd00:1:2::/64"
}

// Identity is one row of GET /v1/identities.
type Identity struct {
	ID   uint32 `json:"id"`
	Name string `json:"name"`
	// VNI is what the identity is sent as; 0 when it is never sent.
	VNI uint32 `json:"vni"`
}

// VTEPRequest is the body of POST /v1/vteps, and PUT /v1/vteps takes a
// list of them (the whole table, replaced at once).
type VTEPRequest struct {
	CIDR     string `json:"cidr"`
	Endpoint string `json:"endpoint"`
	MAC      string `json:"mac"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// CNICode is the CNI specification's error code of a failed
	// /v1/cni/ request, for the plugin to pass on.
	CNICode uint `json:"cni_code,omitempty"`
}

// Endpoint is one row of GET /v1/endpoints.
type Endpoint struct {
	Name     string      `json:"name"`
	IP       netip.Addr  `json:"ip"`           // IPv4; invalid ("") for an IPv6-only pod
	IP6      netip.Addr  `json:"ip6,omitzero"` // IPv6, when the pod has one
	Netns    string      `json:"netns"`
	Ifname   string      `json:"ifname"`
	Identity identity.ID `json:"identity"`
	// AllowFrom lists the source identities allowed in; null allows all,
	// an empty list none.
	AllowFrom []identity.ID `json:"allow_from"`
	Device    string        `json:"device"`
	MTU       int           `json:"mtu"`
	// DeviceGone says the kernel removed the pod's device (its network
	// namespace was deleted); the endpoint waits to be deleted.
	DeviceGone bool `json:"device_gone,omitempty"`
	// ContainerID is the container a CNI runtime attached this endpoint
	// for; empty for an endpoint of the file or the API.
	ContainerID string `json:"container_id,omitempty"`
}

// Node is one row of GET /v1/nodes.
type Node struct {
	Name     string       `json:"name"`
	IP       netip.Addr   `json:"ip"`
	PodCIDR  netip.Prefix `json:"pod_cidr"`           // IPv4; invalid ("") when the node has none
	PodCIDR6 netip.Prefix `json:"pod_cidr6,omitzero"` // IPv6, when the node has one
	// Source says where the node came from: config, api or etcd.
	Source string `json:"source,omitempty"`
}

// FIBEntry is one row of GET /v1/fib: a prefix, the kind of route
// (local, tunnel, vtep, host, unreachable) and, in words, where it leads.
type FIBEntry struct {
	Prefix netip.Prefix `json:"prefix"`
	Kind   string       `json:"kind"`
	Target string       `json:"target,omitempty"`
}

// VTEP is one row of GET /v1/vteps.
type VTEP struct {
	CIDR     netip.Prefix `json:"cidr"`
	Endpoint netip.Addr   `json:"endpoint"`
	MAC      string       `json:"mac"`
}

// Event is one line of the GET /v1/monitor stream.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Reason   string    `json:"reason"`
	Device   string    `json:"device"`
	Source   string    `json:"source"`
	Protocol string    `json:"protocol,omitempty"`
	Src      string    `json:"src,omitempty"`
	Dst      string    `json:"dst,omitempty"`
	Identity uint32    `json:"identity,omitempty"`
	OuterSrc string    `json:"outer_src,omitempty"`
	OuterDst string    `json:"outer_dst,omitempty"`
	Bytes    int       `json:"bytes"`
}

// Stats is GET /v1/stats.
type Stats struct {
	Devices     []DeviceCounters  `json:"devices"`
	Drops       map[string]uint64 `json:"drops"`
	ICMPErrors  uint64            `json:"icmp_errors_sent"`
	ARPReplies  uint64            `json:"arp_replies_sent"`
	TotalDrops  uint64            `json:"total_drops"`
	RouteMTU    int               `json:"route_mtu"`
	UnderlayMTU int               `json:"underlay_mtu"`
	// MonitorEventsLost counts drop events the monitor left out because
	// a watcher could not keep up or their rate was over the limit.
	MonitorEventsLost uint64 `json:"monitor_events_lost"`
	// ICMPErrorsLimited counts ICMP errors not sent because of the rate
	// limit (1000 a second and worker, bursts of 50).
	ICMPErrorsLimited uint64 `json:"icmp_errors_rate_limited"`
	// ECNAnomalies counts tunnel packets whose outer and inner ECN fields
	// RFC 6040 calls a currently unused combination (an ECN-capable outer
	// header over a Not-ECT inner packet, ECT(1) outside CE).
	ECNAnomalies uint64 `json:"ecn_anomalies"`
}

// DeviceCounters are the packet counters of one device: rx is what vxdp
// read from it, tx what vxdp wrote to it.
type DeviceCounters struct {
	Device    string `json:"device"`
	Kind      string `json:"kind"`
	RxBatches uint64 `json:"rx_batches"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxErrors  uint64 `json:"tx_errors"`
	// Counted by the driver itself.
	DriverRxDropped uint64 `json:"driver_rx_dropped"`
	DriverTxErrors  uint64 `json:"driver_tx_errors"`
	// KernelDropped is what the kernel discarded before vxdp could read
	// it: a pod's packets that found its TUN queue full, datagrams that
	// found an underlay socket's receive buffer full, frames that found
	// an AF_XDP queue's RX ring full or its fill ring empty.
	// KernelDropError says why the counter could not be read.
	KernelDropped   uint64    `json:"kernel_dropped"`
	KernelDropError string    `json:"kernel_dropped_error,omitempty"`
	Offloads        []Offload `json:"offloads,omitempty"`
	// SourcePorts are the outer UDP source ports of an underlay queue.
	SourcePorts *SourcePorts `json:"source_ports,omitempty"`
}

// SourcePorts describes the outer source ports an underlay sends from:
// Count distinct ports within [Min, Max], one per flow.
type SourcePorts struct {
	Count int    `json:"count"`
	Min   uint16 `json:"min"`
	Max   uint16 `json:"max"`
}

// Offload is one kernel offload of a device: whether it is in use, why
// not, and how much work went through it.
type Offload struct {
	Name    string `json:"name"`
	Active  bool   `json:"active"`
	Reason  string `json:"reason,omitempty"`
	Count   uint64 `json:"count"`
	Largest uint64 `json:"largest_bytes,omitempty"`
}
