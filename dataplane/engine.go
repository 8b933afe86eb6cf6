package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/fib"
)

// Config is what the engine needs to know about its node.
//
// A node has an IPv4 pod CIDR, an IPv6 one, or both (dual stack); its
// underlay (NodeIP, the nodes' and VTEPs' addresses) is of one family,
// either, whatever its pods use.
type Config struct {
	// NodeIP is the underlay address, IPv4 or IPv6: the source of every
	// outer header. Nodes and VTEP endpoints have addresses of its family.
	NodeIP netip.Addr
	// PodCIDR is this node's IPv4 pod CIDR (optional when PodCIDR6 is
	// set); its first address is the host device's (HostIP) unless
	// HostIP says otherwise.
	PodCIDR netip.Prefix
	// PodCIDR6 is this node's IPv6 pod CIDR (optional, at most /126); its
	// first address is the host device's IPv6 address (HostIP6) unless
	// HostIP6 says otherwise.
	PodCIDR6 netip.Prefix
	// HostIP and HostIP6 (optional) are the host device's addresses, when
	// not the first of their pod CIDRs; each must lie inside its CIDR.
	HostIP, HostIP6 netip.Addr
	// ClusterCIDR and ClusterCIDR6 (optional) are the whole IPv4 and IPv6
	// pod space: unknown parts of them are unreachable rather than sent
	// to the kernel.
	ClusterCIDR  netip.Prefix
	ClusterCIDR6 netip.Prefix
	// UnderlayPrefix (optional) is the subnet of NodeIP on the underlay
	// device: no pod or VTEP CIDR may overlap it, or the node would route
	// its own underlay into the overlay.
	UnderlayPrefix netip.Prefix
	TunnelPort     uint16
	UnderlayMTU    int
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
	// BusyPoll is how long a worker whose device or underlay queue runs
	// empty keeps trying before it parks (packetio.BusyPoller); 0, the
	// default, parks at once. SetBusyPoll changes it.
	BusyPoll time.Duration
	// TunnelGSO, when set, is where a pod's TCP super-packets bound for
	// another node go whole, tunnelled, for the kernel to segment (IPv4
	// underlay only); the engine closes it. TunnelGSOOff says why there is
	// none, for the stats.
	TunnelGSO    packetio.TunnelGSO
	TunnelGSOOff string
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
	// tunnelMTU is the largest inner packet the encapsulation carries.
	tunnelMTU int
}

// HostRoute is one route the engine needs in the kernel: Prefix through
// the host device with MTU or, when Via is set, to that address (a remote
// node, in native routing).
type HostRoute struct {
	Prefix netip.Prefix
	MTU    int
	Via    netip.Addr
}

// HostRoutes keeps the kernel's routes in step with the remote nodes and
// VTEPs. In tunnel mode the kernel must send a remote pod CIDR to
// vxdp_host for the node to reach remote pods; in native mode with
// auto-direct-node-routes it routes it to the node itself (Via).
//
// AddRoutes installs a list all or none. A route for a prefix the kernel
// already routes for someone else is refused with a *RouteError wrapping
// ErrExists: the engine never takes the host's routes. A route the
// installer made (in this run or an earlier one) is replaced, which is
// also how its MTU changes. DelRoute removes the route the installer made
// for p, and never one it did not make.
type HostRoutes interface {
	AddRoutes(rs []HostRoute) error
	DelRoute(p netip.Prefix) error
}

// RouteError is a HostRoutes' refusal or failure for one prefix.
type RouteError struct {
	Prefix netip.Prefix
	Err    error
}

func (e *RouteError) Error() string { return "route " + e.Prefix.String() + ": " + e.Err.Error() }

func (e *RouteError) Unwrap() error { return e.Err }

// Errors returned by the control methods.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrStopped  = errors.New("engine stopped")
)

// Engine is the node dataplane.
type Engine struct {
	cfg    Config
	log    *zap.Logger
	geneve bool
	// optLen is the length of the Geneve options this node sends: it
	// comes off the route MTU with the headers.
	optLen int
	// underlayMTU, routeMTU (the pods') and linkBuf (the buffer a pod or
	// host worker reads into) follow the underlay's MTU, which may
	// change at run time (SetUnderlayMTU); the largest inner packet the
	// encapsulation carries is tunnelMTU, published in the snapshot.
	underlayMTU atomic.Int64
	routeMTU    atomic.Int64
	linkBuf     atomic.Int64
	// mtuMu is held for reading while an endpoint's device is made with
	// the route MTU, and for writing while SetUnderlayMTU changes it, so
	// that no device keeps an MTU that is no longer the route MTU.
	mtuMu sync.RWMutex
	// has4 and has6 say which pod CIDRs the node has; an address of a
	// family it lacks (hostIP, hostIP6) is the zero value, and no
	// packet's address equals it.
	has4, has6 bool
	hostIP     netip.Addr
	hostIP4    [4]byte
	hostIP6    netip.Addr
	hostIP16   [16]byte
	// podBroadcast4 is the pod CIDR's broadcast address: nothing sent
	// there is answered with an ICMP error (RFC 1122 3.2.2).
	podBroadcast4 [4]byte
	// node6 says the underlay is IPv6: NodeIP is nodeIP16, else nodeIP4.
	node6    bool
	nodeIP4  [4]byte
	nodeIP16 [16]byte
	// overhead is what the encapsulation adds in front of an inner
	// packet: outer IP header of NodeIP's family, UDP, tunnel header and
	// inner Ethernet, Geneve options aside.
	overhead int
	mac      encap.MAC

	// underlays are the queues of the underlay: one worker reads each,
	// and encapsulated packets leave through the one their flow hashes to.
	underlays   []underlayQueue
	host        packetio.Device
	hostStats   DeviceStats
	newEndpoint EndpointDeviceFactory
	hostRoutes  HostRoutes
	// tunnelGSO is Config.TunnelGSO when the engine uses it; only once a
	// probe through it reached a node (tunnelGSOReady) does it carry
	// packets, and tunnelGSOWait says what it waits for until then.
	tunnelGSO      packetio.TunnelGSO
	tunnelGSOReady atomic.Bool
	tunnelGSOWait  atomic.Pointer[string]

	state  atomic.Pointer[snapshot]
	drops  drops
	mon    *monitor
	taps   atomic.Pointer[map[any]*tap] // running captures, nil when none
	tapsMu sync.Mutex                   // serialises changes to taps
	stop   chan struct{}                // closed by Close: stops the monitor
	icmps  atomic.Uint64                // ICMP errors generated
	// icmpsLimited counts ICMP errors not sent for the rate limit.
	icmpsLimited atomic.Uint64
	arpReplies   atomic.Uint64 // ARP replies sent to VTEPs
	// ecnAnomalies counts tunnel packets whose outer and inner ECN
	// fields RFC 6040 calls a currently unused combination.
	ecnAnomalies atomic.Uint64

	// hostRunning and underlayRunning count live workers of the host and
	// underlay devices; one that stops while the engine runs makes it
	// unhealthy.
	hostRunning     atomic.Bool
	underlayRunning atomic.Int32
	started         atomic.Bool

	mu        sync.Mutex // protects endpoints, pending, nodes, vteps, tunnelMTU, stopped and snapshot rebuilds
	endpoints map[string]*endpoint
	pending   map[string]EndpointSpec // endpoints whose device is being made, by name
	nodes     map[string]*peer
	vteps     []VTEPSpec
	tunnelMTU int
	stopped   bool

	workersMu sync.Mutex // protects workers
	workers   map[*worker]struct{}
	busyPoll  time.Duration // given to every worker's device; under workersMu

	wg sync.WaitGroup
}

type underlayQueue struct {
	dev   packetio.Underlay
	stats DeviceStats
}

// New builds an engine over the queues of an underlay (at least one) and a
// host device (nil for none). No device is read until Start.
func New(cfg Config, log *zap.Logger, underlays []packetio.Underlay, host packetio.Device, newEndpoint EndpointDeviceFactory, routes HostRoutes) (*Engine, error) {
	if len(underlays) == 0 && !cfg.Native {
		return nil, fmt.Errorf("no underlay device: %w", ErrInvalid)
	}
	if err := checkAddrs(&cfg); err != nil {
		return nil, err
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
		geneve:      cfg.Protocol == "geneve",
		optLen:      optLen,
		has4:        cfg.PodCIDR.IsValid(),
		has6:        cfg.PodCIDR6.IsValid(),
		node6:       cfg.NodeIP.Is6(),
		overhead:    encap.VXLANOverheadV4,
		mac:         encap.TunnelMAC(cfg.NodeIP),
		underlays:   make([]underlayQueue, len(underlays)),
		host:        host,
		newEndpoint: newEndpoint,
		hostRoutes:  routes,
		endpoints:   make(map[string]*endpoint),
		pending:     make(map[string]EndpointSpec),
		mon:         newMonitor(),
		workers:     make(map[*worker]struct{}),
		busyPoll:    max(cfg.BusyPoll, 0),
		stop:        make(chan struct{}),
		nodes:       make(map[string]*peer),
	}
	if e.has4 {
		e.hostIP = cfg.PodCIDR.Masked().Addr().Next()
		if cfg.HostIP.IsValid() {
			e.hostIP = cfg.HostIP
		}
		e.hostIP4 = e.hostIP.As4()
		e.podBroadcast4 = lastAddr(cfg.PodCIDR).As4()
	}
	if e.has6 {
		e.hostIP6 = cfg.PodCIDR6.Masked().Addr().Next()
		if cfg.HostIP6.IsValid() {
			e.hostIP6 = cfg.HostIP6
		}
		e.hostIP16 = e.hostIP6.As16()
	}
	if e.node6 {
		e.nodeIP16 = cfg.NodeIP.As16()
		e.overhead = encap.VXLANOverheadV6
	} else {
		e.nodeIP4 = cfg.NodeIP.As4()
	}
	if err := e.checkFamilyMTU(cfg.UnderlayMTU); err != nil {
		return nil, err
	}
	e.setMTUs(cfg.UnderlayMTU)
	for i, d := range underlays {
		e.underlays[i].dev = d
	}
	if cfg.TunnelGSO != nil && !e.node6 && len(underlays) > 0 {
		e.tunnelGSO = cfg.TunnelGSO
		e.setTunnelGSOWait("no probe yet")
	}
	e.mu.Lock()
	e.publishLocked()
	e.mu.Unlock()
	return e, nil
}

// RouteMTU is the MTU of pod devices: the underlay MTU minus the
// encapsulation overhead (all of it in native routing).
func (e *Engine) RouteMTU() int { return int(e.routeMTU.Load()) }

// UnderlayMTU is the MTU of the underlay the engine works with: the one
// it was made with, or the last SetUnderlayMTU gave it.
func (e *Engine) UnderlayMTU() int { return int(e.underlayMTU.Load()) }

// HostIP is the IPv4 address of the host device: the first after the
// network address of PodCIDR; invalid when the node has no PodCIDR.
func (e *Engine) HostIP() netip.Addr { return e.hostIP }

// HostIP6 is the IPv6 address of the host device: the first after the
// network address of PodCIDR6; invalid when the node has no PodCIDR6. It
// is the source of the node's ICMPv6 errors.
func (e *Engine) HostIP6() netip.Addr { return e.hostIP6 }

// TunnelMAC is the inner Ethernet address of this node's tunnel traffic,
// encap.TunnelMAC of NodeIP: 02:58 and the four bytes of an IPv4 node
// address; 02:59 and a 32-bit FNV-1a hash of the sixteen bytes of an IPv6
// one. Peers derive it from the node's address alike, so it is never
// learnt; receivers only require a unicast MAC that is not their own.
func (e *Engine) TunnelMAC() encap.MAC { return e.mac }

// checkAddrs validates the node's addresses and pod CIDRs.
func checkAddrs(cfg *Config) error {
	if a := cfg.NodeIP; !a.IsValid() || a.Is4In6() || a.Zone() != "" {
		return fmt.Errorf("node ip %s: %w: want an IPv4 or IPv6 address", a, ErrInvalid)
	}
	if !cfg.PodCIDR.IsValid() && !cfg.PodCIDR6.IsValid() {
		return fmt.Errorf("pod cidr %s: %w: the node needs an IPv4 or an IPv6 pod cidr", cfg.PodCIDR, ErrInvalid)
	}
	if p := cfg.PodCIDR; p.IsValid() && (!p.Addr().Is4() || p.Bits() > 30) {
		return fmt.Errorf("pod cidr %s: %w", p, ErrInvalid)
	}
	if p := cfg.PodCIDR6; p.IsValid() && (!isPlain6(p.Addr()) || p.Bits() > 126) {
		return fmt.Errorf("pod cidr6 %s: %w: want an IPv6 prefix of at most /126", p, ErrInvalid)
	}
	if p := cfg.ClusterCIDR6; p.IsValid() && !isPlain6(p.Addr()) {
		return fmt.Errorf("cluster cidr6 %s: %w: want an IPv6 prefix", p, ErrInvalid)
	}
	return nil
}

// isPlain6 reports whether a is an IPv6 address that is not an IPv4 one in
// disguise (IPv4-mapped) and has no zone.
func isPlain6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() && a.Zone() == "" }

// sameFamily reports whether a is an address of the underlay's family.
func (e *Engine) sameFamily(a netip.Addr) bool {
	if e.node6 {
		return isPlain6(a)
	}
	return a.Is4()
}

// publishLocked rebuilds the snapshot from the control tables and swaps it
// in. Callers hold e.mu.
func (e *Engine) publishLocked() {
	b := fib.NewBuilder[route]()
	// Destinations nobody claims go to the kernel: node addresses, the
	// underlay, the world.
	mustInsert(b, netip.MustParsePrefix("0.0.0.0/0"), route{kind: RouteHost})
	if e.has6 || e.node6 {
		mustInsert(b, netip.MustParsePrefix("::/0"), route{kind: RouteHost})
	}
	for _, c := range []netip.Prefix{e.cfg.ClusterCIDR, e.cfg.ClusterCIDR6} {
		if c.IsValid() {
			mustInsert(b, c.Masked(), route{kind: RouteUnreachable})
		}
	}
	if e.has4 {
		mustInsert(b, e.cfg.PodCIDR.Masked(), route{kind: RouteUnreachable})
		mustInsert(b, netip.PrefixFrom(e.hostIP, 32), route{kind: RouteHost})
	}
	if e.has6 {
		mustInsert(b, e.cfg.PodCIDR6.Masked(), route{kind: RouteUnreachable})
		mustInsert(b, netip.PrefixFrom(e.hostIP6, 128), route{kind: RouteHost})
	}
	peers := make(map[netip.Addr]*peer, len(e.nodes))
	for _, p := range e.nodes {
		kind := RouteTunnel
		if e.cfg.Native {
			kind = RouteHost
		}
		for _, c := range []netip.Prefix{p.PodCIDR, p.PodCIDR6} {
			if c.IsValid() {
				mustInsert(b, c, route{kind: kind, peer: p})
			}
		}
		mustInsert(b, netip.PrefixFrom(p.IP, p.IP.BitLen()), route{kind: RouteHost})
		peers[p.IP] = p
	}
	vteps, vroutes := e.vtepTables()
	for p, vr := range vroutes {
		mustInsert(b, p, route{kind: RouteVTEP, vtep: vr})
	}
	for _, ep := range e.endpoints {
		if ep.has4 {
			mustInsert(b, netip.PrefixFrom(ep.IP, 32), route{kind: RouteLocal, ep: ep})
		}
		if ep.has6 {
			mustInsert(b, netip.PrefixFrom(ep.IP6, 128), route{kind: RouteLocal, ep: ep})
		}
	}
	e.state.Store(&snapshot{fib: b.Build(), peers: peers, vteps: vteps, tunnelMTU: e.tunnelMTU})
}

func mustInsert(b *fib.Builder[route], p netip.Prefix, r route) {
	if err := b.Insert(p, r); err != nil {
		// Every prefix here was validated by the control method that
		// stored it; a failure is a programming error.
		panic(fmt.Sprintf("fib insert %s: %v", p, err))
	}
}

// underlayFor picks the underlay queue a flow leaves through.
func (e *Engine) underlayFor(hash uint32) int {
	if len(e.underlays) == 1 {
		return 0
	}
	return int(hash % uint32(len(e.underlays)))
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
