package agent

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/tun"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
)

// applyConfig fills a new engine with the configuration's nodes, VTEPs and
// endpoints, then with what the state of a previous run adds: the nodes,
// VTEPs and endpoints it had from the API. An entry of the configuration
// that the engine refuses fails the start; one of the state is logged and
// skipped.
func (a *Agent) applyConfig(st *state) error {
	cfg := a.cfg
	nodes := make([]dataplane.NodeSpec, 0, len(cfg.Nodes))
	for _, n := range cfg.Nodes {
		nodes = append(nodes, dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6})
	}
	if err := a.nodes.add(a.eng, nodes, fromConfig); err != nil {
		return err
	}
	for _, n := range st.Nodes {
		spec := dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6}
		err := a.checkNode(spec)
		if err == nil {
			err = a.nodes.add(a.eng, []dataplane.NodeSpec{spec}, fromAPI)
		}
		if err != nil {
			a.log.Warn("node from the previous run not restored", zap.String("node", n.Name), zap.Error(err))
		}
	}
	if st.VTEPs != nil {
		err := a.restoreVTEPs(*st.VTEPs...)
		if err != nil {
			a.log.Warn("vteps from the previous run not restored", zap.Error(err))
		}
		a.vtepsFromAPI = err == nil
	}
	if cfg.EnableVTEP && !a.vtepsFromAPI {
		vs, err := vtepSpecs(cfg.VTEPs)
		if err != nil {
			return err
		}
		if err := a.eng.SetVTEPs(vs); err != nil {
			return fmt.Errorf("vteps: %w", err)
		}
	}
	for _, ep := range cfg.Endpoints {
		spec, err := configEndpoint(ep)
		if err != nil {
			return err
		}
		if err := a.eng.AddEndpoint(spec); err != nil {
			return err
		}
		a.configEndpoints[ep.Name] = true
	}
	for _, ep := range st.Endpoints {
		if !ep.FromAPI || a.configEndpoints[ep.Name] {
			continue
		}
		err := a.checkEndpoint(ep.spec())
		if err == nil {
			err = a.eng.AddEndpoint(ep.spec())
		}
		if err != nil {
			a.log.Warn("endpoint from the previous run not restored", zap.String("endpoint", ep.Name), zap.Error(err))
		}
	}
	return nil
}

func (a *Agent) restoreVTEPs(rows ...api.VTEP) error {
	vs := make([]dataplane.VTEPSpec, 0, len(rows))
	for _, r := range rows {
		v, err := vtepSpec(r)
		if err == nil {
			err = a.checkVTEP(v)
		}
		if err != nil {
			return err
		}
		vs = append(vs, v)
	}
	return a.eng.SetVTEPs(vs)
}

// removeUnclaimed removes the pod devices of the previous run that no
// endpoint took back (an endpoint since removed from the file).
func removeUnclaimed(log *zap.Logger, st *state, unclaimed map[string]bool) {
	for _, ep := range st.Endpoints {
		if !unclaimed[ep.Name] {
			continue
		}
		if d, err := tun.Attach(ep.Netns, ifnameOr(ep.Ifname)); err == nil {
			d.Destroy()
			log.Info("removed a device the previous run left", zap.String("endpoint", ep.Name))
		}
	}
}

// configEndpoint is the engine's form of an endpoint of the configuration.
func configEndpoint(ep config.Endpoint) (dataplane.EndpointSpec, error) {
	allow, err := parseAllowFrom(ep.AllowFrom)
	if err != nil {
		return dataplane.EndpointSpec{}, fmt.Errorf("endpoint %s allow-from: %w", ep.Name, err)
	}
	return dataplane.EndpointSpec{Name: ep.Name, IP: ep.IP, IP6: ep.IP6, Netns: ep.Netns, Ifname: ep.Ifname,
		Identity: identity.ID(ep.Identity), AllowFrom: allow}, nil
}

func vtepSpecs(in []config.VTEP) ([]dataplane.VTEPSpec, error) {
	out := make([]dataplane.VTEPSpec, 0, len(in))
	for _, v := range in {
		var mac encap.MAC
		if len(v.MAC) != len(mac) {
			return nil, fmt.Errorf("vtep %s mac %s: not a 48-bit address", v.CIDR, v.MAC)
		}
		copy(mac[:], v.MAC)
		out = append(out, dataplane.VTEPSpec{CIDR: v.CIDR, Endpoint: v.Endpoint, MAC: mac})
	}
	return out, nil
}

// parseAllowFrom turns identity numbers and reserved names into IDs; an
// empty list means allow all (nil). An empty member (",,," on the command
// line) is refused: read as nothing, it would open the endpoint to all.
func parseAllowFrom(in []string) ([]identity.ID, error) {
	var out []identity.ID
	for i, s := range in {
		if strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("allow_from: member %d is empty", i+1)
		}
		id, err := identity.Parse(s)
		if err != nil {
			return nil, err
		}
		if id == identity.Unknown {
			return nil, fmt.Errorf("identity %q: unknown (0) cannot be allowed", s)
		}
		out = append(out, id)
	}
	return out, nil
}
