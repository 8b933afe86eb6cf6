package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/vxdp/vxdp/dataplane/packetio"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/fib"
)

// Config is what the engine needs to know about its node.
type Config struct {
	NodeIP      netip.Addr   // underlay address, source of every outer header
	PodCIDR     netip.Prefix // this node's pods; its first address is the host device's
	ClusterCIDR netip.Prefix // optional: the whole pod space; unknown parts of it are unreachable
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
	mtuMu   sync.RWMutex
	hostIP  netip.Addr
	hostIP4 [4]byte
	// podBroadcast4 is the pod CIDR's broadcast address: nothing sent
	// there is answered with an ICMP error (RFC 1122 3.2.2).
	podBroadcast4 [4]byte
	nodeIP4       [4]byte
	mac           encap.MAC

	// underlays are the queues of the underlay: one worker reads each,
	// and encapsulated packets leave through the one their flow hashes to.
	underlays   []underlayQueue
	host        packetio.Device
	hostStats   DeviceStats
	newEndpoint EndpointDeviceFactory
	hostRoutes  HostRoutes

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

	// hostRunning and underlayRunning count live workers of the host and
	// underlay devices; one that stops while the engine runs makes it
	// unhealthy.
	hostRunning     atomic.Bool
	underlayRunning atomic.Int32
	started         atomic.Bool

	mu        sync.Mutex // protects endpoints, pending, nodes, vteps, tunnelMTU, stopped and snapshot rebuilds
	endpoints map[string]*endpoint
	pending   map[string]netip.Addr // endpoints whose device is being made, by name
	nodes     map[string]*peer
	vteps     []VTEPSpec
	tunnelMTU int
	stopped   bool

	workersMu sync.Mutex // protects workers
	workers   map[*worker]struct{}

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
		geneve:      cfg.Protocol == "geneve",
		optLen:      optLen,
		hostIP:      cfg.PodCIDR.Masked().Addr().Next(),
		nodeIP4:     cfg.NodeIP.As4(),
		mac:         encap.TunnelMAC(cfg.NodeIP),
		underlays:   make([]underlayQueue, len(underlays)),
		host:        host,
		newEndpoint: newEndpoint,
		hostRoutes:  routes,
		endpoints:   make(map[string]*endpoint),
		pending:     make(map[string]netip.Addr),
		mon:         newMonitor(),
		workers:     make(map[*worker]struct{}),
		stop:        make(chan struct{}),
		nodes:       make(map[string]*peer),
	}
	e.hostIP4 = e.hostIP.As4()
	e.podBroadcast4 = lastAddr(cfg.PodCIDR).As4()
	e.setMTUs(cfg.UnderlayMTU)
	for i, d := range underlays {
		e.underlays[i].dev = d
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

// HostIP is the address of the host device: the first of the pod CIDR.
func (e *Engine) HostIP() netip.Addr { return e.hostIP }

// TunnelMAC is the inner Ethernet address of this node's tunnel traffic.
func (e *Engine) TunnelMAC() encap.MAC { return e.mac }

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
