// Package api is the control interface of a running vxdp agent: HTTP with
// JSON bodies under /v1/ on a unix socket. The types here are shared by the
// agent's server and the CLI's client.
package api

import (
	"net/netip"

	"github.com/vxdp/vxdp/dataplane"
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
	RoutingMode    string       `json:"routing_mode"`
	TunnelProtocol string       `json:"tunnel_protocol"`
	TunnelPort     uint16       `json:"tunnel_port"`
	Underlay       string       `json:"underlay"`
	UnderlayReason string       `json:"underlay_reason,omitempty"`
	Device         string       `json:"device"`
	UnderlayMTU    int          `json:"underlay_mtu"`
	RouteMTU       int          `json:"route_mtu"`
	TunnelMAC      string       `json:"tunnel_mac"`
	Endpoints      int          `json:"endpoints"`
	Nodes          int          `json:"nodes"`
	VTEPs          int          `json:"vteps"`
	FIBEntries     int          `json:"fib_entries"`
	UptimeSeconds  float64      `json:"uptime_seconds"`
	ForwardingWas  string       `json:"ip_forward_before,omitempty"`
	KVStore        string       `json:"kvstore,omitempty"`
	Routes         []string     `json:"routes"`
	Version        string       `json:"version"`
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
	IP        string   `json:"ip"`
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
	PodCIDR string `json:"pod_cidr"`
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
}

// Aliases of engine types the API returns unchanged.
type (
	Endpoint = dataplane.Endpoint
	Node     = dataplane.NodeSpec
	FIBEntry = dataplane.FIBEntry
	VTEP     = dataplane.VTEPSpec
	Event    = dataplane.Event
	Stats    = dataplane.Stats
)
