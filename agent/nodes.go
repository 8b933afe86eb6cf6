package agent

import (
	"sync"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/dataplane"
)

// Where a remote node came from. The engine holds the nodes; their
// origin is the agent's bookkeeping: a reload replaces only the
// configuration's nodes, etcd only its own, and the state file keeps only
// the API's. `vxdp node list` shows it in its SOURCE column.
const (
	fromConfig = "config"
	fromAPI    = "api"
	fromEtcd   = "etcd"
	fromK8s    = "kubernetes"
)

// nodeBook changes the engine's nodes and remembers each one's origin.
type nodeBook struct {
	mu     sync.Mutex        // serialises node changes; protects source
	source map[string]string // node name -> fromConfig, fromAPI, fromEtcd or fromK8s
}

func newNodeBook() *nodeBook { return &nodeBook{source: map[string]string{}} }

// add adds nodes to eng, all or none (dataplane.Engine.AddNodes), and
// records that they came from origin.
func (b *nodeBook) add(eng *dataplane.Engine, ns []dataplane.NodeSpec, origin string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := eng.AddNodes(ns); err != nil {
		return err
	}
	for _, n := range ns {
		b.source[n.Name] = origin
	}
	return nil
}

// del removes a node from eng and forgets its origin.
func (b *nodeBook) del(eng *dataplane.Engine, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := eng.DelNode(name); err != nil {
		return err
	}
	delete(b.source, name)
	return nil
}

// list returns eng's nodes, sorted by name, with their origin.
func (b *nodeBook) list(eng *dataplane.Engine) []api.Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	return convert(eng.Nodes(), func(n dataplane.NodeSpec) api.Node {
		return api.Node{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6, Source: b.source[n.Name]}
	})
}

// from returns eng's nodes that came from origin.
func (b *nodeBook) from(eng *dataplane.Engine, origin string) []dataplane.NodeSpec {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Filtered in place: the engine's copy is ours, and with thousands
	// of nodes a second one would be garbage of every state save.
	nodes := eng.Nodes()
	out := nodes[:0]
	for _, n := range nodes {
		if b.source[n.Name] == origin {
			out = append(out, n)
		}
	}
	return out
}

// lookup returns the named node of eng and its origin.
func (b *nodeBook) lookup(eng *dataplane.Engine, name string) (dataplane.NodeSpec, string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range eng.Nodes() {
		if n.Name == name {
			return n, b.source[name], true
		}
	}
	return dataplane.NodeSpec{}, "", false
}

// sourceNodePut applies a node that a cluster source (etcd, Kubernetes)
// announced or changed. Nodes from the file or the API win: a conflict
// is logged and skipped. A node the checks refuse is logged and leaves
// what was known of it as it was. protocol and port are what the node
// says it speaks ("" and 0 when it did not say).
func (a *Agent) sourceNodePut(origin string, spec dataplane.NodeSpec, protocol string, port uint16) {
	cur, had, known := a.nodes.lookup(a.eng, spec.Name)
	if known && had != origin {
		if cur.IP != spec.IP || cur.PodCIDR != spec.PodCIDR || cur.PodCIDR6 != spec.PodCIDR6 {
			a.log.Warn(origin+" node conflicts with a configured one; the configured one stays",
				zap.String("node", spec.Name), zap.Stringer(origin+"-ip", spec.IP), zap.Stringer("ip", cur.IP))
		}
		return
	}
	if known && cur.IP == spec.IP && cur.PodCIDR == spec.PodCIDR && cur.PodCIDR6 == spec.PodCIDR6 {
		return
	}
	a.memTrim.changed()
	if err := a.checkNode(spec); err != nil {
		a.log.Warn(origin+" node refused", zap.String("node", spec.Name), zap.Error(err))
		return
	}
	if known {
		a.nodes.del(a.eng, spec.Name)
	}
	if protocol != "" && (protocol != a.cfg.TunnelProtocol || (port != 0 && port != a.cfg.TunnelPort)) {
		a.log.Warn(origin+" node speaks another tunnel protocol or port; the cluster must agree",
			zap.String("node", spec.Name), zap.String("protocol", protocol), zap.Uint16("port", port))
	}
	if err := a.nodes.add(a.eng, []dataplane.NodeSpec{spec}, origin); err != nil {
		a.log.Warn(origin+" node not added", zap.String("node", spec.Name), zap.Error(err))
	}
}

// sourceNodeDel removes a node a cluster source no longer has, if it
// came from that source.
func (a *Agent) sourceNodeDel(origin, name string) {
	a.memTrim.changed()
	if _, had, known := a.nodes.lookup(a.eng, name); known && had == origin {
		if err := a.nodes.del(a.eng, name); err != nil {
			a.log.Warn("remove "+origin+" node", zap.String("node", name), zap.Error(err))
		}
	}
}
