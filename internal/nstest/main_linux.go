//go:build linux

package nstest

import (
	"fmt"
	"os"
)

// M is what Main needs of *testing.M.
type M interface{ Run() int }

// Main is the TestMain of a package whose tests all need labs, and exits
// with the tests' status. Without root it prints that the tests need it
// (what: "tun tests", for example) and exits 0, so that `go test ./...` as
// a user skips them. As root it first removes what killed runs left behind
// (RemoveStale), and afterwards fails the binary if a lab of this process
// left a namespace behind.
func Main(m M, what string) {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s need root (network namespaces); skipping\n", what)
		os.Exit(0)
	}
	if stale, err := RemoveStale(); err == nil && len(stale) > 0 {
		fmt.Fprintf(os.Stderr, "removed leftovers of a killed run: %v\n", stale)
	}
	code := m.Run()
	if left, err := OwnLeftovers(); err == nil && len(left) > 0 {
		fmt.Fprintf(os.Stderr, "namespaces left behind by the tests: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
