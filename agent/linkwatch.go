package agent

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// underlayWatch follows the underlay device through netlink: a device that
// goes down (administratively or for want of carrier) or whose MTU changes
// under the agent makes it unhealthy, with the reason in `vxdp status`,
// until the device is back as the agent set out with it.
type underlayWatch struct {
	problem atomic.Pointer[string] // nil while the device is fine
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
// device, logging each change of state once.
func (a *Agent) underlayChanged(deleted bool, flags uint32, mtu int) {
	var why string
	switch {
	case deleted:
		why = fmt.Sprintf("underlay device %s was removed", a.under.device)
	case flags&unix.IFF_UP == 0:
		why = fmt.Sprintf("underlay device %s is down", a.under.device)
	case flags&unix.IFF_LOWER_UP == 0:
		why = fmt.Sprintf("underlay device %s has no carrier", a.under.device)
	case a.cfg.MTU == 0 && mtu != a.under.mtu:
		why = fmt.Sprintf("underlay MTU changed from %d to %d; pods still use %d: restart the agent to apply it",
			a.under.mtu, mtu, a.eng.RouteMTU())
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

// underlayProblem is what the watch found wrong, or "".
func (a *Agent) underlayProblem() string {
	if p := a.linkWatch.problem.Load(); p != nil {
		return *p
	}
	return ""
}
