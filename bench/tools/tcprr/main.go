//go:build linux

// Command tcprr measures TCP request/response latency: one connection, a
// 1-byte request answered by a 1-byte response, each round trip timed by the
// client.
//
//	tcprr server -listen 10.1.2.20:7000 [-timeout 10m]
//	tcprr client -dst 10.1.2.20:7000 [-count 20000] [-duration 5s] [-warmup 200]
//
// The client prints one JSON object with the percentiles on stdout.
// Both sides use blocking system calls on a thread of their own rather than
// Go's network poller, so a round trip costs what the path costs plus one
// wake-up per side, not an extra trip through the runtime's scheduler. IPv4
// only.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/bench/internal/benchtool"
)

func main() {
	benchtool.Main("tcprr", "tcprr server -listen IP:PORT | tcprr client -dst IP:PORT [flags]",
		map[string]func([]string) error{"server": server, "client": client})
}

// parseAddr returns the socket family and address of the value of flag.
func parseAddr(flag, s string) (int, unix.Sockaddr, error) {
	ap, err := benchtool.AddrPort(flag, s)
	if err != nil {
		return 0, nil, err
	}
	return benchtool.Family(ap), benchtool.Sockaddr(ap), nil
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	listen := fs.String("listen", "", "IPv4:port or [IPv6]:port to listen on")
	timeout := fs.Duration("timeout", 10*time.Minute, "exit after this long in any case")
	fs.Parse(args)
	family, sa, err := parseAddr("listen", *listen)
	if err != nil {
		return err
	}
	// A server nobody stops must not outlive the benchmark for long.
	time.AfterFunc(*timeout, func() { os.Exit(0) })

	ln, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_ = unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(ln, sa); err != nil {
		return fmt.Errorf("bind %s: %w", *listen, err)
	}
	if err := unix.Listen(ln, 16); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "tcprr: listening on", *listen)
	for {
		fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go serve(fd)
	}
}

// serve answers every byte read with one byte until the peer closes.
func serve(fd int) {
	runtime.LockOSThread()
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			return
		}
		if _, err := writeFull(fd, b[:]); err != nil {
			return
		}
	}
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	dst := fs.String("dst", "", "server IPv4:port or [IPv6]:port")
	count := fs.Int("count", 20000, "round trips to time")
	duration := fs.Duration("duration", 5*time.Second, "stop timing after this long even if -count is not reached")
	warmup := fs.Int("warmup", 200, "untimed round trips first (ARP, caches, TCP state)")
	fs.Parse(args)
	family, sa, err := parseAddr("dst", *dst)
	if err != nil {
		return err
	}
	if *count < 1 || *warmup < 0 || *duration <= 0 {
		return errors.New("bad -count, -warmup or -duration")
	}

	runtime.LockOSThread()
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Linux bounds a blocking connect by the send timeout, and every read
	// by the receive timeout: a dead path ends the run instead of hanging.
	tv := unix.NsecToTimeval((3 * time.Second).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect %s: %w", *dst, err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)

	var b [1]byte
	roundTrip := func() error {
		b[0] = 'q'
		if _, err := writeFull(fd, b[:]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		for {
			n, err := unix.Read(fd, b[:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if n != 1 {
				return errors.New("connection closed by the server")
			}
			return nil
		}
	}
	for i := 0; i < *warmup; i++ {
		if err := roundTrip(); err != nil {
			return err
		}
	}
	rtts := make([]time.Duration, 0, *count)
	start := time.Now()
	stop := start.Add(*duration)
	for len(rtts) < *count {
		t0 := time.Now()
		if !t0.Before(stop) {
			break
		}
		if err := roundTrip(); err != nil {
			return err
		}
		rtts = append(rtts, time.Since(t0))
	}
	secs := time.Since(start).Seconds()
	slices.Sort(rtts)
	var sum time.Duration
	for _, d := range rtts {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return json.NewEncoder(os.Stdout).Encode(benchtool.RRResult{
		RoundTrips: len(rtts), Seconds: secs,
		P50: us(percentile(rtts, 50)), P90: us(percentile(rtts, 90)),
		P99: us(percentile(rtts, 99)), P999: us(percentile(rtts, 99.9)),
		Mean: us(sum / time.Duration(len(rtts))), Min: us(rtts[0]), Max: us(rtts[len(rtts)-1]),
	})
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func writeFull(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(fd, b[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}
