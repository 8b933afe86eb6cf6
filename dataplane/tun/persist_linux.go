package tun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoSuchDevice is returned by Attach when there is nothing to attach to.
var ErrNoSuchDevice = errors.New("no such tun device")

// SetPersist makes the interface outlive its descriptor (on) or not (off).
// A persistent interface keeps its addresses and routes when the agent
// dies, so pods keep their eth0 and a restarted agent can Attach to it.
func (d *Device) SetPersist(on bool) error {
	v := 0
	if on {
		v = 1
	}
	err := d.control(func(fd int) error {
		return unix.IoctlSetInt(fd, unix.TUNSETPERSIST, v)
	})
	if err != nil {
		return fmt.Errorf("%s: TUNSETPERSIST %d: %w", d.Name(), v, err)
	}
	return nil
}

// Destroy removes the interface whatever its persistence: persistence off,
// then Close.
func (d *Device) Destroy() error {
	if d.closed.Load() {
		return nil
	}
	perr := d.SetPersist(false)
	cerr := d.Close()
	return errors.Join(perr, cerr)
}

// Attach opens the existing TUN interface name in the network namespace at
// nsPath ("" for the calling thread's), the way a restarted agent takes
// its persistent devices back. It never creates one: a missing interface
// is ErrNoSuchDevice, and one that is not a plain TUN (a TAP, another
// program's device with other flags) is refused by the kernel.
func Attach(nsPath, name string) (*Device, error) { return AttachWith(nsPath, name, Options{}) }

// AttachWith is Attach with options; they must match how the device was
// created.
func AttachWith(nsPath, name string, o Options) (*Device, error) {
	runtime.LockOSThread()
	stuck := false // the thread could not go home: never hand it back
	defer func() {
		if !stuck {
			runtime.UnlockOSThread()
		}
	}()
	if nsPath != "" {
		home, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("attach tun %s: current netns: %w", name, err)
		}
		defer home.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("attach tun %s: netns %s: %w", name, nsPath, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return nil, fmt.Errorf("attach tun %s: enter netns %s: %w", name, nsPath, err)
		}
		defer func() {
			if netns.Set(home) != nil {
				stuck = true
			}
		}()
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("attach tun %s: %w", name, ErrNoSuchDevice)
	}
	if link.Type() != "tuntap" {
		return nil, fmt.Errorf("attach tun %s: a %s link, not a tun device", name, link.Type())
	}
	d, err := openDevice(name, o.flags(), o)
	if err != nil {
		return nil, fmt.Errorf("attach tun %s: %w", name, err)
	}
	return d, nil
}
