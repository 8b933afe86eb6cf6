//go:build !linux

package packetio

import "runtime"

func yield() { runtime.Gosched() }

type watchEvents struct{}

func watchAdd(int) bool                  { return false }
func watchDel(int)                       {}
func othersReady(*watchEvents, int) bool { return false }
