// Package bench measures vxdp end to end. The benchmarks here run two
// complete engines joined by the in-memory underlay, so they measure the
// dataplane's own cost per packet (parse, FIB, encapsulation, checks,
// decapsulation, delivery) without kernel I/O; the network-namespace
// harness that compares against the kernel's vxlan builds on it.
package bench
