package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Everything here talks to the kernel through sockets made on the calling
// thread, so it answers for the calling thread's network namespace; it is
// used only from Open and Probe, before they return.

// ethtool_channels, for ETHTOOL_GCHANNELS.
type ethtoolChannels struct {
	cmd           uint32
	maxRx         uint32
	maxTx         uint32
	maxOther      uint32
	maxCombined   uint32
	rxCount       uint32
	txCount       uint32
	otherCount    uint32
	combinedCount uint32
}

const ethtoolGChannels = 0x3c

// ifreqData is struct ifreq with ifr_data, padded to the kernel's 40 bytes.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// rxQueues returns the number of RX queues in use on dev: the RX plus the
// combined channels as ethtool reports them. ok is false when the driver
// does not report channels.
func rxQueues(dev string) (n int, ok bool, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, false, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{cmd: ethtoolGChannels}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], dev)
	ifr.data = unsafe.Pointer(&ch)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ch)
	switch {
	case e == unix.EOPNOTSUPP:
		return 0, false, nil
	case e == unix.ENODEV:
		return 0, false, fmt.Errorf("%s: %w", dev, ErrNoDevice)
	case e != 0:
		return 0, false, fmt.Errorf("%s: ethtool channels: %w", dev, e)
	}
	n = int(ch.rxCount + ch.combinedCount)
	if n == 0 {
		return 0, false, nil
	}
	return n, true, nil
}

// driverName is the kernel driver of dev ("veth", "mlx5_core"), or "" if
// the device does not say.
func driverName(dev string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, dev)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.Driver[:])
}

// netdev generic netlink family (Linux 6.3+), include/uapi/linux/netdev.h.
const (
	netdevCmdDevGet       = 1
	netdevADevIfindex     = 1
	netdevADevXDPFeatures = 3

	xdpActBasic       = 1 << 0
	xdpActRedirect    = 1 << 1
	xdpActXSKZeroCopy = 1 << 3
)

// genlHeader is struct genlmsghdr: command, version, two reserved bytes.
type genlHeader [4]byte

func (h genlHeader) Len() int          { return len(h) }
func (h genlHeader) Serialize() []byte { return h[:] }

// errNoFeatures means the kernel cannot report XDP features (no netdev
// generic netlink family before Linux 6.3).
var errNoFeatures = errors.New("kernel does not report XDP features (Linux < 6.3)")

// xdpFeatures returns the device's NETDEV_XDP_ACT_* bits.
func xdpFeatures(ifindex int) (uint64, error) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		if errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "not found") {
			return 0, errNoFeatures
		}
		return 0, fmt.Errorf("netdev netlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	// The genl header by hand: nl.Genlmsg serialises its reserved half
	// from whatever follows the struct in memory, and netdev, a strictly
	// validated family, refuses non-zero reserved bytes.
	req.AddData(genlHeader{netdevCmdDevGet, 1, 0, 0})
	req.AddData(nl.NewRtAttr(netdevADevIfindex, nl.Uint32Attr(uint32(ifindex))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, fmt.Errorf("netdev dev-get: %w", err)
	}
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[4:]) // after the genl header
		if err != nil {
			return 0, fmt.Errorf("netdev dev-get: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED == netdevADevXDPFeatures && len(a.Value) >= 8 {
				return binary.NativeEndian.Uint64(a.Value), nil
			}
		}
	}
	return 0, errNoFeatures
}
