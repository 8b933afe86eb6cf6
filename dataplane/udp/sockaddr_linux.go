package udp

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Address families. An underlay has the family of its Config.Addr: every
// socket it opens is AF_INET or AF_INET6, the sockaddr arrays its system
// calls fill are of that family only, and the choice is made when a socket
// or an array is set up, not per packet.

// newSocket opens a non-blocking UDP socket, IPv6 when v6. An IPv6 socket
// is IPv6 only (IPV6_V6ONLY): it neither receives nor sends IPv4 through
// IPv4-mapped addresses, so an IPv6 underlay sees IPv6 peers only. (Linux
// also makes it so when the socket is bound to an IPv6 address that is not
// IPv4-mapped, as ours are; the option says it from the start.)
func newSocket(v6 bool) (int, error) {
	domain := unix.AF_INET
	if v6 {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("udp socket: %w", err)
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	return fd, nil
}

// sockaddr converts a for bind and sendto. An IPv6 address goes without
// its zone: the underlay refuses link-local node addresses.
func sockaddr(a netip.AddrPort) unix.Sockaddr {
	if ip := a.Addr(); ip.Is6() {
		return &unix.SockaddrInet6{Port: int(a.Port()), Addr: ip.As16()}
	}
	return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
}

// boundAddr is the address and port a socket is bound to.
func boundAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("socket bound to unexpected address %T", sa)
}

// bind binds fd to local, naming the usual causes of failure.
func bind(fd int, local netip.AddrPort) error {
	err := unix.Bind(fd, sockaddr(local))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("bind %s: port already in use: %w", local, err)
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return fmt.Errorf("bind %s: not an address of this network namespace: %w", local, err)
	}
	return fmt.Errorf("bind %s: %w", local, err)
}

// The raw sockaddrs of recvmmsg and sendmmsg hold the port in network
// byte order in memory, whatever the host's.

func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func setNetPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

func addrPort4(sa *unix.RawSockaddrInet4) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), netPort(&sa.Port))
}

// addrPort6 is the address in sa without a zone (its scope ID is not
// read: the underlay's own address is never link-local, so neither is a
// peer's that reaches it) and never IPv4-mapped (the sockets are IPv6
// only).
func addrPort6(sa *unix.RawSockaddrInet6) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), netPort(&sa.Port))
}

func setAddrPort4(sa *unix.RawSockaddrInet4, a netip.AddrPort) {
	sa.Addr = a.Addr().As4()
	setNetPort(&sa.Port, a.Port())
}

func setAddrPort6(sa *unix.RawSockaddrInet6, a netip.AddrPort) {
	sa.Addr = a.Addr().As16()
	setNetPort(&sa.Port, a.Port())
}

// sameAddrPort4 reports whether sa holds a, which is IPv4.
func sameAddrPort4(sa *unix.RawSockaddrInet4, a netip.AddrPort) bool {
	return sa.Addr == a.Addr().As4() && netPort(&sa.Port) == a.Port()
}

// sameAddrPort6 reports whether sa holds a, which is IPv6.
func sameAddrPort6(sa *unix.RawSockaddrInet6, a netip.AddrPort) bool {
	return sa.Addr == a.Addr().As16() && netPort(&sa.Port) == a.Port()
}
