package dataplane

import "errors"

// ErrClosed is returned by Device.Read and Device.Write after Close.
var ErrClosed = errors.New("device closed")

// ErrDeviceGone is returned by Device.Read and Device.Write when the kernel
// removed the device under the driver (a pod's namespace was destroyed).
// The worker of such a device stops.
var ErrDeviceGone = errors.New("interface no longer exists")
