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
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/tun"
	"github.com/vxdp/vxdp/k8s"
	"github.com/vxdp/vxdp/kvstore"
)

// Version is the agent's version, set at build time.
var Version = "dev"

// Agent is one running node dataplane.
type Agent struct {
	cfg     *config.Config
	local   config.Local // what nodes, endpoints and VTEPs are checked against
	log     *zap.Logger
	level   *zap.AtomicLevel
	started time.Time
	// podSource reads pods' annotations (the Kubernetes API server); nil
	// when the cluster is not Kubernetes.
	podSource PodSource

	under         *underlay
	forwardingWas forwardingWas // the forwarding switches before native mode turned them on
	lock          *agentLock    // held while the agent runs
	linkWatch     underlayWatch
	eng           *dataplane.Engine
	routes        *hostRoutes
	kv            *kvstore.Store // cluster membership, when kvstore is set
	kube          *k8s.Cluster   // cluster membership, when Kubernetes is on

	ln      net.Listener
	srv     *http.Server
	metrics *http.Server

	nodes       *nodeBook
	ipam        *ipam       // the addresses of containers attached through CNI
	attachLocks attachLocks // one CNI verb at a time per attachment
	stateMu     sync.Mutex  // protects configEndpoints, vtepsFromAPI and the state file
	// stateProblem says why the last state save failed; nil after a
	// save that succeeded.
	stateProblem    atomic.Pointer[string]
	configEndpoints map[string]bool // endpoints that came from the configuration
	vtepsFromAPI    bool            // the VTEP table was last set through the API
	memTrim         *memTrimmer     // returns free heap after bursts of changes
}

// New brings the node up, in phases: the checks that change nothing, the
// API socket and metrics address, the state directory, etcd, IP
// forwarding, the underlay, host device and engine, the cluster route,
// the configuration's nodes, VTEPs and endpoints, and the state file. When
// a phase fails, the phases done are undone in reverse order and the error
// names the cause: a failed start leaves nothing behind.
func New(cfg *config.Config, log *zap.Logger) (*Agent, error) {
	if log == nil {
		log = zap.NewNop()
	}
	warnIgnored(log, cfg)
	tun.SetProcFS(resolveProcFS(cfg, log))
	applyNice(log, 0, cfg.Nice)
	var undo undoStack
	a, err := start(cfg, log, &undo)
	if err != nil {
		undo.run()
		return nil, err
	}
	log.Info("agent ready", zap.String("node", cfg.NodeName), zap.Stringer("node-ip", cfg.NodeIP),
		zap.Stringer("pod-cidr", cfg.PodCIDR), zap.Int("route-mtu", a.eng.RouteMTU()), zap.String("socket", cfg.Socket))
	return a, nil
}

// warnIgnored says once which Cilium keys of the configuration vxdp does
// not use: their settings have no effect here.
func warnIgnored(log *zap.Logger, cfg *config.Config) {
	if keys := cfg.Ignored(); len(keys) > 0 {
		log.Warn(config.IgnoredMessage(keys))
	}
}

// start runs the phases of New, pushing the undo function of each one
// done onto undo.
func start(cfg *config.Config, log *zap.Logger, undo *undoStack) (*Agent, error) {
	link, err := underlayLink(cfg.NodeIP, cfg.Device)
	if err != nil {
		return nil, err
	}
	ln, undoAPI, err := listenAPI(cfg.Socket)
	if err != nil {
		return nil, err
	}
	undo.push(undoAPI)
	mln, err := listenMetrics(cfg.MetricsAddr)
	if err != nil {
		return nil, err
	}
	if mln != nil {
		undo.push(func() { mln.Close() })
	}
	undoDir, err := prepareStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	undo.push(undoDir)
	// One agent per state: a second one, or --cleanup, must not take the
	// devices and routes of a live one.
	lock, err := takeLock(lockPath(cfg))
	if err != nil {
		return nil, err
	}
	undo.push(lock.release)
	// The cluster's etcd comes before the devices: with pod-cidr: auto it
	// decides the pod CIDR everything below is built on.
	kv, err := openKVStore(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	if kv != nil {
		undo.push(func() { kv.Close() })
	}
	// The API server likewise, for ipam: kubernetes. Nothing runs until
	// Run starts the informers.
	kube, err := openKube(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	fwdWas, undoFwd, err := forwarding(cfg, log)
	if err != nil {
		return nil, err
	}
	undo.push(undoFwd)

	// What a previous agent left: after a crash its devices are still
	// there (they are persistent) and are taken over, not recreated, so
	// pods never lose their interface.
	st, err := loadState(stateFile(cfg.StateDir, cfg.NodeIP))
	if err != nil {
		log.Warn("state unreadable; starting afresh", zap.Error(err))
		st = &state{}
	}
	pods := &podDevices{log: log, queues: cfg.PodQueues, adopt: map[string]bool{}}
	for _, ep := range st.Endpoints {
		pods.adopt[ep.Name] = true
	}
	eng, under, routes, undoEng, err := startEngine(cfg, log, link, len(st.Endpoints) > 0, pods)
	if err != nil {
		return nil, err
	}
	undo.push(undoEng)
	// In native mode the network routes the pod space; a route to
	// vxdp_host for all of it would shadow the kernel's own.
	if cluster := clusterRoutes(cfg, eng.RouteMTU()); len(cluster) > 0 {
		if err := routes.AddRoutes(cluster); err != nil {
			return nil, fmt.Errorf("cluster route: %w", err)
		}
		undo.push(func() {
			for _, r := range cluster {
				routes.DelRoute(r.Prefix)
			}
		})
	}

	// From here a has its engine; should a phase below fail, a is dropped,
	// never closed: the undo functions own what it holds.
	a := &Agent{cfg: cfg, log: log, started: time.Now(), under: under, forwardingWas: fwdWas, eng: eng,
		routes: routes, kv: kv, kube: kube, ln: ln, lock: lock, nodes: newNodeBook(), configEndpoints: map[string]bool{},
		local: cfg.Local(), memTrim: newMemTrimmer()}
	if kube != nil {
		a.podSource = kubePods{kube.Pods()}
	}
	if err := a.applyConfig(st); err != nil {
		return nil, err
	}
	removeUnclaimed(log, st, pods.unclaimed())
	if err := a.openIPAM(); err != nil {
		return nil, err
	}
	// The first save proves the state directory takes files. A full disk
	// does not stop the start, as it stops no later change: the last good
	// file stays for the next agent, and status says it is not saved.
	if err := a.writeState(); noSpace(err) {
		a.reportSaveFailure(err)
	} else if err != nil {
		return nil, fmt.Errorf("state-dir %s: %w", cfg.StateDir, err)
	}
	undo.push(func() { os.Remove(a.statePath()) })
	a.srv = &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	a.serveMetrics(mln)
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
	go a.runKube(wctx)
	// The underlay watch changes the engine (a new MTU): it ends before
	// Close takes the engine down.
	uctx, stopUnderlayWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		a.watchUnderlay(uctx)
	}()
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
	stopUnderlayWatch()
	<-watched
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
		warnIgnored(a.log, n)
		err = a.Reload(n)
	}
	if err != nil {
		a.log.Error("reload refused; the running configuration stays", zap.Error(err))
	}
	return err
}

// Close removes everything the agent made: endpoints and their devices,
// host routes, the host device, the underlay sockets, the state file and
// the API socket. Calls after the first do nothing.
func (a *Agent) Close() error {
	if a.eng == nil {
		return nil
	}
	a.memTrim.stop()
	var errs []error
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.srv.Shutdown(ctx)
		cancel()
	}
	a.ln.Close()
	os.Remove(a.cfg.Socket)
	a.stopMetrics()
	if a.kv != nil {
		// Revoking the lease takes this node out of every peer's map now
		// rather than after the TTL.
		if err := a.kv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kvstore: %w", err))
		}
	}
	if a.cfg.StateDir != "" {
		// Everything is removed below: nothing for a next agent to adopt.
		os.Remove(a.statePath())
	}
	for _, r := range clusterRoutes(a.cfg, 0) {
		_ = a.routes.DelRoute(r.Prefix)
	}
	if err := a.eng.Close(); err != nil {
		errs = append(errs, err)
	}
	// The engine closed the queues; this detaches the program and frees
	// the sockets and UMEM.
	if err := a.under.closeXDP(); err != nil {
		errs = append(errs, err)
	}
	a.eng = nil
	a.lock.release()
	a.log.Info("agent stopped")
	return errors.Join(errs...)
}
