package dataplane

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/vxdp/vxdp/dataplane/packetio"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/identity"
)

type endpoint struct {
	EndpointSpec
	policy atomic.Pointer[policy]
	// has4 and has6 say which addresses the endpoint has; the packet
	// path compares sources with ip4 and ip6.
	has4, has6 bool
	ip4        [4]byte
	ip6        [16]byte
	// ident holds the identity (high half) and its VNI (low half), read
	// per packet; SetIdentity changes both at once.
	ident   atomic.Uint64
	dev     packetio.Device
	stats   DeviceStats
	done    chan struct{} // closed when the last reader of dev stopped
	readers atomic.Int32
	// gone is set when the kernel removed the device under its worker
	// (the pod's namespace was deleted).
	gone atomic.Bool
}

func (ep *endpoint) setIdent(id identity.ID, vni uint32) {
	ep.ident.Store(uint64(id)<<32 | uint64(vni))
}

// workloadVNI checks that id may be an endpoint's identity and returns
// the VNI its packets carry.
func workloadVNI(name string, id identity.ID) (uint32, error) {
	if id < identity.MinWorkload || id > identity.Max {
		return 0, fmt.Errorf("endpoint %s identity %d: %w: workload identities are %d..%d", name, id, ErrInvalid, identity.MinWorkload, identity.Max)
	}
	vni, err := identity.ToVNI(id)
	if err != nil {
		return 0, fmt.Errorf("endpoint %s identity %d: %w", name, id, err)
	}
	return vni, nil
}

// identVNI is the endpoint's identity and VNI of the moment.
func (ep *endpoint) identVNI() (identity.ID, uint32) {
	v := ep.ident.Load()
	return identity.ID(v >> 32), uint32(v)
}

// EndpointSpec describes a pod endpoint. It has an IPv4 address (IP,
// inside the node's PodCIDR), an IPv6 one (IP6, inside PodCIDR6), or both:
// one device carries both families.
type EndpointSpec struct {
	Name     string
	IP       netip.Addr
	IP6      netip.Addr
	Netns    string
	Ifname   string
	Identity identity.ID
	// AllowFrom lists the source identities allowed in; nil allows all.
	AllowFrom []identity.ID
}

// EndpointDeviceFactory creates the device of a new endpoint, already
// placed and configured in its pod (address, MTU, default route).
type EndpointDeviceFactory func(spec EndpointSpec, mtu int) (packetio.Device, error)

// AddEndpoint creates a pod endpoint: its device through the factory, its
// worker, and its /32 and /128 in the FIB.
func (e *Engine) AddEndpoint(s EndpointSpec) error {
	if s.Name == "" {
		return fmt.Errorf("endpoint name empty: %w", ErrInvalid)
	}
	if err := e.checkEndpointAddrs(s); err != nil {
		return err
	}
	if s.Identity == identity.Unknown {
		s.Identity = identity.DefaultWorkload
	}
	vni, err := workloadVNI(s.Name, s.Identity)
	if err != nil {
		return err
	}
	if s.Ifname == "" {
		s.Ifname = "eth0"
	}
	for _, id := range s.AllowFrom {
		if id == identity.Unknown || id > identity.Max {
			return fmt.Errorf("endpoint %s allow-from %d: %w", s.Name, id, ErrInvalid)
		}
	}
	// The name and address are reserved while the factory does its
	// netlink work without the engine lock, so status, stats and other
	// control calls do not wait for a slow namespace. An MTU change waits
	// for the device: it is made with the route MTU of the moment and
	// SetUnderlayMTU, which sets every endpoint's, finds it registered.
	e.mtuMu.RLock()
	defer e.mtuMu.RUnlock()
	e.mu.Lock()
	if err := e.reserveEndpointLocked(s); err != nil {
		e.mu.Unlock()
		return err
	}
	e.pending[s.Name] = s
	e.mu.Unlock()
	dev, err := e.newEndpoint(s, e.RouteMTU())
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, s.Name)
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", s.Name, err)
	}
	if e.stopped {
		// Close ran while the device was made: nobody else will
		// remove it.
		packetio.Destroy(dev)
		return ErrStopped
	}
	ep := &endpoint{EndpointSpec: s, has4: s.IP.IsValid(), has6: s.IP6.IsValid(), dev: dev, done: make(chan struct{})}
	ep.setIdent(s.Identity, vni)
	if ep.has4 {
		ep.ip4 = s.IP.As4()
	}
	if ep.has6 {
		ep.ip6 = s.IP6.As16()
	}
	ep.policy.Store(newPolicy(s.AllowFrom))
	e.endpoints[s.Name] = ep
	e.publishLocked()
	// A multi-queue device is read by one worker per queue; every one
	// of them writes through dev.
	readers := []packetio.Device{dev}
	if mq, ok := dev.(packetio.MultiQueue); ok {
		readers = mq.Queues()
	}
	ep.readers.Store(int32(len(readers)))
	for _, r := range readers {
		e.spawn(newWorker(e, r, nil, &ep.stats, sourcePod, ep))
	}
	fields := []zap.Field{zap.String("endpoint", s.Name)}
	if ep.has4 {
		fields = append(fields, zap.Stringer("ip", s.IP))
	}
	if ep.has6 {
		fields = append(fields, zap.Stringer("ip6", s.IP6))
	}
	e.log.Info("endpoint added", append(fields, zap.Uint32("identity", uint32(s.Identity)),
		zap.String("netns", s.Netns), zap.String("device", dev.Name()))...)
	return nil
}

// checkEndpointAddrs checks that s has an address of at least one family,
// each a usable one of the node's pod CIDR of that family.
func (e *Engine) checkEndpointAddrs(s EndpointSpec) error {
	if !s.IP.IsValid() && !s.IP6.IsValid() {
		return fmt.Errorf("endpoint %s: %w: needs an IPv4 or an IPv6 address", s.Name, ErrInvalid)
	}
	if s.IP.IsValid() {
		if !e.has4 {
			return fmt.Errorf("endpoint %s ip %s: %w: this node has no IPv4 pod cidr", s.Name, s.IP, ErrInvalid)
		}
		if !s.IP.Is4() || !e.cfg.PodCIDR.Contains(s.IP) || s.IP == e.hostIP || s.IP == e.cfg.PodCIDR.Masked().Addr() || s.IP == lastAddr(e.cfg.PodCIDR) {
			return fmt.Errorf("endpoint %s ip %s: %w: must be a usable address of pod cidr %s other than the host's %s", s.Name, s.IP, ErrInvalid, e.cfg.PodCIDR, e.hostIP)
		}
	}
	if s.IP6.IsValid() {
		if !e.has6 {
			return fmt.Errorf("endpoint %s ip6 %s: %w: this node has no IPv6 pod cidr", s.Name, s.IP6, ErrInvalid)
		}
		if !isPlain6(s.IP6) || !e.cfg.PodCIDR6.Contains(s.IP6) || s.IP6 == e.hostIP6 || s.IP6 == e.cfg.PodCIDR6.Masked().Addr() {
			return fmt.Errorf("endpoint %s ip6 %s: %w: must be an address of pod cidr6 %s other than its network address and the host's %s", s.Name, s.IP6, ErrInvalid, e.cfg.PodCIDR6, e.hostIP6)
		}
	}
	return nil
}

// sharedAddr returns an address a and b both have, if any.
func sharedAddr(a, b EndpointSpec) (netip.Addr, bool) {
	if a.IP.IsValid() && a.IP == b.IP {
		return a.IP, true
	}
	if a.IP6.IsValid() && a.IP6 == b.IP6 {
		return a.IP6, true
	}
	return netip.Addr{}, false
}

// reserveEndpointLocked checks that s's name and address are free, among
// the endpoints and those being made. Callers hold e.mu.
func (e *Engine) reserveEndpointLocked(s EndpointSpec) error {
	if e.stopped {
		return ErrStopped
	}
	if _, ok := e.endpoints[s.Name]; ok {
		return fmt.Errorf("endpoint %s: %w", s.Name, ErrExists)
	}
	if _, ok := e.pending[s.Name]; ok {
		return fmt.Errorf("endpoint %s: %w (being added)", s.Name, ErrExists)
	}
	for _, o := range e.endpoints {
		if a, ok := sharedAddr(s, o.EndpointSpec); ok {
			return fmt.Errorf("endpoint %s ip %s used by endpoint %s: %w", s.Name, a, o.Name, ErrExists)
		}
	}
	for name, o := range e.pending {
		if a, ok := sharedAddr(s, o); ok {
			return fmt.Errorf("endpoint %s ip %s used by endpoint %s: %w", s.Name, a, name, ErrExists)
		}
	}
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
	err := packetio.Destroy(ep.dev)
	<-ep.done
	e.log.Info("endpoint removed", zap.String("endpoint", name))
	if err != nil && !ep.gone.Load() {
		// A device the kernel already removed (its pod's namespace
		// went) cannot be destroyed again; that is no failure.
		return fmt.Errorf("close endpoint %s: %w", name, err)
	}
	return nil
}
