package packetio

import "golang.org/x/sys/unix"

// yield gives the CPU to any other thread that is ready to run on it
// (sched_yield): a busy-polling reader must not keep the pods' threads
// waiting.
func yield() { unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
