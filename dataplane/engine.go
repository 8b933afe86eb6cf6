package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/fib"
	"github.com/vxdp/vxdp/identity"
)

// Config is what the engine needs to know about its node.
type Config struct {
	NodeName    string
	NodeIP      netip.Addr   // underlay address, source of every outer header
	PodCIDR     netip.Prefix // this node's pods; its first address is the host device's
	ClusterCIDR netip.Prefix // optional: the whole pod space; unknown parts of it are unreachable
	TunnelPort  uint16
	UnderlayMTU int
	// Protocol is "vxlan" (the default) or "geneve". VTEPs speak VXLAN on
	// VTEPPort whatever the cluster uses.
	Protocol string
	// GeneveOptions are attached to every Geneve packet this node sends
	// (none by default); their length comes off the route MTU.
	GeneveOptions []encap.GeneveOption
	// VXLANTolerate are reserved VXLAN header bits accepted on receive
	// (see encap.VXLAN.Validate).
	VXLANTolerate uint32
	// DisableSourceCheck turns off the tunnel-source allow-list.
	DisableSourceCheck bool
	// Native selects native routing: every destination that is not a
	// local endpoint or a VTEP goes to the kernel, remote pod CIDRs
	// included; nothing but VTEP traffic is encapsulated.
	Native bool
	// AutoDirectNodeRoutes (native mode) installs `podCIDR via nodeIP`
	// for every remote node.
	AutoDirectNodeRoutes bool
}

// RouteKind says where the FIB sends a destination.
type RouteKind uint8

// Route kinds.
const (
	RouteUnreachable RouteKind = iota
	RouteLocal
	RouteTunnel
	RouteVTEP
	RouteHost
)

func (k RouteKind) String() string {
	switch k {
	case RouteLocal:
		return "local"
	case RouteTunnel:
		return "tunnel"
	case RouteVTEP:
		return "vtep"
	case RouteHost:
		return "host"
	}
	return "unreachable"
}

type route struct {
	kind RouteKind
	ep   *endpoint
	peer *peer
	vtep *vtepRoute
}

// snapshot is the routing state the packet path reads. It is never
// modified once published.
type snapshot struct {
	fib   *fib.Table[route]
	peers map[netip.Addr]*peer // by underlay address
	vteps map[netip.Addr]*vtep // by underlay address
}

type endpoint struct {
	EndpointSpec
	policy  atomic.Pointer[policy]
	ip4     [4]byte
	vni     uint32
	dev     Device
	stats   DeviceStats
	done    chan struct{} // closed when the last reader of dev stopped
	readers atomic.Int32
}

// MultiQueue is implemented by a device with several queues, each read by
// its own worker (a multi-queue TUN device). Queues includes the device
// itself.
type MultiQueue interface {
	Queues() []Device
}

type peer struct {
	NodeSpec
	tun encap.TunnelV4
}

// EndpointSpec describes a pod endpoint.
type EndpointSpec struct {
	Name     string      `json:"name"`
	IP       netip.Addr  `json:"ip"`
	Netns    string      `json:"netns"`
	Ifname   string      `json:"ifname"`
	Identity identity.ID `json:"identity"`
	// AllowFrom lists the source identities allowed in; nil allows all.
	AllowFrom []identity.ID `json:"allow_from"`
}

// NodeSpec describes a remote node.
type NodeSpec struct {
	Name    string       `json:"name"`
	IP      netip.Addr   `json:"ip"`
	PodCIDR netip.Prefix `json:"pod_cidr"`
	Source  string       `json:"source,omitempty"` // where the entry came from: config, api
}

// EndpointDeviceFactory creates the device of a new endpoint, already
// placed and configured in its pod (address, MTU, default route).
type EndpointDeviceFactory func(spec EndpointSpec, mtu int) (Device, error)

// HostRoutes keeps the kernel's routes in step with the remote nodes and
// VTEPs. In tunnel mode the kernel must send a remote pod CIDR to
// vxdp_host (AddRoute) for the node to reach remote pods; in native mode
// with auto-direct-node-routes it routes it to the node itself (AddVia).
// DelRoute removes whichever of the two the engine added for p.
type HostRoutes interface {
	AddRoute(p netip.Prefix, mtu int) error
	AddVia(p netip.Prefix, via netip.Addr) error
	DelRoute(p netip.Prefix) error
}

// Errors returned by the control methods.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrStopped  = errors.New("engine stopped")
)

// Engine is the node dataplane.
type Engine struct {
	cfg       Config
	log       *zap.Logger
	routeMTU  int // pods' MTU
	tunnelMTU int // largest inner packet the encapsulation carries
	geneve    bool
	hostIP    netip.Addr
	hostIP4   [4]byte
	// podBroadcast4 is the pod CIDR's broadcast address: nothing sent
	// there is answered with an ICMP error (RFC 1122 3.2.2).
	podBroadcast4 [4]byte
	nodeIP4       [4]byte
	mac           encap.MAC

	// underlays are the queues of the underlay: one worker reads each,
	// and encapsulated packets leave through the one their flow hashes to.
	underlays   []underlayQueue
	host        Device
	hostStats   DeviceStats
	newEndpoint EndpointDeviceFactory
	hostRoutes  HostRoutes

	state      atomic.Pointer[snapshot]
	drops      drops
	mon        *monitor
	taps       atomic.Pointer[map[Device]*tap] // running captures, nil when none
	tapsMu     sync.Mutex                      // serialises changes to taps
	stop       chan struct{}                   // closed by Close: stops the monitor
	icmps      atomic.Uint64                   // ICMP errors generated
	arpReplies atomic.Uint64                   // ARP replies sent to VTEPs

	// hostRunning and underlayRunning count live workers of the host and
	// underlay devices; one that stops while the engine runs makes it
	// unhealthy.
	hostRunning     atomic.Bool
	underlayRunning atomic.Int32
	started         atomic.Bool

	mu        sync.Mutex // protects endpoints, nodes, vteps, stopped and snapshot rebuilds
	endpoints map[string]*endpoint
	nodes     map[string]*peer
	vteps     []VTEPSpec
	stopped   bool

	workersMu sync.Mutex // protects workers
	workers   map[*worker]struct{}

	wg sync.WaitGroup
}

type underlayQueue struct {
	dev   Device
	stats DeviceStats
}

// New builds an engine over the queues of an underlay (at least one) and a
// host device (nil for none). No device is read until Start.
func New(cfg Config, log *zap.Logger, underlays []Device, host Device, newEndpoint EndpointDeviceFactory, routes HostRoutes) (*Engine, error) {
	if len(underlays) == 0 && !cfg.Native {
		return nil, fmt.Errorf("no underlay device: %w", ErrInvalid)
	}
	if !cfg.NodeIP.Is4() {
		return nil, fmt.Errorf("node ip %s: %w: only IPv4 underlays are supported", cfg.NodeIP, ErrInvalid)
	}
	if !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() || cfg.PodCIDR.Bits() > 30 {
		return nil, fmt.Errorf("pod cidr %s: %w", cfg.PodCIDR, ErrInvalid)
	}
	if cfg.UnderlayMTU < 576 {
		return nil, fmt.Errorf("underlay mtu %d: %w", cfg.UnderlayMTU, ErrInvalid)
	}
	optLen := 0
	switch cfg.Protocol {
	case "", "vxlan":
		cfg.Protocol = "vxlan"
		if len(cfg.GeneveOptions) > 0 {
			return nil, fmt.Errorf("geneve options with protocol vxlan: %w", ErrInvalid)
		}
		if cfg.TunnelPort == 0 {
			cfg.TunnelPort = encap.VXLANPort
		}
	case "geneve":
		var err error
		if optLen, err = encap.GeneveOptionsLen(cfg.GeneveOptions); err != nil {
			return nil, fmt.Errorf("geneve options: %w: %v", ErrInvalid, err)
		}
		if cfg.TunnelPort == 0 {
			cfg.TunnelPort = encap.GenevePort
		}
	default:
		return nil, fmt.Errorf("tunnel protocol %q: %w", cfg.Protocol, ErrInvalid)
	}
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{
		cfg:         cfg,
		log:         log,
		routeMTU:    cfg.UnderlayMTU - encap.VXLANOverheadV4 - optLen,
		tunnelMTU:   cfg.UnderlayMTU - encap.VXLANOverheadV4 - optLen,
		geneve:      cfg.Protocol == "geneve",
		hostIP:      cfg.PodCIDR.Masked().Addr().Next(),
		nodeIP4:     cfg.NodeIP.As4(),
		mac:         encap.TunnelMAC(cfg.NodeIP),
		underlays:   make([]underlayQueue, len(underlays)),
		host:        host,
		newEndpoint: newEndpoint,
		hostRoutes:  routes,
		endpoints:   make(map[string]*endpoint),
		mon:         newMonitor(),
		workers:     make(map[*worker]struct{}),
		stop:        make(chan struct{}),
		nodes:       make(map[string]*peer),
	}
	e.hostIP4 = e.hostIP.As4()
	e.podBroadcast4 = lastAddr(cfg.PodCIDR).As4()
	if cfg.Native {
		// No encapsulation between nodes: pods get the full MTU.
		e.routeMTU = cfg.UnderlayMTU
	}
	for i, d := range underlays {
		e.underlays[i].dev = d
	}
	e.mu.Lock()
	e.publishLocked()
	e.mu.Unlock()
	return e, nil
}

// RouteMTU is the MTU of pod devices: the underlay MTU minus the
// encapsulation overhead.
func (e *Engine) RouteMTU() int { return e.routeMTU }

// HostIP is the address of the host device: the first of the pod CIDR.
func (e *Engine) HostIP() netip.Addr { return e.hostIP }

// TunnelMAC is the inner Ethernet address of this node's tunnel traffic.
func (e *Engine) TunnelMAC() encap.MAC { return e.mac }

// Start starts the underlay and host workers.
func (e *Engine) Start() {
	e.started.Store(true)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.mon.run(e.stop)
	}()
	for i := range e.underlays {
		e.spawn(e.underlays[i].dev, &e.underlays[i].stats, sourceUnderlay, nil)
	}
	if e.host != nil {
		e.spawn(e.host, &e.hostStats, sourceHost, nil)
	}
}

func (e *Engine) spawn(dev Device, st *DeviceStats, kind sourceKind, ep *endpoint) {
	w := newWorker(e, dev, st, kind, ep)
	e.workersMu.Lock()
	e.workers[w] = struct{}{}
	e.workersMu.Unlock()
	e.wg.Add(1)
	switch kind {
	case sourceHost:
		e.hostRunning.Store(true)
	case sourceUnderlay:
		e.underlayRunning.Add(1)
	}
	go func() {
		defer e.wg.Done()
		defer func() {
			e.workersMu.Lock()
			delete(e.workers, w)
			e.workersMu.Unlock()
		}()
		switch kind {
		case sourceHost:
			defer e.hostRunning.Store(false)
		case sourceUnderlay:
			defer e.underlayRunning.Add(-1)
		}
		if ep != nil {
			defer func() {
				if ep.readers.Add(-1) == 0 {
					close(ep.done) // the last queue's worker is gone
				}
			}()
		}
		w.run()
	}()
}

// Close stops every worker and closes every device, endpoints included.
// The host routes the engine added are removed.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	eps := make([]*endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		eps = append(eps, ep)
	}
	peers := make([]*peer, 0, len(e.nodes))
	for _, p := range e.nodes {
		peers = append(peers, p)
	}
	e.endpoints = map[string]*endpoint{}
	e.nodes = map[string]*peer{}
	close(e.stop)
	oldVTEPs := e.vteps
	e.vteps = nil
	e.syncVTEPRoutesLocked(oldVTEPs)
	e.publishLocked()
	e.mu.Unlock()

	var errs []error
	for _, p := range peers {
		if e.hostRoutes != nil {
			if err := e.hostRoutes.DelRoute(p.PodCIDR); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ep := range eps {
		if err := destroyDevice(ep.dev); err != nil {
			errs = append(errs, fmt.Errorf("close endpoint %s: %w", ep.Name, err))
		}
	}
	for i := range e.underlays {
		if err := e.underlays[i].dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close underlay %s: %w", e.underlays[i].dev.Name(), err))
		}
	}
	if e.host != nil {
		if err := destroyDevice(e.host); err != nil {
			errs = append(errs, fmt.Errorf("close host device: %w", err))
		}
	}
	e.wg.Wait()
	return errors.Join(errs...)
}

// publishLocked rebuilds the snapshot from the control tables and swaps it
// in. Callers hold e.mu.
func (e *Engine) publishLocked() {
	b := fib.NewBuilder[route]()
	// Destinations nobody claims go to the kernel: node addresses, the
	// underlay, the world.
	mustInsert(b, netip.MustParsePrefix("0.0.0.0/0"), route{kind: RouteHost})
	if e.cfg.ClusterCIDR.IsValid() {
		mustInsert(b, e.cfg.ClusterCIDR.Masked(), route{kind: RouteUnreachable})
	}
	mustInsert(b, e.cfg.PodCIDR.Masked(), route{kind: RouteUnreachable})
	mustInsert(b, netip.PrefixFrom(e.hostIP, 32), route{kind: RouteHost})
	peers := make(map[netip.Addr]*peer, len(e.nodes))
	for _, p := range e.nodes {
		kind := RouteTunnel
		if e.cfg.Native {
			kind = RouteHost
		}
		mustInsert(b, p.PodCIDR, route{kind: kind, peer: p})
		mustInsert(b, netip.PrefixFrom(p.IP, 32), route{kind: RouteHost})
		peers[p.IP] = p
	}
	vteps, vroutes := e.vtepTables()
	for p, vr := range vroutes {
		mustInsert(b, p, route{kind: RouteVTEP, vtep: vr})
	}
	for _, ep := range e.endpoints {
		mustInsert(b, netip.PrefixFrom(ep.IP, 32), route{kind: RouteLocal, ep: ep})
	}
	e.state.Store(&snapshot{fib: b.Build(), peers: peers, vteps: vteps})
}

func mustInsert(b *fib.Builder[route], p netip.Prefix, r route) {
	if err := b.Insert(p, r); err != nil {
		// Every prefix here was validated by the control method that
		// stored it; a failure is a programming error.
		panic(fmt.Sprintf("fib insert %s: %v", p, err))
	}
}

// AddNode adds a remote node: its pod CIDR becomes reachable through the
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
		cidrs = append(cidrs, namedCIDR{o.PodCIDR, o.Name, false})
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
		cidrs = append(cidrs, namedCIDR{n.PodCIDR, n.Name, true})
	}
	if a, b, ok := overlap(cidrs); ok {
		if !b.added {
			a, b = b, a
		}
		return fmt.Errorf("node %s pod cidr %s overlaps node %s (%s): %w", b.name, b.prefix, a.name, a.prefix, ErrExists)
	}
	for i, n := range ns {
		if err := e.addNodeRoute(n); err != nil {
			for _, done := range ns[:i] {
				e.delNodeRoute(done.PodCIDR)
			}
			return err
		}
	}
	for _, n := range ns {
		e.nodes[n.Name] = &peer{NodeSpec: n, tun: encap.TunnelV4{
			Src:     e.nodeIP4,
			Dst:     n.IP.As4(),
			DstPort: e.cfg.TunnelPort,
			SrcMAC:  e.mac,
			DstMAC:  encap.TunnelMAC(n.IP),
		}}
	}
	e.publishLocked()
	if len(ns) == 1 {
		n := ns[0]
		e.log.Info("node added", zap.String("node", n.Name), zap.Stringer("ip", n.IP), zap.Stringer("pod-cidr", n.PodCIDR))
	} else {
		e.log.Info("nodes added", zap.Int("count", len(ns)))
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
	if !n.IP.Is4() || n.IP == e.cfg.NodeIP {
		return fmt.Errorf("node %s ip %s: %w", n.Name, n.IP, ErrInvalid)
	}
	if !n.PodCIDR.IsValid() || !n.PodCIDR.Addr().Is4() || n.PodCIDR != n.PodCIDR.Masked() {
		return fmt.Errorf("node %s pod cidr %s: %w", n.Name, n.PodCIDR, ErrInvalid)
	}
	if n.PodCIDR.Overlaps(e.cfg.PodCIDR) {
		return fmt.Errorf("node %s pod cidr %s overlaps this node's %s: %w", n.Name, n.PodCIDR, e.cfg.PodCIDR, ErrInvalid)
	}
	return nil
}

func (e *Engine) addNodeRoute(n NodeSpec) error {
	if e.hostRoutes == nil {
		return nil
	}
	var err error
	switch {
	case !e.cfg.Native:
		err = e.hostRoutes.AddRoute(n.PodCIDR, e.routeMTU)
	case e.cfg.AutoDirectNodeRoutes:
		err = e.hostRoutes.AddVia(n.PodCIDR, n.IP)
	}
	if err != nil {
		return fmt.Errorf("node %s: route %s: %w", n.Name, n.PodCIDR, err)
	}
	return nil
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
	e.delNodeRoute(p.PodCIDR)
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
		e.delNodeRoute(p.PodCIDR)
	}
	e.log.Info("nodes removed", zap.Int("count", len(gone)))
	return nil
}

// delNodeRoute removes the host route addNodeRoute made for a pod CIDR.
func (e *Engine) delNodeRoute(p netip.Prefix) {
	if e.hostRoutes == nil {
		return
	}
	if err := e.hostRoutes.DelRoute(p); err != nil {
		e.log.Warn("remove host route", zap.Stringer("prefix", p), zap.Error(err))
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

// AddEndpoint creates a pod endpoint: its device through the factory, its
// worker, and its /32 in the FIB.
func (e *Engine) AddEndpoint(s EndpointSpec) error {
	if s.Name == "" {
		return fmt.Errorf("endpoint name empty: %w", ErrInvalid)
	}
	if !s.IP.Is4() || !e.cfg.PodCIDR.Contains(s.IP) || s.IP == e.hostIP || s.IP == e.cfg.PodCIDR.Masked().Addr() || s.IP == lastAddr(e.cfg.PodCIDR) {
		return fmt.Errorf("endpoint %s ip %s: %w: must be a usable address of pod cidr %s other than the host's %s", s.Name, s.IP, ErrInvalid, e.cfg.PodCIDR, e.hostIP)
	}
	if s.Identity == identity.Unknown {
		s.Identity = identity.DefaultWorkload
	}
	if s.Identity < identity.MinWorkload || s.Identity > identity.Max {
		return fmt.Errorf("endpoint %s identity %d: %w: workload identities are %d..%d", s.Name, s.Identity, ErrInvalid, identity.MinWorkload, identity.Max)
	}
	if s.Ifname == "" {
		s.Ifname = "eth0"
	}
	for _, id := range s.AllowFrom {
		if id == identity.Unknown || id > identity.Max {
			return fmt.Errorf("endpoint %s allow-from %d: %w", s.Name, id, ErrInvalid)
		}
	}
	vni, err := identity.ToVNI(s.Identity)
	if err != nil {
		return fmt.Errorf("endpoint %s identity %d: %w", s.Name, s.Identity, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return ErrStopped
	}
	if _, ok := e.endpoints[s.Name]; ok {
		return fmt.Errorf("endpoint %s: %w", s.Name, ErrExists)
	}
	for _, o := range e.endpoints {
		if o.IP == s.IP {
			return fmt.Errorf("endpoint %s ip %s used by endpoint %s: %w", s.Name, s.IP, o.Name, ErrExists)
		}
	}
	dev, err := e.newEndpoint(s, e.routeMTU)
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", s.Name, err)
	}
	ep := &endpoint{EndpointSpec: s, ip4: s.IP.As4(), vni: vni, dev: dev, done: make(chan struct{})}
	ep.policy.Store(newPolicy(s.AllowFrom))
	e.endpoints[s.Name] = ep
	e.publishLocked()
	// A multi-queue device is read by one worker per queue; every one
	// of them writes through dev.
	readers := []Device{dev}
	if mq, ok := dev.(MultiQueue); ok {
		readers = mq.Queues()
	}
	ep.readers.Store(int32(len(readers)))
	for _, r := range readers {
		e.spawn(r, &ep.stats, sourcePod, ep)
	}
	e.log.Info("endpoint added", zap.String("endpoint", s.Name), zap.Stringer("ip", s.IP),
		zap.Uint32("identity", uint32(s.Identity)), zap.String("netns", s.Netns), zap.String("device", dev.Name()))
	return nil
}

// DelEndpoint removes an endpoint and its device.
func (e *Engine) DelEndpoint(name string) error {
	e.mu.Lock()
	ep, ok := e.endpoints[name]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("endpoint %s: %w", name, ErrNotFound)
	}
	delete(e.endpoints, name)
	e.publishLocked()
	e.mu.Unlock()
	err := destroyDevice(ep.dev)
	<-ep.done
	e.log.Info("endpoint removed", zap.String("endpoint", name))
	if err != nil {
		return fmt.Errorf("close endpoint %s: %w", name, err)
	}
	return nil
}

// Endpoint is an endpoint as the API shows it.
type Endpoint struct {
	EndpointSpec
	Device string `json:"device"`
	MTU    int    `json:"mtu"`
}

// Endpoints lists the endpoints sorted by name.
func (e *Engine) Endpoints() []Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		out = append(out, Endpoint{EndpointSpec: ep.EndpointSpec, Device: ep.Ifname, MTU: e.routeMTU})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FIBEntry is one FIB prefix as the API shows it.
type FIBEntry struct {
	Prefix netip.Prefix `json:"prefix"`
	Kind   string       `json:"kind"`
	Target string       `json:"target,omitempty"`
}

// FIB lists the current FIB.
func (e *Engine) FIB() []FIBEntry {
	var out []FIBEntry
	for p, r := range e.state.Load().fib.All() {
		fe := FIBEntry{Prefix: p, Kind: r.kind.String()}
		switch {
		case r.ep != nil:
			fe.Target = "endpoint " + r.ep.Name
		case r.peer != nil:
			fe.Target = "node " + r.peer.Name + " " + r.peer.IP.String()
		case r.vtep != nil:
			fe.Target = "vtep " + r.vtep.dev.ip.String() + " " + r.vtep.tun.DstMAC.String()
		case r.kind == RouteHost:
			fe.Target = "vxdp_host"
		}
		out = append(out, fe)
	}
	return out
}

// Stats is a point-in-time copy of the engine's counters.
type Stats struct {
	Devices     []DeviceCounters  `json:"devices"`
	Drops       map[string]uint64 `json:"drops"`
	ICMPErrors  uint64            `json:"icmp_errors_sent"`
	ARPReplies  uint64            `json:"arp_replies_sent"`
	TotalDrops  uint64            `json:"total_drops"`
	RouteMTU    int               `json:"route_mtu"`
	UnderlayMTU int               `json:"underlay_mtu"`
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := Stats{Drops: make(map[string]uint64, numDropReasons), RouteMTU: e.routeMTU, UnderlayMTU: e.cfg.UnderlayMTU}
	for i := range e.underlays {
		s.Devices = append(s.Devices, e.underlays[i].stats.snapshot(e.underlays[i].dev, e.underlays[i].dev.Name(), "underlay"))
	}
	if e.host != nil {
		s.Devices = append(s.Devices, e.hostStats.snapshot(e.host, e.host.Name(), "host"))
	}
	e.mu.Lock()
	eps := make([]*endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		eps = append(eps, ep)
	}
	e.mu.Unlock()
	sort.Slice(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })
	for _, ep := range eps {
		s.Devices = append(s.Devices, ep.stats.snapshot(ep.dev, ep.Name, "endpoint"))
	}
	for i := range e.drops {
		v := e.drops[i].Load()
		s.Drops[DropReason(i).String()] = v
		s.TotalDrops += v
	}
	s.ICMPErrors = e.icmps.Load()
	s.ARPReplies = e.arpReplies.Load()
	return s
}

// underlayFor picks the underlay queue a flow leaves through.
func (e *Engine) underlayFor(hash uint32) *underlayQueue {
	if len(e.underlays) == 1 {
		return &e.underlays[0]
	}
	return &e.underlays[hash%uint32(len(e.underlays))]
}

// Drops returns the drop counter of one reason.
func (e *Engine) Drops(r DropReason) uint64 { return e.drops[r].Load() }

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Stuck lists the devices whose worker has spent longer than limit on one
// batch: a healthy worker finishes a batch in microseconds and otherwise
// waits in Read, which does not count.
func (e *Engine) Stuck(limit time.Duration) []string {
	now := time.Now().UnixNano()
	var out []string
	e.workersMu.Lock()
	defer e.workersMu.Unlock()
	for w := range e.workers {
		if b := w.busy.Load(); b != 0 && now-b > int64(limit) {
			out = append(out, w.dev.Name())
		}
	}
	sort.Strings(out)
	return out
}

// HangWorker makes the worker of the named endpoint block in its next
// batch until the engine closes. It exists to test watchdogs, which must
// notice; nothing else calls it.
func (e *Engine) HangWorker(endpoint string) error {
	e.mu.Lock()
	ep, ok := e.endpoints[endpoint]
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("endpoint %s: %w", endpoint, ErrNotFound)
	}
	e.workersMu.Lock()
	defer e.workersMu.Unlock()
	for w := range e.workers {
		if w.ep == ep {
			w.hang.Store(true)
			return nil
		}
	}
	return fmt.Errorf("endpoint %s worker: %w", endpoint, ErrNotFound)
}

// destroyer is a device that can outlive its descriptor (a persistent
// TUN) and must be told to go away for good.
type destroyer interface{ Destroy() error }

// destroyDevice removes a device for good: Destroy when it has one, Close
// otherwise. Only a crash leaves persistent devices behind, for the next
// agent to adopt.
func destroyDevice(d Device) error {
	if x, ok := d.(destroyer); ok {
		return x.Destroy()
	}
	return d.Close()
}

// Problems lists what makes the engine unhealthy; empty when it is fine.
func (e *Engine) Problems() []string {
	var p []string
	e.mu.Lock()
	stopped := e.stopped
	e.mu.Unlock()
	switch {
	case stopped:
		p = append(p, "engine stopped")
	case !e.started.Load():
		p = append(p, "engine not started")
	default:
		if n := int(e.underlayRunning.Load()); n < len(e.underlays) {
			p = append(p, fmt.Sprintf("%d of %d underlay workers stopped", len(e.underlays)-n, len(e.underlays)))
		}
		if e.host != nil && !e.hostRunning.Load() {
			p = append(p, "host device worker stopped")
		}
	}
	return p
}
