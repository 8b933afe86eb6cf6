// Command vxdp is the vxdp node agent (`vxdp agent`) and the CLI that talks
// to a running agent over its unix socket.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
