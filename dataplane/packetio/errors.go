package packetio

import "errors"

// ErrDeviceGone is returned by Read and Write when the kernel removed the
// device under the driver (a pod's namespace was destroyed, the NIC was
// unplugged). The worker of such a device stops.
//
// A device that was closed returns net.ErrClosed (wrapped or not) instead.
var ErrDeviceGone = errors.New("interface no longer exists")
