package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/afxdp"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/dataplane/tun"
	"github.com/vxdp/vxdp/dataplane/udp"
)

// The phases of New. Each one either succeeds and hands back what it made
// with the function that takes it down, or fails having taken down what
// it made itself. New runs the undo functions of the phases already done
// in reverse order when a later one fails.

// undoStack collects the undo functions of the phases done so far.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

// run undoes everything, last phase first.
func (u *undoStack) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}

// underlayLink finds the device that holds nodeIP (or checks the named
// one does exist). An IPv6 node-ip still in duplicate address detection
// cannot be bound yet: it waits for the kernel to finish (dadWait at most)
// and refuses an address that failed it.
func underlayLink(nodeIP netip.Addr, name string) (netlink.Link, error) {
	var link netlink.Link
	if name != "" {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", name, err)
		}
		link = l
	}
	deadline := time.Now().Add(dadWait)
	for {
		ad, err := findAddr(nodeIP)
		if err != nil {
			return nil, err
		}
		if ad == nil {
			if link != nil {
				return link, nil // a named device may get the address later (the UDP bind says)
			}
			return nil, fmt.Errorf("node-ip %s: no device in this network namespace holds it", nodeIP)
		}
		if ad.Flags&unix.IFA_F_DADFAILED != 0 {
			return nil, fmt.Errorf("node-ip %s: duplicate address detection failed: another host on the link has it", nodeIP)
		}
		if ad.Flags&unix.IFA_F_TENTATIVE == 0 || time.Now().After(deadline) {
			if ad.Flags&unix.IFA_F_TENTATIVE != 0 {
				return nil, fmt.Errorf("node-ip %s: still tentative (duplicate address detection) after %v", nodeIP, dadWait)
			}
			if link != nil {
				return link, nil
			}
			l, err := netlink.LinkByIndex(ad.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("device of %s: %w", nodeIP, err)
			}
			return l, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dadWait bounds the wait for an IPv6 node-ip's duplicate address
// detection (one probe, one second, by default on Linux).
const dadWait = 10 * time.Second

// findAddr returns the address entry holding ip in this namespace, or nil.
func findAddr(ip netip.Addr) (*netlink.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for i, ad := range addrs {
		a, ok := netip.AddrFromSlice(ad.IP)
		if ok && a.Unmap() == ip {
			return &addrs[i], nil
		}
	}
	return nil, nil
}

// listenAPI takes the API socket. It comes before anything touches the
// kernel: a second agent started by mistake stops here, with the first
// one's devices untouched. A socket file left by an agent that died is
// replaced; one that answers belongs to a running agent.
func listenAPI(path string) (net.Listener, func(), error) {
	dir := filepath.Dir(path)
	made, err := mkdirAll(dir, 0o755)
	if err != nil {
		return nil, nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	fail := func(err error) (net.Listener, func(), error) {
		made()
		return nil, nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fail(errors.New("another agent is listening"))
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return fail(errors.New("exists and is not a socket"))
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fail(err)
	}
	// Closing a unix listener removes its file.
	undo := func() { ln.Close(); made() }
	if err := os.Chmod(path, 0o600); err != nil {
		undo()
		return nil, nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	return ln, undo, nil
}

// prepareStateDir makes sure the state directory exists and takes files,
// so that a start does not succeed only to lose its state later.
func prepareStateDir(dir string) (func(), error) {
	if dir == "" {
		return func() {}, nil
	}
	made, err := mkdirAll(dir, 0o750)
	if err != nil {
		return nil, fmt.Errorf("state-dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-")
	if noSpace(err) {
		// Full now, maybe not in a minute: the first save reports it.
		return made, nil
	}
	if err != nil {
		made()
		return nil, fmt.Errorf("state-dir %s: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return made, nil
}

// mkdirAll makes dir and its missing parents, and returns the function
// that removes what it made (as long as it is empty).
func mkdirAll(dir string, perm os.FileMode) (func(), error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, err
	}
	return func() {
		for _, d := range missing {
			os.Remove(d)
		}
	}, nil
}

// forwardingWas is what the forwarding switches were before native
// routing turned them on; "" for a switch the agent left alone.
type forwardingWas struct {
	v4, v6 string
}

// forwarding turns on forwarding for native routing, IPv4's always (as
// before IPv6 existed here) and IPv6's when the node has IPv6 pods, and
// returns the previous values with the function that puts them back.
// IPv6 forwarding also makes the kernel ignore router advertisements on
// interfaces whose accept_ra is 1, as on any IPv6 router: a node that
// takes its underlay address from them sets accept_ra to 2 first.
func forwarding(cfg *config.Config, log *zap.Logger) (forwardingWas, func(), error) {
	var was forwardingWas
	if cfg.RoutingMode != config.RoutingNative {
		return was, func() {}, nil
	}
	old, err := enableForwarding(tun.SysctlPath(ipForward))
	if err != nil {
		return was, nil, err
	}
	was.v4 = old
	log.Info("native routing: IPv4 forwarding enabled", zap.String("previous", old))
	if cfg.PodCIDR6.IsValid() {
		old6, err := enableForwarding(tun.SysctlPath(ip6Forward))
		if err != nil {
			restoreForwarding(tun.SysctlPath(ipForward), was.v4)
			return forwardingWas{}, nil, err
		}
		was.v6 = old6
		log.Info("native routing: IPv6 forwarding enabled", zap.String("previous", old6))
	}
	return was, func() {
		if was.v6 != "" {
			restoreForwarding(tun.SysctlPath(ip6Forward), was.v6)
		}
		restoreForwarding(tun.SysctlPath(ipForward), was.v4)
	}, nil
}

// underlay is the tunnel side of the node: the device that holds node-ip
// and the sockets or AF_XDP queues the engine reads and sends on.
type underlay struct {
	device       string
	mtu          int
	kind, reason string
	queues       []packetio.Underlay
	xdp          *afxdp.Underlay // the AF_XDP underlay, when in use
	udp          *udp.Underlay   // the UDP underlay (or the VTEP socket), when in use
}

// close closes the sockets or queues, then the AF_XDP underlay.
func (u *underlay) close() {
	for _, q := range u.queues {
		q.Close()
	}
	u.queues = nil
	u.closeXDP()
}

// closeXDP detaches the XDP program and frees the AF_XDP sockets and UMEM
// (after the engine closed the queues).
func (u *underlay) closeXDP() error {
	if u.xdp == nil {
		return nil
	}
	err := u.xdp.Close()
	u.xdp = nil
	return err
}

// openUnderlay opens the tunnel side: AF_XDP sockets on the device or UDP
// sockets, as `underlay` says, and the VTEP socket. Native routing
// encapsulates nothing but VTEP traffic: without VTEPs it opens nothing.
func openUnderlay(cfg *config.Config, log *zap.Logger, link netlink.Link) (*underlay, error) {
	u := &underlay{device: link.Attrs().Name, mtu: cfg.MTU}
	if u.mtu == 0 {
		u.mtu = link.Attrs().MTU
	}
	if cfg.RoutingMode == config.RoutingNative && !cfg.EnableVTEP {
		u.kind, u.reason = "none", "native routing without VTEPs needs no tunnel"
		return u, nil
	}
	if err := u.openTunnel(cfg, log); err != nil {
		u.close()
		return nil, err
	}
	return u, nil
}

// openTunnel opens the tunnel port. auto takes AF_XDP only where the
// driver offers native XDP with zero-copy sockets (on a veth, copy mode is
// slower than the UDP socket with its offloads), and says why. VTEPs speak
// VXLAN to port 8472 whatever the cluster runs: a Geneve cluster (or a
// native one on another port) listens there too, on a UDP socket.
func (u *underlay) openTunnel(cfg *config.Config, log *zap.Logger) error {
	var vtepPorts []uint16
	if cfg.EnableVTEP && cfg.TunnelPort != dataplane.VTEPPort {
		vtepPorts = []uint16{dataplane.VTEPPort}
	}
	useXDP := false
	switch cfg.Underlay {
	case config.UnderlayUDP:
		u.kind, u.reason = "udp", "configured"
	case config.UnderlayAFXDP:
		useXDP = true
		u.kind, u.reason = "afxdp", "configured"
	default:
		ok, reason := afxdp.Probe(u.device)
		useXDP = ok
		if ok {
			u.kind, u.reason = "afxdp", "auto: "+reason
		} else {
			u.kind, u.reason = "udp", "auto: "+reason
		}
	}
	if useXDP {
		x, err := afxdp.Open(afxdp.Config{Device: u.device, NodeIP: cfg.NodeIP, Port: cfg.TunnelPort, Logger: log})
		if err != nil {
			return fmt.Errorf("underlay afxdp on %s: %w", u.device, err)
		}
		u.xdp = x
		info := x.Info()
		u.reason += fmt.Sprintf("; %s XDP, %s sockets, %d queue(s), need_wakeup %v", info.XDPMode, info.Bind, info.Queues, info.NeedWakeup)
		for _, q := range x.Queues() {
			u.queues = append(u.queues, q)
		}
		log.Info("underlay", zap.String("kind", "afxdp"), zap.String("reason", u.reason),
			zap.String("device", u.device), zap.String("xdp-mode", info.XDPMode), zap.String("bind", info.Bind),
			zap.Int("queues", info.Queues), zap.Int("mtu", u.mtu))
		if len(vtepPorts) == 0 {
			return nil
		}
	}
	// underlay-sockets > 1: that many sockets share the port, the kernel
	// spreads the flows over them, a worker reads each.
	uc := udp.Config{Addr: cfg.NodeIP, Port: cfg.TunnelPort, Sockets: cfg.UnderlaySockets,
		SourcePorts: cfg.UnderlaySourcePorts, GSO: true, GRO: true}
	if useXDP {
		uc.Port, uc.Sockets = vtepPorts[0], 1
	} else {
		uc.ExtraPorts = vtepPorts
	}
	s, err := udp.Open(uc)
	if err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	u.udp = s
	qs := s.Queues()
	for _, q := range qs {
		u.queues = append(u.queues, q)
	}
	sp := s.SourcePorts()
	log.Info("udp underlay", zap.String("kind", u.kind), zap.String("reason", u.reason),
		zap.String("device", u.device), zap.Int("mtu", u.mtu), zap.String("socket", qs[0].Name()), zap.Int("sockets", len(qs)),
		zap.Int("source-ports", sp.Count), zap.Uint16("source-port-min", sp.Min), zap.Uint16("source-port-max", sp.Max))
	warnOffloads(log, qs[0].Name(), qs[0].Offloads())
	return nil
}

// openHostDevice creates vxdp_host, or adopts the one a crashed agent left
// (only when its state says there was one: a vxdp_host nobody recorded is
// not ours to take). The undo function removes a device it created and
// leaves an adopted one as it was found.
func openHostDevice(log *zap.Logger, addrs []netip.Prefix, mtu int, adopt bool) (*tun.Device, func(), error) {
	d, err := tun.CreateWith(HostDevice, tunOptions)
	if err != nil && adopt {
		var aerr error
		d, aerr = tun.AttachWith("", HostDevice, tunOptions)
		if aerr != nil {
			return nil, nil, fmt.Errorf("host device: %w", errors.Join(err, aerr))
		}
		log.Info("host device adopted from the previous run")
		if err := ensureHostAddr(d, mtu, addrs...); err != nil {
			d.Close()
			return nil, nil, fmt.Errorf("host device: %w", err)
		}
		// Through the device too, which then knows it (tun-super-write).
		if err := d.SetMTU(mtu); err != nil {
			log.Warn("host device MTU", zap.Int("mtu", mtu), zap.Error(err))
		}
		hostSysctls(log)
		return d, func() { d.Close() }, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("host device: %w", err)
	}
	if err := d.ConfigureHere(mtu, addrs...); err != nil {
		d.Destroy()
		return nil, nil, fmt.Errorf("host device: %w", err)
	}
	if err := d.SetPersist(true); err != nil {
		d.Destroy()
		return nil, nil, fmt.Errorf("host device: %w", err)
	}
	hostSysctls(log)
	return d, func() { d.Destroy() }, nil
}

// TunnelGSODevice is the TAP device a pod's TCP super-packets leave
// through, whole, with tunnel-gso auto.
const TunnelGSODevice = "vxdp_gso"

// openTunnelGSO opens the tunnel-gso way out where the configuration and
// the kernel allow, or says why not. The device goes away with its
// descriptor: nothing is left behind when the agent stops or dies.
func openTunnelGSO(cfg *config.Config, log *zap.Logger, u *underlay) (packetio.TunnelGSO, string) {
	var off string
	switch {
	case cfg.TunnelGSO == config.TunnelGSOOff:
		off = "tunnel-gso is off"
	case u.kind != "udp":
		off = "underlay " + u.kind + ": only the udp underlay hands tunnel packets to the kernel"
	case cfg.NodeIP.Is6():
		off = "IPv6 underlay: the kernel forwards IPv6 only with net.ipv6.conf.all.forwarding on, which the agent leaves alone in tunnel mode"
	}
	if off != "" {
		return nil, off
	}
	g, err := tun.OpenTunnelGSO(TunnelGSODevice)
	if err != nil {
		log.Info("tunnel-gso off", zap.Error(err))
		return nil, err.Error()
	}
	log.Info("tunnel-gso", zap.String("device", TunnelGSODevice))
	return g, ""
}

// engineConfig is the engine's part of the configuration.
func engineConfig(cfg *config.Config, underlayMTU int) dataplane.Config {
	return dataplane.Config{
		NodeIP:               cfg.NodeIP,
		PodCIDR:              cfg.PodCIDR,
		PodCIDR6:             cfg.PodCIDR6,
		HostIP:               cfg.HostIP,
		HostIP6:              cfg.HostIP6,
		ClusterCIDR:          cfg.ClusterCIDR,
		ClusterCIDR6:         cfg.ClusterCIDR6,
		TunnelPort:           cfg.TunnelPort,
		UnderlayMTU:          underlayMTU,
		VXLANTolerate:        cfg.VXLANReservedMask,
		DisableSourceCheck:   !cfg.TunnelSourceCheck,
		Native:               cfg.RoutingMode == config.RoutingNative,
		AutoDirectNodeRoutes: cfg.AutoDirectNodeRoutes,
		BusyPoll:             cfg.BusyPoll,
		Protocol:             cfg.TunnelProtocol,
	}
}

// startEngine opens the underlay and the host device and builds the
// engine over them. From then on the engine owns the devices: its Close
// closes them, and the undo function closes the engine and then frees the
// AF_XDP underlay.
func startEngine(cfg *config.Config, log *zap.Logger, link netlink.Link, adoptHost bool, pods *podDevices) (*dataplane.Engine, *underlay, *hostRoutes, func(), error) {
	under, err := openUnderlay(cfg, log, link)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	host, undoHost, err := openHostDevice(log, hostAddrs(cfg), under.mtu, adoptHost)
	if err != nil {
		under.close()
		return nil, nil, nil, nil, err
	}
	routes := &hostRoutes{link: host.Index(), src: cfg.HostAddr(), src6: cfg.HostAddr6(), log: log}
	ec := engineConfig(cfg, under.mtu)
	ec.UnderlayPrefix = underlayPrefix(link, cfg.NodeIP)
	ec.TunnelGSO, ec.TunnelGSOOff = openTunnelGSO(cfg, log, under)
	eng, err := dataplane.New(ec, log, under.queues, host, pods.create, routes)
	if err != nil {
		if ec.TunnelGSO != nil {
			ec.TunnelGSO.Close()
		}
		undoHost()
		under.close()
		return nil, nil, nil, nil, err
	}
	eng.Start()
	return eng, under, routes, func() {
		eng.Close()
		under.closeXDP()
	}, nil
}

// underlayPrefix is the subnet of nodeIP on link, as the kernel has it
// (the connected route the node reaches its peers through); invalid when
// the address is not found there.
func underlayPrefix(link netlink.Link, nodeIP netip.Addr) netip.Prefix {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != nodeIP {
			continue
		}
		ones, _ := a.Mask.Size()
		return netip.PrefixFrom(nodeIP, ones).Masked()
	}
	return netip.Prefix{}
}

// firstHost is the host device's address in p: the first after the
// network address (invalid when p is).
func firstHost(p netip.Prefix) netip.Addr {
	if !p.IsValid() {
		return netip.Addr{}
	}
	return p.Masked().Addr().Next()
}

// hostAddrs are the host device's addresses, one per pod CIDR, with the
// pod CIDR's length: the kernel's connected route to local pods.
func hostAddrs(cfg *config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, h := range []struct {
		addr netip.Addr
		p    netip.Prefix
	}{{cfg.HostAddr(), cfg.PodCIDR}, {cfg.HostAddr6(), cfg.PodCIDR6}} {
		if h.p.IsValid() {
			out = append(out, netip.PrefixFrom(h.addr, h.p.Bits()))
		}
	}
	return out
}
