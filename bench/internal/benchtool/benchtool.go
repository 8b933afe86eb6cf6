// Package benchtool is what the benchmark's tools (bench/tools) and the
// command that runs them (bench/cmd/vxdp-bench) share: a tool's command line
// of subcommands, its address arguments and the JSON it prints.
package benchtool

import (
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Main runs the subcommand os.Args[1] names with the arguments after it,
// and exits 1 with the error on stderr when it fails. A missing or unknown
// subcommand prints usage and exits 2.
func Main(tool, usage string, subcommands map[string]func(args []string) error) {
	var run func([]string) error
	if len(os.Args) >= 2 {
		run = subcommands[os.Args[1]]
	}
	if run == nil {
		fmt.Fprintln(os.Stderr, "usage: "+usage)
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", tool, err)
		os.Exit(1)
	}
}

// AddrPort parses the value of flag, which must be IPv4:port or
// [IPv6]:port.
func AddrPort(flag, s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Is4In6() || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("-%s %q: want IPv4:port or [IPv6]:port", flag, s)
	}
	return ap, nil
}

// Family is the socket family (AF_INET, AF_INET6) of ap's address.
func Family(ap netip.AddrPort) int {
	if ap.Addr().Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// Sockaddr is ap as a socket address of its family.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is6() {
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
}

// RRResult is what `tcprr client` prints; times in microseconds.
type RRResult struct {
	RoundTrips int     `json:"round_trips"`
	Seconds    float64 `json:"seconds"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	P999       float64 `json:"p999_us"`
	Mean       float64 `json:"mean_us"`
	Min        float64 `json:"min_us"`
	Max        float64 `json:"max_us"`
}
