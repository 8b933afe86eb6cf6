package agent

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane/tun"
)

// Cleanup removes what an agent that did not stop cleanly (killed, or
// stopped for a restart that is not coming) left behind: the persistent pod
// devices its state names, vxdp_host, the routes it installed, its state
// file and its API socket. It is what `vxdp agent --cleanup` runs, as the
// unit's ExecStopPost. While an agent runs with the same state directory
// (or socket) it refuses with ErrAgentRunning and changes nothing.
func Cleanup(cfg *config.Config, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	lock, err := takeLock(lockPath(cfg))
	if err != nil {
		if errors.Is(err, ErrAgentRunning) {
			return fmt.Errorf("cleanup refused: %w; stop it first", err)
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// No state directory: no agent ever ran with it.
	}
	defer lock.release()
	path := stateFile(cfg.StateDir, cfg.NodeIP)
	st, err := loadState(path)
	if err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	eps := st.Endpoints
	for _, ep := range cfg.Endpoints {
		eps = append(eps, stateEndpoint{Endpoint: api.Endpoint{Name: ep.Name, Netns: ep.Netns, Ifname: ep.Ifname}})
	}
	for _, ep := range eps {
		if seen[ep.Name] {
			continue
		}
		seen[ep.Name] = true
		d, err := attachPod(ep.Netns, ifnameOr(ep.Ifname), cfg.PodQueues)
		if errors.Is(err, tun.ErrNoSuchDevice) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.Name, err))
			continue
		}
		if err := d.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.Name, err))
			continue
		}
		log.Info("removed endpoint device", zap.String("endpoint", ep.Name))
	}
	// Routes through vxdp_host go with it; the others vxdp made (native
	// mode's podCIDR via nodeIP) carry its protocol number.
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err == nil {
		for i := range routes {
			if err := netlink.RouteDel(&routes[i]); err != nil {
				errs = append(errs, fmt.Errorf("route %s: %w", routes[i].Dst, err))
			}
		}
	}
	if d, err := tun.AttachWith("", HostDevice, tunOptions); err == nil {
		if err := d.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", HostDevice, err))
		} else {
			log.Info("removed " + HostDevice)
		}
	}
	for _, f := range []string{path, cfg.Socket} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
