package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/dataplane/tun"
)

// HostDevice is the name of the node's host TUN device.
const HostDevice = "vxdp_host"

// tunOptions are how pod and host devices are opened: with checksum and
// TCP segmentation offload, so a pod's TCP hands over 64 KiB per read.
var tunOptions = tun.Options{Offload: true}

// podDevices makes the pods' TUN devices for the engine. A device is made
// here under a temporary name, then moved into the pod's namespace and
// configured there. It is persistent, so a crash of the agent leaves the
// pod its interface; the next agent takes it back (adopt) instead of
// making a new one.
type podDevices struct {
	log    *zap.Logger
	queues int // pod-queues

	mu    sync.Mutex      // protects adopt
	adopt map[string]bool // endpoints whose devices a crashed run left, while the agent starts
}

// create is the engine's dataplane.EndpointDeviceFactory.
func (p *podDevices) create(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
	p.mu.Lock()
	adopt := p.adopt[s.Name]
	delete(p.adopt, s.Name)
	p.mu.Unlock()
	if adopt {
		d, err := attachPod(s.Netns, ifnameOr(s.Ifname), p.queues)
		if err == nil {
			p.log.Info("endpoint device adopted from the previous run", zap.String("endpoint", s.Name))
			// The underlay's MTU may have changed while no agent ran.
			if err := d.SetMTU(mtu); err != nil {
				p.log.Warn("adopted endpoint device keeps its MTU", zap.String("endpoint", s.Name), zap.Int("mtu", mtu), zap.Error(err))
			}
			warnOffloads(p.log, d.Name(), d.Offloads())
			return d, nil
		}
		p.log.Info("endpoint device not adopted; creating it", zap.String("endpoint", s.Name), zap.Error(err))
	}
	o := tunOptions
	o.Queues = p.queues
	d, err := tun.CreateWith(tempName(s.Name), o)
	if err != nil {
		return nil, err
	}
	if err := d.MoveToNetns(s.Netns, s.Ifname, mtu, podAddrs(s)...); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.SetPersist(true); err != nil {
		d.Destroy()
		return nil, err
	}
	warnOffloads(p.log, d.Name(), d.Offloads())
	return d, nil
}

// unclaimed returns the endpoints left to adopt and stops adopting.
func (p *podDevices) unclaimed() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	left := p.adopt
	p.adopt = nil
	return left
}

// warnOffloads logs each kernel offload a device could not turn on: the
// device works without it, only slower.
func warnOffloads(log *zap.Logger, device string, offloads []packetio.Offload) {
	for _, o := range offloads {
		// tun-tso-whole comes on when the engine takes the device;
		// tun-super-write is an optimisation, not a fallback.
		if !o.Active && o.Name != "tun-tso-whole" && o.Name != "tun-super-write" {
			log.Warn("offload off; the device falls back to single packets", zap.String("device", device),
				zap.String("offload", o.Name), zap.String("reason", o.Reason))
		}
	}
}

func ifnameOr(s string) string {
	if s == "" {
		return "eth0"
	}
	return s
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

// podAddrs are the addresses a pod's device gets: its IPv4 address as /32
// and its IPv6 address as /128, whichever it has.
func podAddrs(s dataplane.EndpointSpec) []netip.Prefix {
	var out []netip.Prefix
	if s.IP.IsValid() {
		out = append(out, netip.PrefixFrom(s.IP, 32))
	}
	if s.IP6.IsValid() {
		out = append(out, netip.PrefixFrom(s.IP6, 128))
	}
	return out
}
