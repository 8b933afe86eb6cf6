package agent

import (
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/identity"
)

// ErrNeedsRestart is returned by Reload for changes a running agent cannot
// apply (node-ip, pod-cidr, mode, protocol, port, underlay, device, MTU,
// socket): the old configuration stays in force.
var ErrNeedsRestart = errors.New("change needs a restart")

// Reload applies a new, already validated configuration: the difference in
// nodes, endpoints, VTEPs, policies and the log level. What the change does
// not touch keeps running untouched. It refuses (and changes nothing) when
// a key that needs a restart differs; on a failure midway the changes
// already made stay and the error says which one failed.
func (a *Agent) Reload(n *config.Config) error {
	o := a.cfg
	if err := keepClaims(o, n); err != nil {
		return err
	}
	for _, d := range []struct {
		key      string
		old, new any
	}{
		{"node-ip", o.NodeIP, n.NodeIP}, {"pod-cidr", o.PodCIDR, n.PodCIDR}, {"pod-cidr", o.PodCIDR6, n.PodCIDR6},
		{"routing-mode", o.RoutingMode, n.RoutingMode}, {"tunnel-protocol", o.TunnelProtocol, n.TunnelProtocol},
		{"tunnel-port", o.TunnelPort, n.TunnelPort}, {"underlay", o.Underlay, n.Underlay}, {"tunnel-gso", o.TunnelGSO, n.TunnelGSO},
		{"device", o.Device, n.Device}, {"mtu", o.MTU, n.MTU}, {"socket", o.Socket, n.Socket},
		{"cluster-pool-ipv4-cidr", o.ClusterCIDR, n.ClusterCIDR}, {"cluster-pool-ipv6-cidr", o.ClusterCIDR6, n.ClusterCIDR6}, {"auto-direct-node-routes", o.AutoDirectNodeRoutes, n.AutoDirectNodeRoutes},
		{"prometheus-serve-addr", o.MetricsAddr, n.MetricsAddr}, {"state-dir", o.StateDir, n.StateDir}, {"procfs", o.ProcFS, n.ProcFS},
		{"ipam", o.IPAM, n.IPAM}, {"enable-k8s", o.K8sEnabled(), n.K8sEnabled()},
		{"k8s-kubeconfig-path", o.K8sKubeconfig, n.K8sKubeconfig}, {"k8s-api-server", o.K8sAPIServer, n.K8sAPIServer},
		{"host-ipv4", o.HostAddr(), n.HostAddr()}, {"host-ipv6", o.HostAddr6(), n.HostAddr6()},
	} {
		if d.old != d.new {
			return fmt.Errorf("%s: %v -> %v: %w", d.key, d.old, d.new, ErrNeedsRestart)
		}
	}
	newVTEPs := []dataplane.VTEPSpec{}
	if n.EnableVTEP {
		vs, err := vtepSpecs(n.VTEPs)
		if err != nil {
			return err
		}
		newVTEPs = vs
	}
	wantEPs := map[string]dataplane.EndpointSpec{}
	for _, ep := range n.Endpoints {
		spec, err := configEndpoint(ep)
		if err != nil {
			return err
		}
		wantEPs[ep.Name] = spec
	}

	if err := a.setLogLevel(n.LogLevel); err != nil {
		return err
	}
	var changes []string
	// Nodes: only those that came from the configuration are managed here;
	// nodes added through the API stay.
	have := map[string]dataplane.NodeSpec{}
	for _, nd := range a.nodes.from(a.eng, fromConfig) {
		have[nd.Name] = nd
	}
	want := map[string]config.Node{}
	for _, nd := range n.Nodes {
		want[nd.Name] = nd
	}
	for name, nd := range have {
		if w, ok := want[name]; !ok || w.IP != nd.IP || w.PodCIDR != nd.PodCIDR || w.PodCIDR6 != nd.PodCIDR6 {
			if err := a.nodes.del(a.eng, name); err != nil {
				return err
			}
			changes = append(changes, "node -"+name)
		}
	}
	var add []dataplane.NodeSpec
	for name, nd := range want {
		if h, ok := have[name]; ok && h.IP == nd.IP && h.PodCIDR == nd.PodCIDR && h.PodCIDR6 == nd.PodCIDR6 {
			continue
		}
		add = append(add, dataplane.NodeSpec{Name: nd.Name, IP: nd.IP, PodCIDR: nd.PodCIDR, PodCIDR6: nd.PodCIDR6})
	}
	// A node of the file takes over one of the same name added through
	// the API or found in etcd: the file wins, as at start.
	type takenNode struct {
		spec   dataplane.NodeSpec
		origin string
	}
	var taken []takenNode
	for _, nd := range add {
		if old, origin, ok := a.nodes.lookup(a.eng, nd.Name); ok && origin != fromConfig {
			if err := a.nodes.del(a.eng, nd.Name); err != nil {
				return err
			}
			a.log.Warn("a node of the configuration replaces one of the same name", zap.String("node", nd.Name),
				zap.String("replaced-source", origin), zap.Stringer("replaced-ip", old.IP), zap.Stringer("replaced-pod-cidr", old.PodCIDR))
			taken = append(taken, takenNode{old, origin})
			changes = append(changes, "node ~"+nd.Name+" (was "+origin+")")
		}
	}
	if err := a.nodes.add(a.eng, add, fromConfig); err != nil {
		// Give the replaced nodes back: a refused reload changes nothing
		// of theirs.
		for _, t := range taken {
			if _, _, ok := a.nodes.lookup(a.eng, t.spec.Name); !ok {
				a.nodes.add(a.eng, []dataplane.NodeSpec{t.spec}, t.origin)
			}
		}
		return err
	}
	for _, n := range add {
		changes = append(changes, "node +"+n.Name)
	}
	// Endpoints: a changed address, namespace, name inside the pod or
	// identity means a new device; a changed policy does not.
	cur := map[string]dataplane.Endpoint{}
	for _, ep := range a.eng.Endpoints() {
		cur[ep.Name] = ep
	}
	for name, ep := range cur {
		if !a.configEndpoints[name] {
			continue // added through the API
		}
		w, ok := wantEPs[name]
		if ok && sameDevice(ep.EndpointSpec, w) {
			if !slices.Equal(ep.AllowFrom, w.AllowFrom) || (ep.AllowFrom == nil) != (w.AllowFrom == nil) {
				if err := a.eng.SetPolicy(name, w.AllowFrom); err != nil {
					return err
				}
				changes = append(changes, "policy "+name)
			}
			continue
		}
		if err := a.eng.DelEndpoint(name); err != nil {
			return err
		}
		a.stateMu.Lock()
		delete(a.configEndpoints, name)
		a.stateMu.Unlock()
		changes = append(changes, "endpoint -"+name)
	}
	for name, w := range wantEPs {
		if _, ok := cur[name]; ok && a.configEndpoints[name] {
			continue
		}
		if err := a.eng.AddEndpoint(w); err != nil {
			return err
		}
		a.stateMu.Lock()
		a.configEndpoints[name] = true
		a.stateMu.Unlock()
		changes = append(changes, "endpoint +"+name)
	}
	if !slices.Equal(a.eng.VTEPs(), sortedVTEPs(newVTEPs)) {
		if err := a.eng.SetVTEPs(newVTEPs); err != nil {
			return fmt.Errorf("vteps: %w", err)
		}
		a.stateMu.Lock()
		a.vtepsFromAPI = false
		a.stateMu.Unlock()
		changes = append(changes, "vteps")
	}
	if o.Nice != n.Nice {
		applyNice(a.log, o.Nice, n.Nice)
		changes = append(changes, fmt.Sprintf("nice %d", n.Nice))
	}
	if o.BusyPoll != n.BusyPoll {
		a.eng.SetBusyPoll(n.BusyPoll)
		changes = append(changes, "busy-poll "+n.BusyPoll.String())
	}
	a.cfg = n
	a.saveState()
	a.log.Info("configuration reloaded", zap.Strings("changes", changes))
	return nil
}

// SetLevel hands the agent the level of its logger, so that reloads can
// change it. Without it log-level changes need a restart.
func (a *Agent) SetLevel(l zap.AtomicLevel) { a.level = &l }

func (a *Agent) setLogLevel(s string) error {
	if a.level == nil || s == "" {
		return nil
	}
	var l zap.AtomicLevel
	var err error
	if l, err = zap.ParseAtomicLevel(s); err != nil {
		return fmt.Errorf("log-level %q: %w", s, err)
	}
	a.level.SetLevel(l.Level())
	return nil
}

func sameDevice(a, b dataplane.EndpointSpec) bool {
	ifa, ifb := a.Ifname, b.Ifname
	if ifa == "" {
		ifa = "eth0"
	}
	if ifb == "" {
		ifb = "eth0"
	}
	ida, idb := a.Identity, b.Identity
	if ida == 0 {
		ida = identity.DefaultWorkload
	}
	if idb == 0 {
		idb = identity.DefaultWorkload
	}
	return a.IP == b.IP && a.IP6 == b.IP6 && a.Netns == b.Netns && ifa == ifb && ida == idb
}

func sortedVTEPs(vs []dataplane.VTEPSpec) []dataplane.VTEPSpec {
	out := slices.Clone(vs)
	slices.SortFunc(out, func(x, y dataplane.VTEPSpec) int { return x.CIDR.Addr().Compare(y.CIDR.Addr()) })
	if out == nil {
		out = []dataplane.VTEPSpec{}
	}
	return out
}

// keepClaims fills in the pod CIDRs a pod-cidr: auto or ipam: kubernetes
// file leaves open with the blocks the running agent claimed or read (a
// reload claims and reads nothing), and checks the new file against them. Another block size is a restart's
// business, as the held block would no longer fit it.
func keepClaims(o, n *config.Config) error {
	if o.IPAM == config.IPAMKubernetes && n.IPAM == config.IPAMKubernetes && !n.PodCIDR.IsValid() && !n.PodCIDR6.IsValid() {
		// The pod CIDRs read from the Node object at the start stay.
		n.PodCIDR, n.PodCIDR6 = o.PodCIDR, o.PodCIDR6
		return n.Validate()
	}
	if !o.PodCIDRAuto || !n.PodCIDRAuto {
		return nil
	}
	for _, d := range []struct {
		key      string
		old, new int
	}{
		{"cluster-pool-ipv4-mask-size", o.PodCIDRMaskSize, n.PodCIDRMaskSize},
		{"cluster-pool-ipv6-mask-size", o.PodCIDRMaskSize6, n.PodCIDRMaskSize6},
	} {
		if d.old != d.new {
			return fmt.Errorf("%s: %d -> %d: %w", d.key, d.old, d.new, ErrNeedsRestart)
		}
	}
	v4, v6 := n.AutoFamilies()
	filled := false
	if v4 && !n.PodCIDR.IsValid() && o.PodCIDR.IsValid() {
		n.PodCIDR, filled = o.PodCIDR, true
	}
	if v6 && !n.PodCIDR6.IsValid() && o.PodCIDR6.IsValid() {
		n.PodCIDR6, filled = o.PodCIDR6, true
	}
	if !filled {
		return nil
	}
	return n.Validate()
}
