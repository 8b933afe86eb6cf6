package packetio

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// yield gives the CPU to any other thread that is ready to run on it
// (sched_yield): a busy-polling reader must not keep the pods' threads
// waiting.
func yield() { unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// The watch set is an epoll instance of the process holding the
// descriptors of its busy-polling readers, level-triggered: a spinning
// reader asks it, without waiting, whether another reader's queue has a
// packet. It is made on the first spin; -1 when the kernel refused it,
// and then spins are not cut short.
var watchSet struct {
	once sync.Once
	fd   int
}

func watchFD() int {
	watchSet.once.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			fd = -1
		}
		watchSet.fd = fd
	})
	return watchSet.fd
}

// watchEvents is where a spinning reader's epoll_wait puts what it finds;
// a few are enough to see one that is not the reader's own.
type watchEvents [4]unix.EpollEvent

func watchAdd(fd int) bool {
	w := watchFD()
	if w < 0 {
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	err := unix.EpollCtl(w, unix.EPOLL_CTL_ADD, fd, &ev)
	return err == nil || err == unix.EEXIST
}

func watchDel(fd int) {
	if w := watchFD(); w >= 0 {
		unix.EpollCtl(w, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

// othersReady says whether a descriptor of the watch set other than own
// is readable now.
func othersReady(evs *watchEvents, own int) bool {
	w := watchFD()
	if w < 0 {
		return false
	}
	n, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(w), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return false
	}
	for i := range int(n) {
		if int(evs[i].Fd) != own {
			return true
		}
	}
	return false
}
