package e2e

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// kernelDrops reads what `vxdp stats` says the kernel dropped on the way
// to each device, failing on a counter it could not read.
func kernelDrops(t *testing.T, sock string) map[string]uint64 {
	t.Helper()
	var st struct {
		Devices []struct {
			Device        string `json:"device"`
			Kind          string `json:"kind"`
			KernelDropped uint64 `json:"kernel_dropped"`
			Err           string `json:"kernel_dropped_error"`
		} `json:"devices"`
	}
	readStats(t, sock, &st)
	m := map[string]uint64{}
	for _, d := range st.Devices {
		if d.Err != "" {
			t.Errorf("%s %s: kernel drops not read: %s", d.Kind, d.Device, d.Err)
		}
		m[d.Device] = d.KernelDropped
	}
	return m
}

// TestKernelDropped stops node1's agent while pod1a sends: the datagrams
// its TUN queue cannot hold are dropped by the kernel, and `vxdp stats`
// shows them on pod1a's device once the agent runs again.
func TestKernelDropped(t *testing.T) {
	c := newClusterWith(t, [2]string{})
	before := kernelDrops(t, c.sockets[0])
	if _, ok := before["pod1a"]; !ok {
		t.Fatalf("no pod1a in the stats: %v", before)
	}
	conn := c.pods["pod1a"].ListenUDP(t, netip.MustParseAddrPort("10.1.1.10:0"))
	dst := netip.MustParseAddrPort("10.1.2.20:9")

	must(t, c.agents[0].Signal(syscall.SIGSTOP))
	stopped := true
	// kill returns before every thread has stopped: one still running
	// would keep reading the pod's queue.
	waitStopped(t, c.agents[0].Pid())
	cont := func() {
		if stopped {
			stopped = false
			must(t, c.agents[0].Signal(syscall.SIGCONT))
		}
	}
	defer cont()
	// One flow lands on one of the device's queues (2048 packets each);
	// the rest is dropped.
	const sent = 5000
	for i := 0; i < sent; i++ {
		if _, err := conn.WriteToUDPAddrPort([]byte("while stopped"), dst); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	cont()
	after := kernelDrops(t, c.sockets[0])
	if got := after["pod1a"] - before["pod1a"]; got < sent-2048 || got > sent {
		t.Errorf("pod1a: kernel dropped %d of %d sent while the agent was stopped, want %d..%d", got, sent, sent-2048, sent)
	}
	if got := after["pod1b"] - before["pod1b"]; got != 0 {
		t.Errorf("pod1b, which sent nothing: kernel dropped %d", got)
	}
}

// waitStopped waits until every thread of process pid is stopped (state
// T in /proc), for 5 s at most.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		running := ""
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // the thread ended
			}
			// pid (comm) state ...: comm may hold spaces and parentheses.
			if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] != 'T' && b[i+2] != 't' {
				running = f
				break
			}
		}
		if running == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not stopped 5 s after SIGSTOP", running)
		}
		time.Sleep(time.Millisecond)
	}
}
