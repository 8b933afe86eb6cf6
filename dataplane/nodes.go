package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/fib"
)

type peer struct {
	NodeSpec
	tun tunnel
}

// NodeSpec describes a remote node: its underlay address, of this node's
// NodeIP family, and its IPv4 pod CIDR, its IPv6 one, or both.
type NodeSpec struct {
	Name     string
	IP       netip.Addr
	PodCIDR  netip.Prefix
	PodCIDR6 netip.Prefix
}

// podCIDRs lists the node's pod CIDRs, IPv4 first.
func (n NodeSpec) podCIDRs() []netip.Prefix {
	out := make([]netip.Prefix, 0, 2)
	for _, p := range []netip.Prefix{n.PodCIDR, n.PodCIDR6} {
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// AddNode adds a remote node: its pod CIDRs become reachable through the
// tunnel and its address an accepted tunnel source.
func (e *Engine) AddNode(n NodeSpec) error { return e.AddNodes([]NodeSpec{n}) }

// AddNodes adds remote nodes all at once or, if any of them is refused,
// none: the tables are rebuilt and published once for the whole list, so
// adding a thousand nodes costs one rebuild, not a thousand.
func (e *Engine) AddNodes(ns []NodeSpec) error {
	if len(ns) == 0 {
		return nil
	}
	for _, n := range ns {
		if err := e.checkNode(n); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return ErrStopped
	}
	// Against the nodes there are and the others in the list.
	byIP := make(map[netip.Addr]string, len(e.nodes)+len(ns))
	names := make(map[string]bool, len(ns))
	cidrs := make([]namedCIDR, 0, len(e.nodes)+len(ns))
	for _, o := range e.nodes {
		byIP[o.IP] = o.Name
		for _, p := range o.podCIDRs() {
			cidrs = append(cidrs, namedCIDR{p, o.Name, false})
		}
	}
	for _, n := range ns {
		if _, ok := e.nodes[n.Name]; ok || names[n.Name] {
			return fmt.Errorf("node %s: %w", n.Name, ErrExists)
		}
		names[n.Name] = true
		for _, v := range e.vteps {
			if v.CIDR.Overlaps(n.PodCIDR) || v.Endpoint == n.IP {
				return fmt.Errorf("node %s (%s, %s) collides with vtep %s at %s: %w", n.Name, n.IP, n.PodCIDR, v.CIDR, v.Endpoint, ErrInvalid)
			}
		}
		if o, ok := byIP[n.IP]; ok {
			return fmt.Errorf("node %s ip %s used by node %s: %w", n.Name, n.IP, o, ErrExists)
		}
		byIP[n.IP] = n.Name
		for _, p := range n.podCIDRs() {
			cidrs = append(cidrs, namedCIDR{p, n.Name, true})
		}
	}
	if a, b, ok := overlap(cidrs); ok {
		if !b.added {
			a, b = b, a
		}
		return fmt.Errorf("node %s pod cidr %s overlaps node %s (%s): %w", b.name, b.prefix, a.name, a.prefix, ErrExists)
	}
	if err := e.checkUnderlayAddrsLocked(ns, cidrs); err != nil {
		return err
	}
	if err := e.addNodeRoutes(ns); err != nil {
		return err
	}
	for _, n := range ns {
		e.nodes[n.Name] = &peer{NodeSpec: n, tun: tunnel{
			remote: netip.AddrPortFrom(n.IP, e.cfg.TunnelPort),
			dstMAC: encap.TunnelMAC(n.IP),
		}}
	}
	e.publishLocked()
	if len(ns) == 1 {
		n := ns[0]
		fields := []zap.Field{zap.String("node", n.Name), zap.Stringer("ip", n.IP)}
		if n.PodCIDR.IsValid() {
			fields = append(fields, zap.Stringer("pod-cidr", n.PodCIDR))
		}
		if n.PodCIDR6.IsValid() {
			fields = append(fields, zap.Stringer("pod-cidr6", n.PodCIDR6))
		}
		e.log.Info("node added", fields...)
	} else {
		e.log.Info("nodes added", zap.Int("count", len(ns)))
	}
	return nil
}

// checkUnderlayAddrsLocked refuses nodes whose pod CIDRs hold an underlay
// address (this node's, a node's, a VTEP's) or overlap this node's
// underlay subnet, and nodes whose address lies in a pod CIDR: the kernel
// would route tunnel packets to that address into the overlay they travel
// on (a loop), and the node would lose its way to its peers. cidrs are the
// pod CIDRs, of both families, of the nodes there are and of ns: each
// address is looked up among those of its own family. Callers hold e.mu.
func (e *Engine) checkUnderlayAddrsLocked(ns []NodeSpec, cidrs []namedCIDR) error {
	b := fib.NewBuilder[namedCIDR]()
	for _, c := range cidrs {
		b.Insert(c.prefix, c) // nested old prefixes: the longest wins, as in the FIB
	}
	pods := b.Build()
	addedIn := func(a netip.Addr) (namedCIDR, bool) {
		c, ok := pods.Lookup(a)
		return c, ok && c.added
	}
	if c, ok := addedIn(e.cfg.NodeIP); ok {
		return fmt.Errorf("node %s pod cidr %s contains this node's address %s: %w", c.name, c.prefix, e.cfg.NodeIP, ErrInvalid)
	}
	for _, n := range ns {
		if c, ok := pods.Lookup(n.IP); ok {
			return fmt.Errorf("node %s ip %s is inside node %s's pod cidr %s: %w", n.Name, n.IP, c.name, c.prefix, ErrInvalid)
		}
		for _, p := range n.podCIDRs() {
			if u := e.cfg.UnderlayPrefix; u.IsValid() && p.Overlaps(u) {
				return fmt.Errorf("node %s pod cidr %s overlaps the underlay subnet %s: %w", n.Name, p, u, ErrInvalid)
			}
		}
	}
	for _, o := range e.nodes {
		if c, ok := addedIn(o.IP); ok {
			return fmt.Errorf("node %s pod cidr %s contains node %s's address %s: %w", c.name, c.prefix, o.Name, o.IP, ErrInvalid)
		}
	}
	for _, v := range e.vteps {
		if c, ok := addedIn(v.Endpoint); ok {
			return fmt.Errorf("node %s pod cidr %s contains vtep endpoint %s: %w", c.name, c.prefix, v.Endpoint, ErrInvalid)
		}
	}
	return nil
}

type namedCIDR struct {
	prefix netip.Prefix
	name   string
	added  bool // in the list being added, not already there
}

// overlap finds two overlapping prefixes of which at least one is being
// added. Two CIDRs overlap only by one containing the other, so after
// sorting by address (shorter first) a prefix overlaps an earlier one
// exactly when the widest-reaching earlier one contains its address.
func overlap(cs []namedCIDR) (a, b namedCIDR, ok bool) {
	slices.SortFunc(cs, func(x, y namedCIDR) int {
		if c := x.prefix.Addr().Compare(y.prefix.Addr()); c != 0 {
			return c
		}
		return x.prefix.Bits() - y.prefix.Bits()
	})
	var cur namedCIDR
	have := false
	for _, c := range cs {
		if have && cur.prefix.Contains(c.prefix.Addr()) {
			if cur.added || c.added {
				return cur, c, true
			}
			continue // two old ones nested: not this call's business
		}
		cur, have = c, true
	}
	return namedCIDR{}, namedCIDR{}, false
}

// checkNode validates a node on its own.
func (e *Engine) checkNode(n NodeSpec) error {
	if n.Name == "" {
		return fmt.Errorf("node name empty: %w", ErrInvalid)
	}
	if !n.IP.IsValid() || n.IP == e.cfg.NodeIP {
		return fmt.Errorf("node %s ip %s: %w", n.Name, n.IP, ErrInvalid)
	}
	if !e.sameFamily(n.IP) {
		return fmt.Errorf("node %s ip %s: %w: not of the underlay's family (node ip %s)", n.Name, n.IP, ErrInvalid, e.cfg.NodeIP)
	}
	if !n.PodCIDR.IsValid() && !n.PodCIDR6.IsValid() {
		return fmt.Errorf("node %s pod cidr %s: %w", n.Name, n.PodCIDR, ErrInvalid)
	}
	if p := n.PodCIDR; p.IsValid() {
		if !p.Addr().Is4() || p != p.Masked() {
			return fmt.Errorf("node %s pod cidr %s: %w", n.Name, p, ErrInvalid)
		}
		if p.Overlaps(e.cfg.PodCIDR) {
			return fmt.Errorf("node %s pod cidr %s overlaps this node's %s: %w", n.Name, p, e.cfg.PodCIDR, ErrInvalid)
		}
	}
	if p := n.PodCIDR6; p.IsValid() {
		if !isPlain6(p.Addr()) || p != p.Masked() {
			return fmt.Errorf("node %s pod cidr6 %s: %w", n.Name, p, ErrInvalid)
		}
		if p.Overlaps(e.cfg.PodCIDR6) {
			return fmt.Errorf("node %s pod cidr6 %s overlaps this node's %s: %w", n.Name, p, e.cfg.PodCIDR6, ErrInvalid)
		}
	}
	return nil
}

// nodeRoutes are the host routes node n needs, one per pod CIDR, if any:
// through the host device in tunnel mode, to the node itself in native
// routing with auto-direct-node-routes. An IPv4 pod CIDR of a node on an
// IPv6 underlay is routed via its IPv6 address (the kernel's RTA_VIA); an
// IPv6 pod CIDR of a node on an IPv4 underlay has no route via the node
// (the kernel cannot reach an IPv6 prefix through an IPv4 next hop, and
// the configuration refuses direct routes for it): whoever runs the
// fabric routes it.
func (e *Engine) nodeRoutes(n NodeSpec) []HostRoute {
	var rs []HostRoute
	for _, p := range n.podCIDRs() {
		switch {
		case !e.cfg.Native:
			rs = append(rs, HostRoute{Prefix: p, MTU: e.RouteMTU()})
		case e.cfg.AutoDirectNodeRoutes && (p.Addr().Is4() || !n.IP.Is4()):
			rs = append(rs, HostRoute{Prefix: p, Via: n.IP})
		}
	}
	return rs
}

// addNodeRoutes installs the host routes of ns, all or none; a refusal
// names the node whose route it was.
func (e *Engine) addNodeRoutes(ns []NodeSpec) error {
	if e.hostRoutes == nil {
		return nil
	}
	rs := make([]HostRoute, 0, 2*len(ns))
	for _, n := range ns {
		rs = append(rs, e.nodeRoutes(n)...)
	}
	if len(rs) == 0 {
		return nil
	}
	err := e.hostRoutes.AddRoutes(rs)
	if err == nil {
		return nil
	}
	var re *RouteError
	if errors.As(err, &re) {
		for _, n := range ns {
			if n.PodCIDR == re.Prefix || n.PodCIDR6 == re.Prefix {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	if len(ns) == 1 {
		return fmt.Errorf("node %s: %w", ns[0].Name, err)
	}
	return fmt.Errorf("nodes: %w", err)
}

// DelNode removes a remote node.
func (e *Engine) DelNode(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.nodes[name]
	if !ok {
		return fmt.Errorf("node %s: %w", name, ErrNotFound)
	}
	delete(e.nodes, name)
	e.publishLocked()
	e.delNodeRoutes(p.NodeSpec)
	e.log.Info("node removed", zap.String("node", name))
	return nil
}

// DelNodes removes nodes all at once, with one table rebuild, or none if
// one of the names is unknown.
func (e *Engine) DelNodes(names []string) error {
	if len(names) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	gone := make([]*peer, 0, len(names))
	for _, name := range names {
		p, ok := e.nodes[name]
		if !ok {
			return fmt.Errorf("node %s: %w", name, ErrNotFound)
		}
		gone = append(gone, p)
	}
	for _, p := range gone {
		delete(e.nodes, p.Name)
	}
	e.publishLocked()
	for _, p := range gone {
		e.delNodeRoutes(p.NodeSpec)
	}
	e.log.Info("nodes removed", zap.Int("count", len(gone)))
	return nil
}

// delNodeRoutes removes the host routes addNodeRoutes made for n's pod
// CIDRs.
func (e *Engine) delNodeRoutes(n NodeSpec) {
	if e.hostRoutes == nil {
		return
	}
	for _, p := range n.podCIDRs() {
		if err := e.hostRoutes.DelRoute(p); err != nil {
			e.log.Warn("remove host route", zap.Stringer("prefix", p), zap.Error(err))
		}
	}
}

// Nodes lists the remote nodes sorted by name.
func (e *Engine) Nodes() []NodeSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]NodeSpec, 0, len(e.nodes))
	for _, p := range e.nodes {
		out = append(out, p.NodeSpec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
