// Package agent assembles a vxdp node: it turns a validated configuration
// into devices, an engine and the control API, and takes them down again.
// Appliances embed vxdp through this package; `vxdp agent` is a thin
// wrapper around Run.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/afxdp"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/dataplane/tun"
	"github.com/vxdp/vxdp/dataplane/udp"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/kvstore"
)

// Version is the agent's version, set at build time.
var Version = "dev"

// HostDevice is the name of the node's host TUN device.
const HostDevice = "vxdp_host"

// Agent is one running node dataplane.
type Agent struct {
	cfg     *config.Config
	log     *zap.Logger
	started time.Time

	device         string
	forwardingWas  string // ip_forward before native mode turned it on
	underlayMTU    int
	underlayKind   string
	underlayReason string

	eng    *dataplane.Engine
	host   *tun.Device
	routes *hostRoutes

	ln  net.Listener
	srv *http.Server

	xdp             *afxdp.Underlay // the AF_XDP underlay, when in use
	udp             *udp.Underlay   // the UDP underlay (or the VTEP socket), when in use
	kv              *kvstore.Store  // cluster membership, when kvstore is set
	level           *zap.AtomicLevel
	configEndpoints map[string]bool // endpoints that came from the configuration
	adopt           map[string]bool // endpoints whose devices a crashed run left, during New
	stateMu         sync.Mutex      // protects vtepsFromAPI, configEndpoints after New, and the state file
	vtepsFromAPI    bool            // the VTEP table was last set through the API
	metrics         *http.Server
}

// New brings the node up: host device, underlay, engine, the nodes and
// endpoints of the configuration, and the API socket. On error everything
// already made is taken down again.
func New(cfg *config.Config, log *zap.Logger) (a *Agent, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	a = &Agent{cfg: cfg, log: log, started: time.Now(), configEndpoints: map[string]bool{}}
	defer func() {
		if err != nil {
			a.Close()
			a = nil
		}
	}()
	// The cluster's etcd comes first: with pod-cidr: auto it decides the
	// pod CIDR everything below is built on.
	if err := a.openKVStore(context.Background()); err != nil {
		return nil, err
	}
	native := cfg.RoutingMode == config.RoutingNative
	if !cfg.NodeIP.Is4() {
		return nil, fmt.Errorf("node-ip %s: IPv6 underlays are not supported yet", cfg.NodeIP)
	}
	link, err := underlayLink(cfg.NodeIP, cfg.Device)
	if err != nil {
		return nil, err
	}
	a.device = link.Attrs().Name
	a.underlayMTU = cfg.MTU
	if a.underlayMTU == 0 {
		a.underlayMTU = link.Attrs().MTU
	}

	if native {
		old, err := enableForwarding()
		if err != nil {
			return nil, err
		}
		a.forwardingWas = old
		log.Info("native routing: IPv4 forwarding enabled", zap.String("previous", old))
	}
	// Native routing encapsulates nothing but VTEP traffic: without VTEPs
	// there is no tunnel socket at all.
	var unders []packetio.Underlay
	if !native || cfg.EnableVTEP {
		var err error
		unders, err = a.openUnderlay(link.Attrs().Name)
		if err != nil {
			return nil, err
		}
	} else {
		a.underlayKind, a.underlayReason = "none", "native routing without VTEPs needs no tunnel"
	}
	closeUnders := func() {
		for _, u := range unders {
			u.Close()
		}
		if a.xdp != nil {
			a.xdp.Close()
			a.xdp = nil
		}
	}

	// What a previous agent left: after a crash its devices are still
	// there (they are persistent) and are taken over, not recreated, so
	// pods never lose their interface.
	st, err := loadState(a.statePath())
	if err != nil {
		log.Warn("state unreadable; starting afresh", zap.Error(err))
		st = &state{}
	}
	a.adopt = map[string]bool{}
	for _, ep := range st.Endpoints {
		a.adopt[ep.Name] = true
	}

	hostIP := cfg.PodCIDR.Masked().Addr().Next()
	if err := a.hostDevice(netip.PrefixFrom(hostIP, cfg.PodCIDR.Bits()), len(st.Endpoints) > 0); err != nil {
		closeUnders()
		return nil, fmt.Errorf("host device: %w", err)
	}
	hostSysctls(log)
	a.routes = &hostRoutes{link: a.host.Index(), src: hostIP, log: log}

	a.eng, err = dataplane.New(dataplane.Config{
		NodeIP:               cfg.NodeIP,
		PodCIDR:              cfg.PodCIDR,
		ClusterCIDR:          cfg.ClusterCIDR,
		TunnelPort:           cfg.TunnelPort,
		UnderlayMTU:          a.underlayMTU,
		VXLANTolerate:        cfg.VXLANReservedMask,
		DisableSourceCheck:   !cfg.TunnelSourceCheck,
		Native:               native,
		AutoDirectNodeRoutes: cfg.AutoDirectNodeRoutes,
		Protocol:             cfg.TunnelProtocol,
	}, log, unders, a.host, a.newEndpointDevice, a.routes)
	if err != nil {
		closeUnders()
		return nil, err
	}
	a.eng.Start()
	// In native mode the network routes the pod space; a route to
	// vxdp_host for all of it would shadow the kernel's own.
	if cfg.ClusterCIDR.IsValid() && !native {
		if err := a.routes.AddRoute(cfg.ClusterCIDR, a.eng.RouteMTU()); err != nil {
			return nil, fmt.Errorf("cluster route: %w", err)
		}
	}

	nodes := make([]dataplane.NodeSpec, 0, len(cfg.Nodes))
	for _, n := range cfg.Nodes {
		nodes = append(nodes, dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, Source: "config"})
	}
	if err := a.eng.AddNodes(nodes); err != nil {
		return nil, err
	}
	for _, n := range st.Nodes {
		if err := a.eng.AddNode(n); err != nil {
			log.Warn("node from the previous run not restored", zap.String("node", n.Name), zap.Error(err))
		}
	}
	if st.VTEPs != nil {
		if err := a.eng.SetVTEPs(*st.VTEPs); err != nil {
			log.Warn("vteps from the previous run not restored", zap.Error(err))
		} else {
			a.vtepsFromAPI = true
		}
	}
	if cfg.EnableVTEP && !a.vtepsFromAPI {
		vs, err := vtepSpecs(cfg.VTEPs)
		if err != nil {
			return nil, err
		}
		if err := a.eng.SetVTEPs(vs); err != nil {
			return nil, fmt.Errorf("vteps: %w", err)
		}
	}
	for _, ep := range cfg.Endpoints {
		allow, err := parseAllowFrom(ep.AllowFrom)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s allow-from: %w", ep.Name, err)
		}
		spec := endpointSpec(ep)
		spec.AllowFrom = allow
		if err := a.eng.AddEndpoint(spec); err != nil {
			return nil, err
		}
		a.configEndpoints[ep.Name] = true
	}
	for _, ep := range st.Endpoints {
		if !ep.FromAPI || a.configEndpoints[ep.Name] {
			continue
		}
		if err := a.eng.AddEndpoint(ep.EndpointSpec); err != nil {
			log.Warn("endpoint from the previous run not restored", zap.String("endpoint", ep.Name), zap.Error(err))
		}
	}
	// Devices of the previous run that nobody claimed (an endpoint since
	// removed from the file) are removed.
	for name := range a.adopt {
		for _, ep := range st.Endpoints {
			if ep.Name == name {
				if d, err := tun.Attach(ep.Netns, ifnameOr(ep.Ifname)); err == nil {
					d.Destroy()
					log.Info("removed a device the previous run left", zap.String("endpoint", name))
				}
			}
		}
	}
	a.adopt = nil
	a.saveState()
	if err := a.listen(); err != nil {
		return nil, err
	}
	if err := a.startMetrics(); err != nil {
		return nil, err
	}
	log.Info("agent ready", zap.String("node", cfg.NodeName), zap.Stringer("node-ip", cfg.NodeIP),
		zap.Stringer("pod-cidr", cfg.PodCIDR), zap.Int("route-mtu", a.eng.RouteMTU()), zap.String("socket", cfg.Socket))
	return a, nil
}

// Engine returns the dataplane engine, for embedding.
func (a *Agent) Engine() *dataplane.Engine { return a.eng }

// Run serves the API until ctx is done, then takes the node down. Under
// systemd it reports READY=1 (the datapath passes traffic once New has
// returned), pings the watchdog while the packet path is alive, and says
// STOPPING=1 on the way out.
func (a *Agent) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go a.watchdog(wctx)
	go a.runKVStore(wctx)
	a.notify("READY=1\nSTATUS=forwarding")
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	a.notify("STOPPING=1")
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReloadWith re-reads the configuration through load and applies it (see
// Reload), telling systemd RELOADING=1 and READY=1 around it. A load or
// apply error is logged with the key at fault and the running
// configuration stays.
func (a *Agent) ReloadWith(load func() (*config.Config, error)) error {
	a.notify(reloadingState())
	defer a.notify("READY=1")
	n, err := load()
	if err == nil {
		err = a.Reload(n)
	}
	if err != nil {
		a.log.Error("reload refused; the running configuration stays", zap.Error(err))
	}
	return err
}

// Close removes everything the agent made: endpoints and their devices,
// host routes, the host device, the underlay socket and the API socket.
func (a *Agent) Close() error {
	var errs []error
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.srv.Shutdown(ctx)
		cancel()
		a.srv = nil
	}
	a.stopMetrics()
	if a.kv != nil {
		// Revoking the lease takes this node out of every peer's map now
		// rather than after the TTL.
		if err := a.kv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kvstore: %w", err))
		}
		a.kv = nil
	}
	if a.ln != nil {
		a.ln.Close()
		os.Remove(a.cfg.Socket)
		a.ln = nil
	}
	if a.eng != nil && a.cfg.StateDir != "" {
		// Everything is removed below: nothing for a next agent to adopt.
		os.Remove(a.statePath())
	}
	if a.eng != nil {
		if a.cfg.ClusterCIDR.IsValid() && a.routes != nil {
			_ = a.routes.DelRoute(a.cfg.ClusterCIDR)
		}
		if err := a.eng.Close(); err != nil {
			errs = append(errs, err)
		}
		a.eng = nil
		if a.xdp != nil {
			// The engine closed the queues; this detaches the program and
			// frees the sockets and UMEM.
			if err := a.xdp.Close(); err != nil {
				errs = append(errs, err)
			}
			a.xdp = nil
		}
	} else if a.host != nil {
		a.host.Close()
	}
	a.host = nil
	a.log.Info("agent stopped")
	return errors.Join(errs...)
}

func (a *Agent) listen() error {
	path := a.cfg.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("api socket %s: %w", path, err)
	}
	// A socket file left by an agent that died is removed; one that
	// answers belongs to a running agent, and two agents must not share it.
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("api socket %s: another agent is listening", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("api socket %s: %w", path, err)
	}
	a.ln = ln
	a.srv = &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	return nil
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

// openUnderlay opens the tunnel side of the node: AF_XDP sockets on the
// device or UDP sockets, as `underlay` says. auto takes AF_XDP only where
// the driver offers native XDP with zero-copy sockets (on a veth, copy mode
// is slower than the UDP socket with its offloads), and says why. VTEPs
// speak VXLAN to port 8472 whatever the cluster runs: a Geneve cluster (or
// a native one on another port) listens there too, on a UDP socket.
func (a *Agent) openUnderlay(device string) ([]packetio.Underlay, error) {
	cfg := a.cfg
	var vtepPorts []uint16
	if cfg.EnableVTEP && cfg.TunnelPort != dataplane.VTEPPort {
		vtepPorts = []uint16{dataplane.VTEPPort}
	}
	useXDP := false
	switch cfg.Underlay {
	case config.UnderlayUDP:
		a.underlayKind, a.underlayReason = "udp", "configured"
	case config.UnderlayAFXDP:
		useXDP = true
		a.underlayKind, a.underlayReason = "afxdp", "configured"
	default:
		ok, reason := afxdp.Probe(device)
		useXDP = ok
		if ok {
			a.underlayKind, a.underlayReason = "afxdp", "auto: "+reason
		} else {
			a.underlayKind, a.underlayReason = "udp", "auto: "+reason
		}
	}
	var unders []packetio.Underlay
	if useXDP {
		u, err := afxdp.Open(afxdp.Config{
			Device: device, NodeIP: cfg.NodeIP, Port: cfg.TunnelPort, Logger: a.log,
		})
		if err != nil {
			return nil, fmt.Errorf("underlay afxdp on %s: %w", device, err)
		}
		a.xdp = u
		info := u.Info()
		a.underlayReason += fmt.Sprintf("; %s XDP, %s sockets, %d queue(s), need_wakeup %v", info.XDPMode, info.Bind, info.Queues, info.NeedWakeup)
		for _, q := range u.Queues() {
			unders = append(unders, q)
		}
		a.log.Info("underlay", zap.String("kind", "afxdp"), zap.String("reason", a.underlayReason),
			zap.String("device", device), zap.String("xdp-mode", info.XDPMode), zap.String("bind", info.Bind),
			zap.Int("queues", info.Queues), zap.Int("mtu", a.underlayMTU))
	}
	// underlay-sockets > 1: that many sockets share the port, the kernel
	// spreads the flows over them, a worker reads each.
	uc := udp.Config{Addr: cfg.NodeIP, Port: cfg.TunnelPort, Sockets: cfg.UnderlaySockets,
		SourcePorts: cfg.UnderlaySourcePorts, GSO: true, GRO: true}
	switch {
	case useXDP && len(vtepPorts) == 0:
		return unders, nil
	case useXDP:
		uc.Port, uc.Sockets = vtepPorts[0], 1
	default:
		uc.ExtraPorts = vtepPorts
	}
	u, err := udp.Open(uc)
	if err != nil {
		for _, q := range unders {
			q.Close()
		}
		if a.xdp != nil {
			a.xdp.Close()
			a.xdp = nil
		}
		return nil, fmt.Errorf("underlay: %w", err)
	}
	a.udp = u
	qs := u.Queues()
	for _, q := range qs {
		unders = append(unders, q)
	}
	sp := u.SourcePorts()
	a.log.Info("udp underlay", zap.String("kind", a.underlayKind), zap.String("reason", a.underlayReason),
		zap.String("device", device), zap.Int("mtu", a.underlayMTU), zap.String("socket", qs[0].Name()), zap.Int("sockets", len(qs)),
		zap.Int("source-ports", sp.Count), zap.Uint16("source-port-min", sp.Min), zap.Uint16("source-port-max", sp.Max))
	a.warnOffloads(qs[0].Name(), qs[0].Offloads())
	return unders, nil
}

// underlayLink finds the device that holds nodeIP (or checks the named
// one does).
func underlayLink(nodeIP netip.Addr, name string) (netlink.Link, error) {
	if name != "" {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", name, err)
		}
		return l, nil
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if ok && ip.Unmap() == nodeIP {
			l, err := netlink.LinkByIndex(ad.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("device of %s: %w", nodeIP, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("node-ip %s: no device in this network namespace holds it", nodeIP)
}

// newEndpointDevice makes a pod's TUN: created here under a temporary
// name, then moved into the pod's namespace and configured there. It is
// persistent, so a crash of the agent leaves the pod its interface; the
// next agent takes it back (adopt) instead of making a new one.
func (a *Agent) newEndpointDevice(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
	if a.adopt[s.Name] {
		delete(a.adopt, s.Name)
		d, err := attachPod(s.Netns, ifnameOr(s.Ifname), a.cfg.PodQueues)
		if err == nil {
			a.log.Info("endpoint device adopted from the previous run", zap.String("endpoint", s.Name))
			a.warnOffloads(d.Name(), d.Offloads())
			return d, nil
		}
		a.log.Info("endpoint device not adopted; creating it", zap.String("endpoint", s.Name), zap.Error(err))
	}
	o := tunOptions
	o.Queues = a.cfg.PodQueues
	d, err := tun.CreateWith(tempName(s.Name), o)
	if err != nil {
		return nil, err
	}
	if err := d.MoveToNetns(s.Netns, s.Ifname, netip.PrefixFrom(s.IP, 32), mtu); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.SetPersist(true); err != nil {
		d.Destroy()
		return nil, err
	}
	a.warnOffloads(d.Name(), d.Offloads())
	return d, nil
}

// warnOffloads logs each kernel offload a device could not turn on: the
// device works without it, only slower.
func (a *Agent) warnOffloads(device string, offloads []packetio.Offload) {
	for _, o := range offloads {
		if !o.Active {
			a.log.Warn("offload off; the device falls back to single packets", zap.String("device", device),
				zap.String("offload", o.Name), zap.String("reason", o.Reason))
		}
	}
}

func endpointSpec(ep config.Endpoint) dataplane.EndpointSpec {
	return dataplane.EndpointSpec{Name: ep.Name, IP: ep.IP, Netns: ep.Netns, Ifname: ep.Ifname, Identity: identity.ID(ep.Identity)}
}

func ifnameOr(s string) string {
	if s == "" {
		return "eth0"
	}
	return s
}

// hostDevice creates vxdp_host, or adopts the one a crashed agent left
// (only when its state says there was one: a vxdp_host nobody recorded is
// not ours to take).
func (a *Agent) hostDevice(addr netip.Prefix, adopt bool) error {
	d, err := tun.CreateWith(HostDevice, tunOptions)
	if err != nil && adopt {
		var aerr error
		d, aerr = tun.AttachWith("", HostDevice, tunOptions)
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		a.log.Info("host device adopted from the previous run")
		a.host = d
		return ensureHostAddr(d, addr, a.underlayMTU)
	}
	if err != nil {
		return err
	}
	a.host = d
	if err := d.ConfigureHere(addr, a.underlayMTU); err != nil {
		return err
	}
	return d.SetPersist(true)
}

// tempName is a unique, valid interface name for a device on its way into
// a pod.
func tempName(ep string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(ep); i++ {
		h = (h ^ uint32(ep[i])) * 16777619
	}
	h ^= uint32(time.Now().UnixNano())
	return fmt.Sprintf("vxdp%08x", h)
}

// attachPod opens a pod's persistent TUN device with queues queues or,
// when the device was made with the other kind (single or multi-queue:
// pod-queues changed since), with that: the kernel refuses an attach
// whose IFF_MULTI_QUEUE flag differs from the device's.
func attachPod(nsPath, name string, queues int) (*tun.Device, error) {
	o := tunOptions
	o.Queues = queues
	d, err := tun.AttachWith(nsPath, name, o)
	if err == nil || errors.Is(err, tun.ErrNoSuchDevice) {
		return d, err
	}
	if o.Queues > 1 {
		o.Queues = 1
	} else {
		o.Queues = 2
	}
	if d, err2 := tun.AttachWith(nsPath, name, o); err2 == nil {
		return d, nil
	}
	return nil, err
}

// tunOptions are how pod and host devices are opened: with checksum and
// TCP segmentation offload, so a pod's TCP hands over 64 KiB per read.
var tunOptions = tun.Options{Offload: true}
