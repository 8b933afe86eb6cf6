package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// Start starts the underlay and host workers.
func (e *Engine) Start() {
	e.started.Store(true)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.mon.run(e.stop)
	}()
	for i := range e.underlays {
		e.spawn(newWorker(e, nil, e.underlays[i].dev, &e.underlays[i].stats, sourceUnderlay, nil))
	}
	if e.host != nil {
		e.spawn(newWorker(e, e.host, nil, &e.hostStats, sourceHost, nil))
	}
	if e.tunnelGSO != nil {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.proveTunnelGSO()
		}()
	}
}

// Probing the tunnel-gso way out: the probe's timeout, the longest wait
// between tries while probes fail, and how often it is probed again while
// in use (a variable for the tests).
const (
	tunnelGSOProbeTimeout = time.Second
	tunnelGSOProbeMaxWait = 30 * time.Second
)

var tunnelGSORecheck = 30 * time.Second

// proveTunnelGSO probes the tunnel-gso way out until a probe reaches a
// node, then lets it carry packets, and probes it again every
// tunnelGSORecheck while it does. Until a probe passes, and from the
// first that fails, super-packets are cut up as without it: a firewall
// that drops what the node forwards from the device (a FORWARD policy of
// DROP, as Docker sets, even if it comes after the agent) must not turn
// bulk TCP into a black hole for longer than a recheck.
//
// A stop cancels the probe under way: the engine does not wait for its
// reply, and a probe cut short that way is not a failure to report.
func (e *Engine) proveTunnelGSO() {
	stopped, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-stopped.Done():
		}
	}()
	fails := 0
	for {
		var dst netip.Addr
		for a := range e.state.Load().peers {
			if a.Is4() {
				dst = a
				break
			}
		}
		wait := tunnelGSORecheck
		switch {
		case !dst.IsValid():
			// Nothing to send to either: in use or not, it stays so.
			if !e.tunnelGSOReady.Load() {
				e.setTunnelGSOWait("waiting for a node to probe the way out with")
				wait = tunnelGSOProbeTimeout
			}
		default:
			ctx, done := context.WithTimeout(stopped, tunnelGSOProbeTimeout)
			err := e.tunnelGSO.Probe(ctx, e.cfg.NodeIP, dst)
			done()
			if stopped.Err() != nil {
				return
			}
			if err == nil {
				e.tunnelGSOWait.Store(nil)
				if !e.tunnelGSOReady.Swap(true) {
					e.log.Info("tunnel-gso: a probe reached a node; super-packets leave whole", zap.Stringer("node", dst))
				}
				fails = 0
				break
			}
			e.setTunnelGSOWait(err.Error())
			switch {
			case e.tunnelGSOReady.Swap(false):
				e.log.Warn("tunnel-gso: a probe failed; super-packets are cut up again until one passes", zap.Stringer("node", dst), zap.Error(err))
			case fails == 0:
				e.log.Warn("tunnel-gso: probe failed; super-packets are cut up until one passes", zap.Stringer("node", dst), zap.Error(err))
			}
			wait = min(tunnelGSOProbeTimeout<<min(fails, 5), tunnelGSOProbeMaxWait)
			fails++
		}
		select {
		case <-e.stop:
			return
		case <-time.After(wait):
		}
	}
}

func (e *Engine) setTunnelGSOWait(why string) { e.tunnelGSOWait.Store(&why) }

func (e *Engine) spawn(w *worker) {
	kind, ep := w.kind, w.ep
	e.workersMu.Lock()
	e.workers[w] = struct{}{}
	w.setBusyPoll(e.busyPoll)
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
	e.delVTEPRoutesLocked(oldVTEPs, nil)
	e.publishLocked()
	e.mu.Unlock()

	var errs []error
	for _, p := range peers {
		if e.hostRoutes == nil {
			break
		}
		for _, c := range p.podCIDRs() {
			if err := e.hostRoutes.DelRoute(c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ep := range eps {
		if err := packetio.Destroy(ep.dev); err != nil {
			errs = append(errs, fmt.Errorf("close endpoint %s: %w", ep.Name, err))
		}
	}
	for i := range e.underlays {
		if err := e.underlays[i].dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close underlay %s: %w", e.underlays[i].dev.Name(), err))
		}
	}
	if e.host != nil {
		if err := packetio.Destroy(e.host); err != nil {
			errs = append(errs, fmt.Errorf("close host device: %w", err))
		}
	}
	e.wg.Wait()
	if g := e.cfg.TunnelGSO; g != nil {
		if err := g.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close tunnel-gso device: %w", err))
		}
	}
	return errors.Join(errs...)
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
			out = append(out, w.name)
		}
	}
	sort.Strings(out)
	return out
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

// SetBusyPoll changes how long workers busy-poll an empty device or
// underlay queue before they park (Config.BusyPoll), for the running
// workers and those started later.
func (e *Engine) SetBusyPoll(budget time.Duration) {
	e.workersMu.Lock()
	defer e.workersMu.Unlock()
	e.busyPoll = max(budget, 0)
	for w := range e.workers {
		w.setBusyPoll(e.busyPoll)
	}
}

// BusyPoll is the busy-poll budget the workers have.
func (e *Engine) BusyPoll() time.Duration {
	e.workersMu.Lock()
	defer e.workersMu.Unlock()
	return e.busyPoll
}

// setBusyPoll gives the worker's device or underlay queue the budget, when
// its driver busy-polls.
func (w *worker) setBusyPoll(budget time.Duration) {
	var r any = w.dev
	if w.under != nil {
		r = w.under
	}
	if b, ok := r.(packetio.BusyPoller); ok {
		b.SetBusyPoll(budget)
	}
}
