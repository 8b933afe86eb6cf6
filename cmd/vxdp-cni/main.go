// Command vxdp-cni is the CNI plugin of vxdp; see package cni.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxdp/vxdp/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs, cni.Versions, cni.About)
}
