package agent

import (
	"fmt"
	"net"
	"strconv"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/identity"
)

// Nodes, endpoints and VTEPs from the API, from the state of a previous
// run and from etcd go through the configuration file's checks (config's
// Local.CheckNode, Local.CheckEndpoint, Local.CheckVTEP), so that none of them
// takes what the file refuses. The engine then checks each against all
// the others (overlaps, duplicates, the underlay subnet).

// apiFields names the configuration's entry fields as the API's JSON does.
var apiFields = map[string]string{
	"pod-cidr":      "pod_cidr",
	"allow-from":    "allow_from",
	"vtep-cidr":     "cidr",
	"vtep-endpoint": "endpoint",
	"vtep-mac":      "mac",
}

// entryError words a refused entry in one line, with the API's name of
// the field at fault, and marks it invalid (an API answer of 400):
//
//	node x: pod_cidr "10.169.72.0/24": contains node-ip 10.169.72.1
func entryError(kind, name string, e *config.Error) error {
	field := e.Key
	if f, ok := apiFields[field]; ok {
		field = f
	}
	what := kind
	if name != "" && name != e.Value {
		what += " " + name
	}
	if e.Value != "" {
		return fmt.Errorf("%s: %s %s: %s: %w", what, field, strconv.Quote(e.Value), e.Reason, dataplane.ErrInvalid)
	}
	return fmt.Errorf("%s: %s: %s: %w", what, field, e.Reason, dataplane.ErrInvalid)
}

// nodeRequest parses and checks a node of POST /v1/nodes.
func (a *Agent) nodeRequest(req api.NodeRequest) (dataplane.NodeSpec, error) {
	var n config.Node
	for _, f := range []struct{ field, value string }{{"name", req.Name}, {"ip", req.IP}, {"pod-cidr", req.PodCIDR}} {
		if f.value == "" {
			continue // CheckNode says "required"
		}
		if e := n.Set(f.field, f.value); e != nil {
			return dataplane.NodeSpec{}, entryError("node", req.Name, e)
		}
	}
	spec := dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6}
	return spec, a.checkNode(spec)
}

// checkNode checks a node that is already parsed (state, etcd).
func (a *Agent) checkNode(n dataplane.NodeSpec) error {
	if e := a.local.CheckNode(config.Node{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6}); e != nil {
		return entryError("node", n.Name, e)
	}
	return nil
}

// endpointRequest parses and checks an endpoint of POST /v1/endpoints.
// Its identity may be a number or a reserved name (which the check then
// refuses as reserved, with the range it wants).
func (a *Agent) endpointRequest(req api.EndpointRequest) (dataplane.EndpointSpec, error) {
	ep := config.Endpoint{Netns: req.Netns, Ifname: req.Ifname, AllowFrom: req.AllowFrom}
	for _, f := range []struct{ field, value string }{{"name", req.Name}, {"ip", req.IP}} {
		if f.value == "" {
			continue
		}
		if e := ep.Set(f.field, f.value); e != nil {
			return dataplane.EndpointSpec{}, entryError("endpoint", req.Name, e)
		}
	}
	if req.Identity != "" {
		id, err := identity.Parse(req.Identity)
		if err != nil {
			return dataplane.EndpointSpec{}, entryError("endpoint", req.Name,
				&config.Error{Key: "identity", Value: req.Identity, Reason: err.Error()})
		}
		ep.Identity = uint32(id)
	}
	if e := a.local.CheckEndpoint(&ep); e != nil {
		return dataplane.EndpointSpec{}, entryError("endpoint", req.Name, e)
	}
	allow, err := parseAllowFrom(ep.AllowFrom)
	if err != nil {
		return dataplane.EndpointSpec{}, entryError("endpoint", req.Name,
			&config.Error{Key: "allow-from", Reason: err.Error()})
	}
	return dataplane.EndpointSpec{Name: ep.Name, IP: ep.IP, IP6: ep.IP6, Netns: ep.Netns, Ifname: ep.Ifname,
		Identity: identity.ID(ep.Identity), AllowFrom: allow}, nil
}

// checkEndpoint checks an endpoint that is already parsed (state).
func (a *Agent) checkEndpoint(s dataplane.EndpointSpec) error {
	ep := config.Endpoint{Name: s.Name, IP: s.IP, IP6: s.IP6, Netns: s.Netns, Ifname: s.Ifname, Identity: uint32(s.Identity)}
	for _, id := range s.AllowFrom {
		ep.AllowFrom = append(ep.AllowFrom, strconv.FormatUint(uint64(id), 10))
	}
	if e := a.local.CheckEndpoint(&ep); e != nil {
		return entryError("endpoint", s.Name, e)
	}
	return nil
}

// vtepRequest parses and checks a VTEP of POST or PUT /v1/vteps.
func (a *Agent) vtepRequest(req api.VTEPRequest) (dataplane.VTEPSpec, error) {
	v, e := a.local.ParseVTEP(req.CIDR, req.Endpoint, req.MAC)
	if e != nil {
		return dataplane.VTEPSpec{}, entryError("vtep", req.CIDR, e)
	}
	specs, err := vtepSpecs([]config.VTEP{v})
	if err != nil {
		return dataplane.VTEPSpec{}, err
	}
	return specs[0], nil
}

// checkVTEP checks a VTEP that is already parsed (state, etcd).
func (a *Agent) checkVTEP(v dataplane.VTEPSpec) error {
	if e := a.local.CheckVTEP(config.VTEP{Endpoint: v.Endpoint, CIDR: v.CIDR, MAC: net.HardwareAddr(v.MAC[:])}); e != nil {
		return entryError("vtep", v.CIDR.String(), e)
	}
	return nil
}
