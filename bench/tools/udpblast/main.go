//go:build linux

// Command udpblast measures how many small UDP datagrams a path delivers.
//
//	udpblast send -dst 10.1.2.20:9000 [-size 64] [-flows 4] [-threads 1] [-duration 6s]
//	udpblast recv -listen 10.1.2.20:9000 [-warmup 500ms] [-window 5s] [-wait 5s] [-timeout 20s]
//
// "send" pushes fixed-size datagrams as fast as it can over several flows
// (one connected socket per source port) with sendmmsg(2); "recv" counts
// what arrives with recvmmsg(2) during a fixed window that starts a little
// after the first datagram. Each prints one JSON object on stdout. IPv4 only.
//
// The vxdp benchmark (bench/cmd/vxdp-bench) runs them inside pod network
// namespaces with `ip netns exec`; they can be run the same way by hand.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/bench/internal/benchtool"
)

func main() {
	benchtool.Main("udpblast", "udpblast send -dst IP:PORT [flags] | udpblast recv -listen IP:PORT [flags]",
		map[string]func([]string) error{"send": send, "recv": recv})
}

// sendResult is what "send" prints.
type sendResult struct {
	Sent    uint64  `json:"sent"`
	Seconds float64 `json:"seconds"`
	PPS     float64 `json:"pps"`
	Errors  uint64  `json:"errors"`
	Flows   int     `json:"flows"`
	Threads int     `json:"threads"`
	Size    int     `json:"size"`
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	dstArg := fs.String("dst", "", "destination IPv4:port or [IPv6]:port")
	size := fs.Int("size", 64, "UDP payload bytes")
	flows := fs.Int("flows", 4, "flows, i.e. source ports (each its own connected socket)")
	sport := fs.Int("sport", 40000, "first source port")
	threads := fs.Int("threads", 1, "sending threads; flows are shared out among them")
	batch := fs.Int("batch", 64, "datagrams per sendmmsg call")
	duration := fs.Duration("duration", 6*time.Second, "how long to send")
	fs.Parse(args)

	dst, err := benchtool.AddrPort("dst", *dstArg)
	if err != nil {
		return err
	}
	switch {
	case *size < 1 || *size > 65507:
		return fmt.Errorf("-size %d out of range", *size)
	case *flows < 1 || *flows > 1024:
		return fmt.Errorf("-flows %d out of range", *flows)
	case *threads < 1 || *threads > *flows:
		return fmt.Errorf("-threads %d: want 1..flows", *threads)
	case *batch < 1 || *batch > 1024:
		return fmt.Errorf("-batch %d out of range", *batch)
	case *sport < 1 || *sport+*flows > 65536:
		return fmt.Errorf("-sport %d out of range", *sport)
	case *duration <= 0 || *duration > 10*time.Minute:
		return fmt.Errorf("-duration %v out of range", *duration)
	}

	fds := make([]int, *flows)
	for i := range fds {
		fd, err := unix.Socket(benchtool.Family(dst), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		// A large send buffer keeps sendmmsg from blocking on the socket's
		// own accounting while the device queue still has room.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		var src unix.Sockaddr = &unix.SockaddrInet4{Port: *sport + i}
		if dst.Addr().Is6() {
			src = &unix.SockaddrInet6{Port: *sport + i}
		}
		if err := unix.Bind(fd, src); err != nil {
			return fmt.Errorf("bind source port %d: %w", *sport+i, err)
		}
		// Connected, so the kernel routes once per socket instead of once
		// per datagram and the messages need no address.
		if err := unix.Connect(fd, benchtool.Sockaddr(dst)); err != nil {
			return fmt.Errorf("connect %v: %w", dst, err)
		}
		fds[i] = fd
	}

	var sent, errs atomic.Uint64
	start := time.Now()
	deadline := start.Add(*duration)
	var wg sync.WaitGroup
	for t := 0; t < *threads; t++ {
		var mine []int
		for i := t; i < len(fds); i += *threads {
			mine = append(mine, fds[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One OS thread per sender keeps the scheduler from moving the
			// blocking syscalls around between threads.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			payload := make([]byte, *size)
			for i := range payload {
				payload[i] = byte(i)
			}
			iovs := make([]unix.Iovec, *batch)
			hdrs := make([]unix.Mmsghdr, *batch)
			for i := range hdrs {
				iovs[i].Base = &payload[0]
				iovs[i].SetLen(len(payload))
				hdrs[i].Hdr.Iov = &iovs[i]
				hdrs[i].Hdr.SetIovlen(1)
			}
			var n, e uint64
			for time.Now().Before(deadline) {
				for _, fd := range mine {
					k, err := sendmmsg(fd, hdrs)
					if k > 0 {
						n += uint64(k)
					}
					if err != 0 {
						// ECONNREFUSED reports an ICMP port unreachable
						// that arrived before the receiver was bound,
						// ENOBUFS a full device queue: neither ends the run.
						e++
						if err != unix.ECONNREFUSED && err != unix.ENOBUFS && err != unix.EAGAIN && err != unix.EINTR {
							errs.Add(e)
							sent.Add(n)
							fmt.Fprintln(os.Stderr, "udpblast: sendmmsg:", err)
							return
						}
					}
				}
			}
			sent.Add(n)
			errs.Add(e)
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(sendResult{
		Sent: sent.Load(), Seconds: secs, PPS: float64(sent.Load()) / secs,
		Errors: errs.Load(), Flows: *flows, Threads: *threads, Size: *size,
	})
}

// recvResult is what "recv" prints.
type recvResult struct {
	Received     uint64  `json:"received"`      // datagrams inside the window
	Seconds      float64 `json:"seconds"`       // the window as measured
	PPS          float64 `json:"pps"`           // Received / Seconds
	Total        uint64  `json:"total"`         // datagrams seen, warm-up included
	CPUBusy      float64 `json:"cpu_busy_s"`    // whole machine, inside the window
	RcvbufErrors uint64  `json:"rcvbuf_errors"` // socket drops in this namespace, inside the window
}

func recv(args []string) error {
	fs := flag.NewFlagSet("recv", flag.ExitOnError)
	listen := fs.String("listen", "", "IPv4:port or [IPv6]:port to bind")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "time after the first datagram before the window opens")
	window := fs.Duration("window", 5*time.Second, "counting window")
	wait := fs.Duration("wait", 5*time.Second, "give up when no datagram has arrived by then")
	timeout := fs.Duration("timeout", 20*time.Second, "give up when the window has not closed by then")
	batch := fs.Int("batch", 64, "datagrams per recvmmsg call")
	rcvbuf := fs.Int("rcvbuf", 16<<20, "socket receive buffer, bytes")
	fs.Parse(args)

	addr, err := benchtool.AddrPort("listen", *listen)
	if err != nil {
		return err
	}
	if *batch < 1 || *batch > 1024 || *window <= 0 || *warmup < 0 || *timeout <= *warmup+*window {
		return errors.New("bad -batch, -window, -warmup or -timeout")
	}
	fd, err := unix.Socket(benchtool.Family(addr), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// FORCE ignores rmem_max (we run as root); the plain option is the
	// fallback when that is not allowed.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, *rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, *rcvbuf)
	}
	// A short receive timeout lets the loop notice the end of the window
	// and the overall deadline while no traffic arrives.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := unix.Bind(fd, benchtool.Sockaddr(addr)); err != nil {
		return fmt.Errorf("bind %v: %w", addr, err)
	}
	fmt.Fprintln(os.Stderr, "udpblast: listening on", addr)

	bufs := make([]byte, *batch*2048)
	iovs := make([]unix.Iovec, *batch)
	hdrs := make([]unix.Mmsghdr, *batch)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*2048]
		iovs[i].SetLen(2048)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}

	runtime.LockOSThread()
	started := time.Now()
	deadline := started.Add(*timeout)
	var (
		res                 recvResult
		first, open, closes time.Time
		busy0, drops0       uint64
		inWindow            bool
	)
	for {
		n, e := recvmmsg(fd, hdrs)
		now := time.Now()
		if e != 0 && e != unix.EAGAIN && e != unix.EINTR {
			return fmt.Errorf("recvmmsg: %w", e)
		}
		if n > 0 {
			res.Total += uint64(n)
			if first.IsZero() {
				first = now
				open = first.Add(*warmup)
				closes = open.Add(*window)
			}
		}
		if !first.IsZero() {
			if !inWindow && !now.Before(open) {
				// Opened by the first batch that returns after the
				// warm-up: that batch counts (it arrived in the window).
				inWindow = true
				open = now
				closes = now.Add(*window)
				busy0, drops0 = cpuBusyTicks(), rcvbufErrors(addr.Addr().Is6())
				if n > 0 {
					res.Received += uint64(n)
				}
			} else if inWindow && n > 0 && now.Before(closes) {
				res.Received += uint64(n)
			}
			if inWindow && !now.Before(closes) {
				res.Seconds = now.Sub(open).Seconds()
				res.CPUBusy = float64(cpuBusyTicks()-busy0) / clockTicks
				res.RcvbufErrors = rcvbufErrors(addr.Addr().Is6()) - drops0
				break
			}
		}
		if first.IsZero() && now.Sub(started) > *wait {
			return fmt.Errorf("no datagram arrived within %v", *wait)
		}
		if now.After(deadline) {
			return errors.New("window did not close before -timeout")
		}
	}
	res.PPS = float64(res.Received) / res.Seconds
	return json.NewEncoder(os.Stdout).Encode(res)
}

func sendmmsg(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	return int(n), e
}

func recvmmsg(fd int, hdrs []unix.Mmsghdr) (int, unix.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on every Linux ABI
// (the kernel converts to it whatever its internal HZ is).
const clockTicks = 100

// cpuBusyTicks sums the non-idle columns of the "cpu" line of /proc/stat
// (user nice system irq softirq). /proc/stat is not namespaced, so this is
// the whole machine even from inside a pod's namespace.
func cpuBusyTicks() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var sum uint64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		sum += v
	}
	return sum
}

// rcvbufErrors reads Udp RcvbufErrors from /proc/net/snmp (with v6,
// Udp6RcvbufErrors from /proc/net/snmp6), which is the calling process's
// network namespace: datagrams the kernel delivered to the host but
// dropped because a socket's buffer was full.
func rcvbufErrors(v6 bool) uint64 {
	if v6 {
		b, err := os.ReadFile("/proc/net/snmp6")
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6RcvbufErrors" {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				return v
			}
		}
		return 0
	}
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(fields) {
				v, _ := strconv.ParseUint(fields[i], 10, 64)
				return v
			}
		}
	}
	return 0
}
