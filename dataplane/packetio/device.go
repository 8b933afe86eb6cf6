package packetio

// Device carries bare IP packets (IPv4 or IPv6): a pod's TUN device, the
// host device vxdp_host, the in-memory fake. The engine never knows which
// one it holds.
//
// Every packet crossing a Device starts at bufs[i][offset:]. The bytes
// before offset are headroom that belongs to the caller; a driver that
// needs a header of its own in front of the packet (the TUN driver's
// virtio-net header) may write there on Write.
type Device interface {
	// Read reads up to len(bufs) packets. Packet i is written to
	// bufs[i][offset:] and its length stored in sizes[i]. Callers must pass
	// a sizes slice with len(sizes) >= len(bufs) and buffers with at least
	// offset+MTU bytes. Read blocks until at least one packet is available
	// or the device is closed; it returns the number of packets read. The
	// buffers stay owned by the caller: a driver never keeps a reference
	// after Read returns.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes the packets bufs[i][offset:] for every i. It returns the
	// number of packets the device accepted. A driver may skip a packet the
	// kernel refuses (and count it) and go on with the rest, so n <
	// len(bufs) with a nil error means n were accepted, not necessarily the
	// first n; with an error, the packets not accepted were not sent. The
	// caller owns the buffers again as soon as Write returns, and Write
	// may scribble on the headroom in front of offset. Write is safe for
	// concurrent use.
	Write(bufs [][]byte, offset int) (n int, err error)

	// BatchSize is the largest number of packets Read returns or Write
	// takes in one call that the driver handles in one system call.
	BatchSize() int

	// Name names the device in counters, logs and errors.
	Name() string

	// Close releases the device. A Read blocked in another goroutine
	// returns net.ErrClosed (wrapped or not) soon after.
	Close() error
}
