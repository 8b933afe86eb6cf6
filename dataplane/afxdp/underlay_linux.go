package afxdp

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/encap"
)

// xdpPacketHeadroom is the room a zero-copy driver keeps in front of the
// packet in each frame (XDP_PACKET_HEADROOM).
const xdpPacketHeadroom = 256

// Underlay is one attachment to a NIC: the XDP program, its XSKMAP, one
// AF_XDP socket per RX queue, and the next-hop resolver for TX.
type Underlay struct {
	cfg     Config
	log     *zap.Logger
	nl      *rtnl
	ifindex int
	mac     [6]byte
	// The node address's family decides the outer headers of every
	// packet: an underlay speaks IPv4 or IPv6, never both.
	v6        bool
	outerLen  int    // encap.OuterV4Len or encap.OuterV6Len
	etherType uint16 // of the frames Send builds
	// partialCsum: the device is a veth, whose frames from a local
	// sender may carry an unfinished UDP checksum (see payloadOfFrame).
	partialCsum bool
	mtu         atomic.Int64 // the device's, which bounds what Send takes
	epoch       time.Time

	xsks   *ebpf.Map
	prog   *ebpf.Program
	progID ebpf.ProgramID
	mode   uint32 // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
	umems  [][]byte
	queues []*Queue
	nb     *neighbours
	info   Info

	waiting atomic.Int64 // packets waiting for ARP, all queues
	gone    atomic.Bool  // the device was removed

	// fdMu keeps the sockets open while Stats or a queue's Close use
	// them; Close takes it exclusively to close them.
	fdMu      sync.RWMutex
	closeOnce sync.Once
	closeErr  error
}

// Open attaches the underlay to cfg.Device in the network namespace of the
// calling thread: it loads the XDP program and its XSKMAP, creates and
// binds one AF_XDP socket per queue, puts them in the map and attaches the
// program. A program vxdp left behind (same name, no live sockets) is
// replaced; any other program is left alone and Open fails with
// ErrForeignProgram. Errors are one line and wrap ErrNoDevice,
// ErrPermission, ErrForeignProgram or ErrUnsupported where one applies.
func Open(cfg Config) (*Underlay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	u, err := open(cfg)
	if err != nil {
		return nil, fmt.Errorf("afxdp %s: %w", cfg.Device, err)
	}
	return u, nil
}

// newUnderlay is the part of an Underlay that needs no kernel object.
func newUnderlay(cfg Config) *Underlay {
	u := &Underlay{cfg: cfg, log: cfg.Logger, epoch: time.Now(),
		outerLen: encap.OuterV4Len, etherType: encap.EtherTypeIPv4}
	if cfg.NodeIP.Is6() {
		u.v6, u.outerLen, u.etherType = true, encap.OuterV6Len, encap.EtherTypeIPv6
	}
	return u
}

func open(cfg Config) (_ *Underlay, err error) {
	u := newUnderlay(cfg)
	defer func() {
		if err != nil {
			u.teardown()
		}
	}()
	if u.nl, err = newRTNL(); err != nil {
		return nil, err
	}
	link, err := u.nl.h.LinkByName(cfg.Device)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, ErrNoDevice
		}
		return nil, fmt.Errorf("look up device: %w", err)
	}
	attrs := link.Attrs()
	u.ifindex = attrs.Index
	u.mtu.Store(int64(attrs.MTU))
	if len(attrs.HardwareAddr) != 6 || attrs.EncapType != "ether" && attrs.EncapType != "" {
		return nil, fmt.Errorf("%w: not an Ethernet device (%s)", ErrUnsupported, attrs.EncapType)
	}
	u.mac = [6]byte(attrs.HardwareAddr)
	u.partialCsum = driverName(cfg.Device) == "veth"
	if err := u.fitsFrames(attrs.MTU); err != nil {
		return nil, err
	}

	// Queues.
	avail, known, err := rxQueues(cfg.Device)
	if err != nil {
		return nil, err
	}
	nq := cfg.Queues
	switch {
	case !known && nq == 0:
		nq = 1
		u.log.Warn("afxdp: driver does not report its channels; serving queue 0 only, packets on other queues go to the kernel",
			zap.String("device", cfg.Device))
	case known && nq == 0:
		nq = avail
	case known && nq > avail:
		return nil, fmt.Errorf("%d queues asked, device has %d", nq, avail)
	}

	// Mode. The netdev family tells what the driver can do (6.3+);
	// without it, native mode is tried and generic taken on failure.
	features, ferr := xdpFeatures(u.ifindex)
	native := cfg.Mode != ModeGeneric
	if ferr == nil && features&(xdpActBasic|xdpActRedirect) != xdpActBasic|xdpActRedirect {
		if cfg.Mode == ModeNative {
			return nil, fmt.Errorf("native XDP: %w by driver %s", ErrUnsupported, nameOr(driverName(cfg.Device), cfg.Device))
		}
		native = false
	}
	zcTry := native && cfg.ZeroCopy != ZeroCopyNever
	if ferr == nil && features&xdpActXSKZeroCopy == 0 && zcTry {
		if cfg.ZeroCopy == ZeroCopyRequire {
			return nil, fmt.Errorf("zero-copy AF_XDP: %w by driver %s", ErrUnsupported, nameOr(driverName(cfg.Device), cfg.Device))
		}
		zcTry = false
	}

	// What is attached now. Decided before anything is created, acted on
	// (a stale program detached) only once our sockets are bound: a live
	// vxdp would own the queues, and binding would fail first.
	prev, err := u.nl.inspect(u.ifindex)
	if err != nil {
		return nil, err
	}
	if prev.id != 0 && !prev.ours() {
		return nil, foreignError(cfg.Device, prev)
	}

	_ = rlimit.RemoveMemlock() // Linux < 5.11 charges BPF memory to RLIMIT_MEMLOCK
	if u.xsks, err = newXSKMap(nq); err != nil {
		return nil, err
	}
	if u.prog, err = loadProgram(cfg.NodeIP, cfg.Port, u.xsks, xdpPass); err != nil {
		return nil, err
	}
	if info, err := u.prog.Info(); err == nil {
		u.progID, _ = info.ID()
	}

	if err := u.openQueues(nq, zcTry); err != nil {
		return nil, err
	}

	if prev.id != 0 {
		if err := u.nl.setXDP(u.ifindex, -1, prev.modeFlag()); err != nil {
			return nil, fmt.Errorf("detach stale vxdp program %d: %w", prev.id, err)
		}
		u.log.Info("afxdp: replaced an XDP program left by an earlier vxdp",
			zap.String("device", cfg.Device), zap.Uint32("prog_id", uint32(prev.id)))
	}
	if err := u.attach(native); err != nil {
		if !native || cfg.Mode == ModeNative || u.queues[0].x.zeroCopy {
			return nil, err
		}
		// Older kernels cannot tell in advance: generic works everywhere.
		if gerr := u.attach(false); gerr != nil {
			return nil, fmt.Errorf("%w; generic mode: %w", err, gerr)
		}
	}

	if u.nb, err = newNeighbours(u.log, u.nl, u.ifindex, u.cfg.NodeIP, &u.waiting, u.flushAll, u.deviceRemoved); err != nil {
		return nil, fmt.Errorf("neighbour subscription: %w", err)
	}
	u.info = Info{
		Device:     cfg.Device,
		XDPMode:    pick(u.mode == unix.XDP_FLAGS_DRV_MODE, "native", "generic"),
		Bind:       pick(u.queues[0].x.zeroCopy, "zerocopy", "copy"),
		Queues:     len(u.queues),
		NeedWakeup: u.queues[0].x.needWakeup,
	}
	return u, nil
}

// openQueues creates, binds and registers one socket per queue. With
// zero-copy asked for but refused, it goes on in copy mode unless the
// configuration requires zero-copy.
func (u *Underlay) openQueues(nq int, zc bool) error {
	cfg := u.cfg
	for id := 0; id < nq; id++ {
		umem, err := newUMEM(cfg.NumFrames, cfg.FrameSize)
		if err != nil {
			return err
		}
		u.umems = append(u.umems, umem)
		p := xskParams{
			ifindex:   u.ifindex,
			queue:     id,
			frameSize: cfg.FrameSize,
			ringSize:  uint32(cfg.NumFrames / 2),
			zeroCopy:  zc,
			wakeup:    true,
		}
		x, err := openXSKRetry(umem, p)
		if err != nil && zc && errors.Is(err, ErrUnsupported) && cfg.ZeroCopy == ZeroCopyAuto && id == 0 {
			zc, p.zeroCopy = false, false
			x, err = openXSKRetry(umem, p)
		}
		if err != nil && errors.Is(err, unix.EINVAL) && p.wakeup {
			// Before Linux 5.4 the bind flag is unknown.
			p.wakeup = false
			x, err = openXSKRetry(umem, p)
		}
		if err != nil {
			return err
		}
		q := newQueue(u, id, x, cfg.FrameSize, cfg.NumFrames)
		u.queues = append(u.queues, q)
		if err := u.xsks.Put(uint32(id), uint32(x.fd)); err != nil {
			return fmt.Errorf("insert socket of queue %d into XSKMAP: %w", id, err)
		}
	}
	return nil
}

// openXSK retries a bind that finds the queue busy for a while: the
// kernel releases a closed socket's claim on its queue from a work queue,
// after close(2) has returned (and after a crashed process is gone), so a
// restart can race with it. A queue still busy after that belongs to a
// live socket, such as another running vxdp.
func openXSKRetry(umem []byte, p xskParams) (*xsk, error) {
	deadline := time.Now().Add(busyWait)
	for {
		x, err := openXSK(umem, p)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return x, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// busyWait bounds openXSKRetry.
const busyWait = time.Second

// attach puts the program on the device, never over another program.
func (u *Underlay) attach(native bool) error {
	mode, name := uint32(unix.XDP_FLAGS_SKB_MODE), "generic"
	if native {
		mode, name = unix.XDP_FLAGS_DRV_MODE, "native"
	}
	err := u.nl.setXDP(u.ifindex, u.prog.FD(), unix.XDP_FLAGS_UPDATE_IF_NOEXIST|mode)
	switch {
	case err == nil:
		u.mode = mode
		return nil
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		// Someone attached in the meantime (or a program sits in the
		// other mode).
		if a, ierr := u.nl.inspect(u.ifindex); ierr == nil && a.id != 0 {
			return foreignError(u.cfg.Device, a)
		}
		return fmt.Errorf("attach XDP (%s): %w: %w", name, ErrForeignProgram, err)
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL):
		return fmt.Errorf("attach XDP (%s): %w: %w", name, ErrUnsupported, err)
	case isPermission(err):
		return fmt.Errorf("attach XDP (%s): %w: %w", name, ErrPermission, err)
	}
	return fmt.Errorf("attach XDP (%s): %w", name, err)
}

// Queues returns one Device per RX queue, queue i at index i.
func (u *Underlay) Queues() []*Queue { return append([]*Queue(nil), u.queues...) }

// Info describes the attachment.
func (u *Underlay) Info() Info { return u.info }

// Stats sums the counters of all queues.
func (u *Underlay) Stats() Stats {
	u.fdMu.RLock()
	defer u.fdMu.RUnlock()
	var s Stats
	for _, q := range u.queues {
		s.add(q.statsLocked())
	}
	if u.nb != nil {
		s.ArpRequests = u.nb.requests.Load()
	}
	return s
}

// Close detaches the program (only if it is still ours), stops the
// resolver, closes the sockets and the BPF objects and frees the UMEM. A
// blocked Receive returns net.ErrClosed. Packets still waiting for ARP
// are dropped (TxNoNeighbour). Close is idempotent.
func (u *Underlay) Close() error {
	u.closeOnce.Do(func() {
		for _, q := range u.queues {
			q.Close()
		}
		u.closeErr = u.teardown()
		if u.closeErr != nil {
			u.closeErr = fmt.Errorf("afxdp %s: close: %w", u.cfg.Device, u.closeErr)
		}
	})
	return u.closeErr
}

// teardown releases whatever exists, in the reverse order of open.
func (u *Underlay) teardown() error {
	var errs []error
	if u.nb != nil {
		u.nb.stop()
	}
	if u.mode != 0 && u.nl != nil {
		// Detach only our own program: after a restart another vxdp
		// may have replaced it.
		if a, err := u.nl.inspect(u.ifindex); err == nil && a.id != 0 && a.id == u.progID {
			if err := u.nl.setXDP(u.ifindex, -1, u.mode); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("detach XDP: %w", err))
			}
		} else if err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("inspect XDP: %w", err))
		}
		u.mode = 0
	}
	u.fdMu.Lock()
	for _, q := range u.queues {
		q.rxMu.Lock()
		q.txMu.Lock()
		if !q.dead {
			q.dropWaiting()
			q.publishTX()
			if _, err := q.audit(); err != nil {
				q.closeAudit = err
				u.log.Error("afxdp: UMEM frame accounting broken", zap.String("queue", q.name), zap.Error(err))
			}
			if st, ok := q.x.statistics(); ok {
				q.lastKernel = st
			}
			if err := q.x.close(); err != nil {
				errs = append(errs, err)
			}
			q.dead = true
		}
		q.txMu.Unlock()
		q.rxMu.Unlock()
	}
	u.fdMu.Unlock()
	for _, m := range u.umems {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("unmap UMEM: %w", err))
		}
	}
	u.umems = nil
	if u.prog != nil {
		u.prog.Close()
	}
	if u.xsks != nil {
		u.xsks.Close()
	}
	if u.nl != nil {
		u.nl.close()
	}
	return errors.Join(errs...)
}

// isGone reports errors that mean the device (or namespace) is no more.
func isGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// deviceGone reports whether the underlay device has been removed.
func (u *Underlay) deviceGone() bool {
	if u.gone.Load() {
		return true
	}
	_, err := u.nl.h.LinkByIndex(u.ifindex)
	return err != nil && isGone(err)
}

// deviceRemoved is called by the neighbour goroutine when the device is
// deleted or leaves the namespace: parked Reads must wake up to say so.
func (u *Underlay) deviceRemoved() {
	if u.gone.Swap(true) {
		return
	}
	u.log.Warn("afxdp: underlay device removed", zap.String("device", u.cfg.Device))
	for _, q := range u.queues {
		q.wakeReader()
	}
}

// clock is a monotonic time for deadlines, cheap and allocation-free.
func (u *Underlay) clock() time.Duration { return time.Since(u.epoch) }

func (u *Underlay) acquireWait() bool {
	if u.waiting.Add(1) > maxWaiting {
		u.waiting.Add(-1)
		return false
	}
	return true
}

func (u *Underlay) releaseWaitN(n int) { u.waiting.Add(-int64(n)) }

func (u *Underlay) flushAll() {
	for _, q := range u.queues {
		q.flushWaiting()
	}
}

func pick(c bool, yes, no string) string {
	if c {
		return yes
	}
	return no
}

func nameOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fitsFrames checks that a frame of the device's MTU fits the UMEM frames.
func (u *Underlay) fitsFrames(mtu int) error {
	if need := mtu + ethLen + xdpPacketHeadroom; need > u.cfg.FrameSize {
		return fmt.Errorf("MTU %d needs frames of at least %d bytes, not %d", mtu, need, u.cfg.FrameSize)
	}
	return nil
}

// SetMTU follows a change of the device's MTU (packetio.MTUSetter): Send
// takes payloads up to the new one from its next call. An MTU the UMEM
// frames cannot hold is refused and the old one stays.
func (q *Queue) SetMTU(mtu int) error {
	if err := q.u.fitsFrames(mtu); err != nil {
		return fmt.Errorf("afxdp %s: %w", q.u.cfg.Device, err)
	}
	q.u.mtu.Store(int64(mtu))
	return nil
}
