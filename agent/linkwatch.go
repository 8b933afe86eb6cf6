package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane"
)

// underlayWatch follows the underlay device through netlink: a device that
// goes down (administratively or for want of carrier) makes the agent
// unhealthy, with the reason in `vxdp status`, until it is back. A new MTU
// is followed when the configuration derives the MTU from the device
// (`mtu: 0`): pods, vxdp_host, the engine and vxdp's routes take the MTU
// that goes with it. An MTU set in the configuration stays; a device MTU
// too small for it is a problem until the device is back to one that
// fits.
type underlayWatch struct {
	problem atomic.Pointer[string] // nil while the device is fine
	// mtuProblem says why a new MTU could not be followed; nil when
	// there is none.
	mtuProblem atomic.Pointer[string]
	// mtuChange says what the last change of MTU did, for status; nil
	// before any.
	mtuChange atomic.Pointer[string]
}

// watchUnderlay runs until ctx ends.
func (a *Agent) watchUnderlay(ctx context.Context) {
	if a.under == nil || a.under.device == "" {
		return
	}
	link, err := netlink.LinkByName(a.under.device)
	if err != nil {
		a.log.Warn("underlay device not watched", zap.String("device", a.under.device), zap.Error(err))
		return
	}
	index := link.Attrs().Index
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ListExisting: true}); err != nil {
		a.log.Warn("underlay device not watched", zap.String("device", a.under.device), zap.Error(err))
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			if int(u.Index) != index {
				continue
			}
			a.underlayChanged(u.Header.Type == unix.RTM_DELLINK, u.Flags, u.Attrs().MTU)
		}
	}
}

// underlayChanged records what a netlink message says of the underlay
// device, following a new MTU and logging each change of state once.
func (a *Agent) underlayChanged(deleted bool, flags uint32, mtu int) {
	if !deleted && mtu > 0 {
		a.followMTU(mtu)
	}
	var why string
	switch {
	case deleted:
		why = fmt.Sprintf("underlay device %s was removed", a.under.device)
	case flags&unix.IFF_UP == 0:
		why = fmt.Sprintf("underlay device %s is down", a.under.device)
	case flags&unix.IFF_LOWER_UP == 0:
		why = fmt.Sprintf("underlay device %s has no carrier", a.under.device)
	case a.cfg.MTU != 0 && mtu > 0 && mtu < a.cfg.MTU:
		why = fmt.Sprintf("underlay device %s has MTU %d, below the configured mtu %d: tunnel packets longer than %d bytes cannot leave; lower mtu or raise the device's MTU",
			a.under.device, mtu, a.cfg.MTU, mtu)
	default:
		if p := a.linkWatch.mtuProblem.Load(); p != nil {
			why = *p
		}
	}
	old := a.linkWatch.problem.Load()
	switch {
	case why == "" && old != nil:
		a.linkWatch.problem.Store(nil)
		a.log.Info("underlay device back", zap.String("device", a.under.device))
	case why != "" && (old == nil || *old != why):
		a.linkWatch.problem.Store(&why)
		a.log.Warn("underlay device: "+why, zap.String("device", a.under.device))
	}
}

// followMTU makes pods, vxdp_host, the engine and vxdp's routes follow a
// new MTU of the underlay device, when the configuration derives the MTU
// from the device. What could not be changed (a pod whose device went
// with its namespace) has been logged; the rest follows all the same.
func (a *Agent) followMTU(mtu int) {
	old := a.eng.UnderlayMTU()
	if a.cfg.MTU != 0 || mtu == old {
		return
	}
	err := a.eng.SetUnderlayMTU(mtu)
	if errors.Is(err, dataplane.ErrInvalid) {
		why := fmt.Sprintf("underlay MTU changed from %d to %d, below the %d vxdp needs; pods and routes keep %d",
			old, mtu, dataplane.MinUnderlayMTU, a.eng.RouteMTU())
		a.linkWatch.mtuProblem.Store(&why)
		return
	}
	a.linkWatch.mtuProblem.Store(nil)
	route := a.eng.RouteMTU()
	if cluster := clusterRoutes(a.cfg, route); a.routes != nil && len(cluster) > 0 {
		if rerr := a.routes.AddRoutes(cluster); rerr != nil {
			a.log.Warn("cluster route keeps its old mtu", zap.Error(rerr))
			err = errors.Join(err, rerr)
		}
	}
	a.log.Info(fmt.Sprintf("underlay MTU changed from %d to %d; pods and routes now use %d", old, mtu, route),
		zap.String("device", a.under.device))
	note := fmt.Sprintf("changed from %d at %s", old, time.Now().Format(time.RFC3339))
	if err != nil {
		note += "; some devices or routes did not follow (see the log)"
	}
	a.linkWatch.mtuChange.Store(&note)
}

// mtuChange says what the last change of the underlay's MTU did, or "".
func (a *Agent) mtuChange() string {
	if p := a.linkWatch.mtuChange.Load(); p != nil {
		return *p
	}
	return ""
}

// underlayProblem is what the watch found wrong, or "".
func (a *Agent) underlayProblem() string {
	if p := a.linkWatch.problem.Load(); p != nil {
		return *p
	}
	return ""
}
