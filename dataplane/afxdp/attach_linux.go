package afxdp

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IFLA_XDP_ATTACHED values.
const (
	xdpAttachedNone  = 0
	xdpAttachedDrv   = 1
	xdpAttachedSkb   = 2
	xdpAttachedHw    = 3
	xdpAttachedMulti = 4
)

// netlinkTimeout bounds every netlink request, so that a wedged kernel
// answer cannot hang Open or Close forever.
const netlinkTimeout = 10 * time.Second

// rtnl is the route-netlink access of one Underlay, bound to the network
// namespace Open ran in: every later call (Close, the neighbour goroutine)
// may run on any thread, and a socket keeps the namespace it was made in.
// Using the process-wide netlink functions instead would act on whatever
// namespace the calling thread happens to be in, which for a test is the
// host's.
type rtnl struct {
	ns   netns.NsHandle
	h    *netlink.Handle
	sock map[int]*nl.SocketHandle // for requests the Handle lacks (XDP set)
}

func newRTNL() (*rtnl, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	h.SetSocketTimeout(netlinkTimeout)
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	s.SetSendTimeout(&tv)
	s.SetReceiveTimeout(&tv)
	s.SetExtAck(true) // the kernel explains XDP attach failures
	return &rtnl{ns: ns, h: h, sock: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}}, nil
}

func (r *rtnl) close() {
	r.sock[unix.NETLINK_ROUTE].Socket.Close()
	r.h.Close()
	r.ns.Close()
}

// setXDP sends IFLA_XDP for ifindex: attach fd, or detach with fd -1.
func (r *rtnl) setXDP(ifindex, fd int, flags uint32) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  unix.RTM_SETLINK,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		},
		Sockets: r.sock,
	}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	xdp := nl.NewRtAttr(unix.IFLA_XDP|unix.NLA_F_NESTED, nil)
	xdp.AddRtAttr(nl.IFLA_XDP_FD, nl.Uint32Attr(uint32(int32(fd))))
	if flags != 0 {
		xdp.AddRtAttr(nl.IFLA_XDP_FLAGS, nl.Uint32Attr(flags))
	}
	req.AddData(xdp)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// attached describes the XDP program on a device, if any.
type attached struct {
	id   ebpf.ProgramID
	mode uint8 // IFLA_XDP_ATTACHED
	name string
}

func (a attached) modeFlag() uint32 {
	switch a.mode {
	case xdpAttachedDrv:
		return unix.XDP_FLAGS_DRV_MODE
	case xdpAttachedSkb:
		return unix.XDP_FLAGS_SKB_MODE
	case xdpAttachedHw:
		return unix.XDP_FLAGS_HW_MODE
	}
	return 0
}

func (a attached) modeName() string {
	switch a.mode {
	case xdpAttachedDrv:
		return "native"
	case xdpAttachedSkb:
		return "generic"
	case xdpAttachedHw:
		return "offloaded"
	case xdpAttachedMulti:
		return "several modes"
	}
	return "unknown mode"
}

// ours tells whether the program is one vxdp loaded.
func (a attached) ours() bool { return a.name == progName && a.mode != xdpAttachedMulti }

// inspect reports the XDP program attached to ifindex (id 0: none).
func (r *rtnl) inspect(ifindex int) (attached, error) {
	link, err := r.h.LinkByIndex(ifindex)
	if err != nil {
		return attached{}, err
	}
	x := link.Attrs().Xdp
	if x == nil || !x.Attached {
		return attached{}, nil
	}
	a := attached{id: ebpf.ProgramID(x.ProgId), mode: uint8(x.AttachMode)}
	if a.id == 0 {
		// Several programs (driver and offload): none of them is ours to
		// manage.
		a.name = "?"
		return a, nil
	}
	p, err := ebpf.NewProgramFromID(a.id)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			// Detached and freed in the meantime.
			return attached{}, nil
		}
		return a, fmt.Errorf("inspect XDP program %d: %w", a.id, classify(err))
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return a, fmt.Errorf("inspect XDP program %d: %w", a.id, err)
	}
	a.name = info.Name
	return a, nil
}

// foreignError is the error for a device that carries another program.
func foreignError(dev string, a attached) error {
	name := a.name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Errorf("%w on %s: program %q (id %d, %s); vxdp never replaces a program it did not load: detach it first (ip link set dev %s xdp off)",
		ErrForeignProgram, dev, name, a.id, a.modeName(), dev)
}
