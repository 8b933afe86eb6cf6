package api

import "net/netip"

// CNIAttachment names one attachment of a container to the node's pod
// network, as the CNI specification does: container ID and interface.
type CNIAttachment struct {
	ContainerID string `json:"container_id"`
	Ifname      string `json:"ifname"`
}

// CNIRequest is POST /v1/cni/add, /v1/cni/del and /v1/cni/check: what the
// vxdp-cni plugin passes on from the runtime.
type CNIRequest struct {
	CNIAttachment
	// Network is the network configuration's name: leases remember it, so
	// that a GC of one network leaves another network's attachments alone.
	Network string `json:"network,omitempty"`
	Netns   string `json:"netns,omitempty"`
	// IPs are the addresses the runtime asked for (its "ips" capability),
	// at most one of each family; none lets the agent choose.
	IPs []string `json:"ips,omitempty"`
	// Identity and AllowFrom as for an endpoint; from CNI_ARGS or the
	// network configuration's runtime config.
	Identity  string   `json:"identity,omitempty"`
	AllowFrom []string `json:"allow_from,omitempty"`
	// ExplicitPolicy says Identity and AllowFrom came from CNI_ARGS or the
	// runtime config, which win over a pod's annotations; otherwise they
	// are the network configuration's defaults.
	ExplicitPolicy bool `json:"explicit_policy,omitempty"`
	// PodNamespace and PodName name the Kubernetes pod (K8S_POD_NAMESPACE
	// and K8S_POD_NAME of CNI_ARGS), whose annotations give its identity
	// and allow-list when the agent reads the cluster from the API server.
	PodNamespace string `json:"pod_namespace,omitempty"`
	PodName      string `json:"pod_name,omitempty"`
}

// CNIResult is the answer to a successful ADD (and to CHECK): the
// interface made in the sandbox, its addresses, routes and MTU.
type CNIResult struct {
	Endpoint string       `json:"endpoint"`
	Ifname   string       `json:"ifname"`
	Netns    string       `json:"netns"`
	IPs      []CNIAddress `json:"ips"`
	Routes   []CNIRoute   `json:"routes"`
	MTU      int          `json:"mtu"`
}

// CNIAddress is one address of the interface, with the prefix length it
// has there (/32, /128) and the gateway its default route names.
type CNIAddress struct {
	Address netip.Prefix `json:"address"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
}

// CNIRoute is one route in the sandbox; an invalid GW means a route
// through the interface itself.
type CNIRoute struct {
	Dst netip.Prefix `json:"dst"`
	GW  netip.Addr   `json:"gw,omitzero"`
}

// CNIGCRequest is POST /v1/cni/gc: every attachment of this network
// that is not listed is removed.
type CNIGCRequest struct {
	Network          string          `json:"network,omitempty"`
	ValidAttachments []CNIAttachment `json:"valid_attachments"`
}

// CNIGCResult says which attachments a GC removed.
type CNIGCResult struct {
	Removed []CNIAttachment `json:"removed"`
}
