package agent

import (
	"sync"

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
)

// nodeBook changes the engine's nodes and remembers each one's origin.
type nodeBook struct {
	mu     sync.Mutex        // serialises node changes; protects source
	source map[string]string // node name -> fromConfig, fromAPI or fromEtcd
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
