//go:build !linux

package packetio

import "runtime"

func yield() { runtime.Gosched() }
