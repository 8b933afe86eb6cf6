package afxdp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/internal/nstest"
	"golang.org/x/sys/unix"
)

// attachedIn reports the program attached to dev in ns.
func attachedIn(t *testing.T, ns *nstest.Netns, dev string) attached {
	t.Helper()
	var a attached
	inNetns(t, ns, func() error {
		r, err := newRTNL()
		if err != nil {
			return err
		}
		defer r.close()
		link, err := r.h.LinkByName(dev)
		if err != nil {
			return err
		}
		a, err = r.inspect(link.Attrs().Index)
		return err
	})
	return a
}

// attachRaw attaches prog to dev in ns through netlink, as another tool
// (or a vxdp that then died) would, and closes the test's handles on it:
// the attachment alone keeps it alive.
func attachRaw(t *testing.T, ns *nstest.Netns, dev string, prog *ebpf.Program, mode uint32) ebpf.ProgramID {
	t.Helper()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	inNetns(t, ns, func() error {
		r, err := newRTNL()
		if err != nil {
			return err
		}
		defer r.close()
		link, err := r.h.LinkByName(dev)
		if err != nil {
			return err
		}
		return r.setXDP(link.Attrs().Index, prog.FD(), unix.XDP_FLAGS_UPDATE_IF_NOEXIST|mode)
	})
	prog.Close()
	return id
}

func foreignProgram(t *testing.T, name string) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    name,
		Type:    ebpf.XDP,
		License: "MIT",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCloseDetaches(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	a := attachedIn(t, p.a, "veth0")
	if a.id == 0 || a.id != u.progID || a.name != progName || a.mode != xdpAttachedDrv {
		t.Fatalf("attached %+v, want our program %d in native mode", a, u.progID)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if shown, out := xdpShown(t, p.a, "veth0"); shown {
		t.Fatalf("still attached after Close:\n%s", out)
	}
	// Open again after a clean Close.
	u2 := openIn(t, p.a, defaultConfig())
	if err := u2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReplacesStaleProgram(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)

	// A vxdp that died: program attached, sockets gone.
	u1 := openIn(t, p.a, defaultConfig())
	staleID := u1.progID
	u1.crash()
	if a := attachedIn(t, p.a, "veth0"); a.id != staleID {
		t.Fatalf("after the crash attached = %+v, want the stale %d", a, staleID)
	}
	u2 := openIn(t, p.a, defaultConfig())
	if a := attachedIn(t, p.a, "veth0"); a.id != u2.progID || a.id == staleID {
		t.Fatalf("attached = %+v, want the new program %d", a, u2.progID)
	}
	if err := u2.Close(); err != nil {
		t.Fatal(err)
	}

	// The same, attached by hand in generic mode with our name: Open
	// detaches it and attaches natively.
	m, err := newXSKMap(1)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := loadProgram(addrA, 8472, m, xdpPass)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	staleID = attachRaw(t, p.a, "veth0", prog, unix.XDP_FLAGS_SKB_MODE)
	if a := attachedIn(t, p.a, "veth0"); a.id != staleID || a.mode != xdpAttachedSkb {
		t.Fatalf("attached = %+v, want %d generic", a, staleID)
	}
	u3 := openIn(t, p.a, defaultConfig())
	if a := attachedIn(t, p.a, "veth0"); a.id != u3.progID || a.mode != xdpAttachedDrv {
		t.Fatalf("attached = %+v, want %d native", a, u3.progID)
	}

	// A live vxdp owns the queue: a second Open fails and leaves it be.
	_, err = tryOpenIn(p.a, defaultConfig())
	if err == nil || !strings.Contains(err.Error(), "queue 0") {
		t.Fatalf("second Open while the first is live: %v", err)
	}
	t.Logf("second Open: %v", err)
	if a := attachedIn(t, p.a, "veth0"); a.id != u3.progID {
		t.Fatalf("live program replaced: %+v", a)
	}

	// An Underlay whose program was replaced does not detach the new one.
	u3.crash()
	u4 := openIn(t, p.a, defaultConfig())
	if err := u3.Close(); err == nil || err.Error() != "crashed" {
		t.Fatalf("Close of a crashed Underlay: %v", err)
	}
	if a := attachedIn(t, p.a, "veth0"); a.id != u4.progID {
		t.Fatalf("attached = %+v, want %d", a, u4.progID)
	}
	if err := u4.Close(); err != nil {
		t.Fatal(err)
	}
	if shown, out := xdpShown(t, p.a, "veth0"); shown {
		t.Fatalf("still attached:\n%s", out)
	}
}

// TestCloseKeepsReplacement: a Close must not detach a program another
// vxdp attached after replacing ours.
func TestCloseKeepsReplacement(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u1 := openIn(t, p.a, defaultConfig())
	// Pretend u1's program was replaced by a newer vxdp's: detach it and
	// attach another one with our name.
	old := attachedIn(t, p.a, "veth0")
	inNetns(t, p.a, func() error { return u1.nl.setXDP(u1.ifindex, -1, old.modeFlag()) })
	m, err := newXSKMap(1)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := loadProgram(addrA, 8472, m, xdpPass)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	newID := attachRaw(t, p.a, "veth0", prog, unix.XDP_FLAGS_DRV_MODE)
	if err := u1.Close(); err != nil {
		t.Fatal(err)
	}
	if a := attachedIn(t, p.a, "veth0"); a.id != newID {
		t.Fatalf("Close detached a program that was not its own: attached %+v, want %d", a, newID)
	}
}

func TestRefusesForeignProgram(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	for _, mode := range []uint32{unix.XDP_FLAGS_DRV_MODE, unix.XDP_FLAGS_SKB_MODE} {
		id := attachRaw(t, p.a, "veth0", foreignProgram(t, "foreign_pass"), mode)
		_, err := tryOpenIn(p.a, defaultConfig())
		if !errors.Is(err, ErrForeignProgram) {
			t.Fatalf("Open over a foreign program: %v", err)
		}
		t.Logf("Open: %v", err)
		if msg := err.Error(); !strings.Contains(msg, "foreign_pass") || strings.Contains(msg, "\n") {
			t.Errorf("error should be one line naming the program: %q", msg)
		}
		if a := attachedIn(t, p.a, "veth0"); a.id != id || a.name != "foreign_pass" {
			t.Fatalf("foreign program touched: %+v", a)
		}
		inNetns(t, p.a, func() error {
			r, err := newRTNL()
			if err != nil {
				return err
			}
			defer r.close()
			link, err := r.h.LinkByName("veth0")
			if err != nil {
				return err
			}
			return r.setXDP(link.Attrs().Index, -1, mode)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	cfg := defaultConfig()
	cfg.Device = "nosuchdev0"
	_, err := tryOpenIn(p.a, cfg)
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("missing device: %v", err)
	}
	t.Logf("missing device: %v", err)

	cfg = defaultConfig()
	cfg.ZeroCopy = ZeroCopyRequire
	_, err = tryOpenIn(p.a, cfg)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "zero-copy") {
		t.Fatalf("zero-copy on veth: %v", err)
	}
	t.Logf("zero-copy required: %v", err)

	cfg = defaultConfig()
	cfg.Queues = 3
	if _, err = tryOpenIn(p.a, cfg); err == nil {
		t.Fatal("3 queues on a 1-queue veth accepted")
	}
	t.Logf("too many queues: %v", err)

	for _, bad := range []Config{
		{NodeIP: addrA, Port: 8472},
		{Device: "veth0", Port: 8472},
		{Device: "veth0", NodeIP: addrA},
		{Device: "veth0", NodeIP: addrA, Port: 8472, FrameSize: 3000},
		{Device: "veth0", NodeIP: addrA, Port: 8472, NumFrames: 100},
		{Device: "veth0", NodeIP: addrA, Port: 8472, Mode: ModeGeneric, ZeroCopy: ZeroCopyRequire},
	} {
		if _, err := tryOpenIn(p.a, bad); err == nil {
			t.Errorf("Open(%+v) accepted", bad)
		}
	}
	// An MTU the frames cannot hold.
	ipIn(t, p.a, "link", "set", "veth0", "mtu", "3900")
	if _, err := tryOpenIn(p.a, defaultConfig()); err == nil || !strings.Contains(err.Error(), "MTU") {
		t.Errorf("MTU 3900 with 4096-byte frames: %v", err)
	}
	if shown, out := xdpShown(t, p.a, "veth0"); shown {
		t.Fatalf("failed Opens left a program:\n%s", out)
	}
}

func TestProbe(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	var ok bool
	var reason string
	inNetns(t, p.a, func() error {
		ok, reason = Probe("veth0")
		return nil
	})
	t.Logf("Probe(veth0) = %v, %q", ok, reason)
	if ok || !strings.Contains(reason, "zero-copy") || !strings.Contains(reason, "veth") {
		t.Fatalf("Probe(veth0) = %v, %q; want false, a reason naming veth and zero-copy", ok, reason)
	}
	if shown, out := xdpShown(t, p.a, "veth0"); shown {
		t.Fatalf("Probe left a program attached:\n%s", out)
	}
	inNetns(t, p.a, func() error {
		ok, reason = Probe("nosuchdev0")
		return nil
	})
	if ok || !strings.Contains(reason, "no such device") {
		t.Fatalf("Probe(nosuchdev0) = %v, %q", ok, reason)
	}
}

// receiveParked starts a Receive on q, which has nothing to read, and
// returns where its error will arrive once something ends it.
func receiveParked(q *Queue) <-chan error {
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := makeBufs(4)
		_, err := receivePackets(q, bufs, sizes, headroom)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	return errc
}

// TestCloseUnblocksReceive: a Receive parked waiting for packets returns
// net.ErrClosed promptly on Queue.Close and on Underlay.Close.
func TestCloseUnblocksReceive(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	for _, viaQueue := range []bool{true, false} {
		u := openIn(t, p.a, defaultConfig())
		q := u.Queues()[0]
		errc := receiveParked(q)
		start := time.Now()
		if viaQueue {
			q.Close()
		} else {
			u.Close()
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Receive returned %v, want net.ErrClosed", err)
			}
			t.Logf("queue close %v: Receive returned %v after %v", viaQueue, err, time.Since(start))
		case <-time.After(2 * time.Second):
			t.Fatal("Receive still blocked 2s after Close")
		}
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeviceGone: removing the device under a blocked Receive ends it with
// ErrDeviceGone, and Close still works.
func TestDeviceGone(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	errc := receiveParked(q)
	ipIn(t, p.a, "link", "del", "veth0")
	select {
	case err := <-errc:
		if !errors.Is(err, packetio.ErrDeviceGone) {
			t.Fatalf("Receive returned %v, want ErrDeviceGone", err)
		}
		t.Logf("Receive: %v", err)
	case <-time.After(5 * time.Second):
		u.Close()
		t.Fatal("Receive still blocked 5s after the device went away")
	}
	pkt := udpPacket(netip.AddrPortFrom(addrA, 1), netip.AddrPortFrom(addrB, 2), []byte("x"), headroom)
	if _, err := sendPackets(q, [][]byte{pkt}, headroom); err != nil && !errors.Is(err, packetio.ErrDeviceGone) {
		t.Fatalf("Send on a removed device: %v", err)
	}
	if err := u.Close(); err != nil {
		t.Fatalf("Close after the device went away: %v", err)
	}
}
