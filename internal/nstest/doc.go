// Package nstest builds throwaway hosts out of Linux network namespaces for
// the drivers' tests, the end-to-end tests and the benchmark.
//
// A Lab owns everything one test or one benchmark run creates: namespaces,
// the veth pairs between them, long-running processes, packet captures and
// helper servers. Close tears all of it down and checks that nothing carrying
// the lab's unique name prefix is left. Lab's methods return errors; tests
// use New, whose TestLab fails the test instead and closes the lab with
// t.Cleanup, also when the test fails or panics.
//
// The harness never configures the root network namespace: links are created
// inside a lab namespace and their peers are moved straight into another one,
// and traffic helpers only talk to sockets they opened themselves inside lab
// namespaces. Every helper that moves traffic is bounded in time and volume.
// Labs of processes that died before closing them are found by RemoveStale.
//
// Everything here needs root on Linux.
package nstest
