// Package nstest builds throwaway hosts out of Linux network namespaces for
// end-to-end tests of the dataplane.
//
// A Lab owns everything one test creates: namespaces, the veth pairs between
// them, long-running processes, packet captures and helper servers. All of it
// is torn down by t.Cleanup, also when the test fails or panics, and the
// teardown checks that nothing carrying the lab's unique name prefix is left.
//
// The harness never configures the root network namespace: links are created
// inside a lab namespace and their peers are moved straight into another one,
// and traffic helpers only talk to sockets they opened themselves inside lab
// namespaces. Every helper that moves traffic is bounded in time and volume.
//
// Tests using this package must run as root on Linux.
package nstest
