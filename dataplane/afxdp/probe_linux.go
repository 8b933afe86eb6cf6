package afxdp

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Probe answers `underlay: auto` for device, in the calling thread's
// network namespace: ok when the driver offers native XDP and zero-copy
// AF_XDP, with a one-line reason either way ("veth: no zero-copy AF_XDP
// support"). It reads the driver's advertised XDP features (Linux 6.3+)
// and attaches nothing.
func Probe(device string) (ok bool, reason string) {
	link, err := netlink.LinkByName(device)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, fmt.Sprintf("%s: %v", device, ErrNoDevice)
		}
		return false, fmt.Sprintf("%s: %v", device, err)
	}
	who := device
	if drv := driverName(device); drv != "" {
		who = drv
	}
	if len(link.Attrs().HardwareAddr) != 6 {
		return false, fmt.Sprintf("%s: not an Ethernet device", who)
	}
	f, err := xdpFeatures(link.Attrs().Index)
	switch {
	case errors.Is(err, errNoFeatures):
		return false, fmt.Sprintf("%s: cannot tell whether zero-copy AF_XDP works: %v", who, err)
	case err != nil:
		return false, fmt.Sprintf("%s: cannot read XDP features: %v", who, err)
	case f&(xdpActBasic|xdpActRedirect) != xdpActBasic|xdpActRedirect:
		return false, fmt.Sprintf("%s: no native XDP redirect support (so no zero-copy AF_XDP)", who)
	case f&xdpActXSKZeroCopy == 0:
		return false, fmt.Sprintf("%s: no zero-copy AF_XDP support", who)
	}
	return true, fmt.Sprintf("%s: native XDP with zero-copy AF_XDP", who)
}
