package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Every way the agent can fail to start ends with one line naming the
// cause, exit status 1 (2 for an invalid configuration), and nothing left
// behind: no vxdp_host, no pod device, no route, no XDP program, no socket
// or state file, IP forwarding as it was.
func TestAgentFailedStarts(t *testing.T) {
	lab := nstest.New(t)
	node, peer, pod := lab.Netns("node"), lab.Netns("peer"), lab.Netns("pod")
	lab.Veth(node, "eth0", "10.169.80.1/24", peer, "eth0", "10.169.80.2/24", 1500)
	cfgDir, run := t.TempDir(), t.TempDir()
	sock := filepath.Join(run, "vxdp.sock")
	stateDir := filepath.Join(run, "state")
	notDir := filepath.Join(run, "file")
	write(t, notDir, "not a directory\n")
	missingNetns := "/run/netns/" + lab.Prefix() + "missing"

	// conf is a valid configuration of the node with a remote node, the
	// cluster route and a pod; extra keys are appended.
	conf := func(extra string) string {
		return fmt.Sprintf(`node-name: n1
node-ip: 10.169.80.1
pod-cidr: 10.1.1.0/24
cluster-pool-ipv4-cidr: 10.1.0.0/16
state-dir: %s
nodes:
  - {name: n2, ip: 10.169.80.2, pod-cidr: 10.1.2.0/24}
%s`, stateDir, extra)
	}
	okPod := fmt.Sprintf("endpoints:\n  - {name: pa, ip: 10.1.1.10, netns: %s}\n", pod.Path)
	badPod := fmt.Sprintf("endpoints:\n  - {name: pa, ip: 10.1.1.10, netns: %s}\n", missingNetns)

	// snapshot is everything a start could leave behind.
	snapshot := func() string {
		var b strings.Builder
		for _, c := range [][]string{{"ip", "-o", "link"}, {"ip", "-4", "-o", "addr"}, {"ip", "-4", "route", "show", "table", "all"},
			{"sysctl", "net.ipv4.ip_forward"}, {"sysctl", "net.ipv6.conf.all.forwarding"}, {"ip", "-6", "route", "show", "proto", "208"}} {
			out, err := node.Run(c...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
			b.WriteString(out)
		}
		out, _ := pod.Run("ip", "-o", "link")
		b.WriteString(out)
		filepath.Walk(run, func(p string, fi os.FileInfo, err error) error {
			if err == nil {
				fmt.Fprintf(&b, "%s %v\n", p, fi.Mode())
			}
			return nil
		})
		return b.String()
	}
	// Bound sockets and links carry counters and timers in their output
	// now and then; the lines compared are stable.
	clean := snapshot()

	tests := []struct {
		name  string
		yaml  string
		args  []string
		setup func(t *testing.T) (undo func()) // makes the obstacle
		code  int
		want  []string
	}{
		{name: "node-ip on no device", yaml: strings.Replace(conf(okPod), "node-ip: 10.169.80.1", "node-ip: 10.169.99.9", 1),
			code: 1, want: []string{"node-ip 10.169.99.9", "no device"}},
		{name: "underlay device missing", yaml: conf(okPod + "device: nosuch0\n"),
			code: 1, want: []string{"device nosuch0"}},
		{name: "tunnel port taken", yaml: conf(okPod + "underlay: udp\n"),
			setup: func(t *testing.T) func() { return bindIn(t, node, "udp", "10.169.80.1:8472") },
			code:  1, want: []string{"10.169.80.1:8472", "in use"}},
		{name: "metrics address taken", yaml: conf(okPod + "prometheus-serve-addr: 127.0.0.1:9962\n"),
			setup: func(t *testing.T) func() { return bindIn(t, node, "tcp", "127.0.0.1:9962") },
			code:  1, want: []string{"prometheus-serve-addr 127.0.0.1:9962", "in use"}},
		{name: "api socket under a file", yaml: conf(okPod), args: []string{"--socket", filepath.Join(notDir, "vxdp.sock")},
			code: 1, want: []string{"api socket", "not a directory"}},
		{name: "api socket path is a file", yaml: conf(okPod), args: []string{"--socket", notDir},
			code: 1, want: []string{"api socket", "not a socket"}},
		{name: "state dir under a file", yaml: strings.Replace(conf(okPod), "state-dir: "+stateDir, "state-dir: "+filepath.Join(notDir, "state"), 1),
			code: 1, want: []string{"state-dir", "not a directory"}},
		{name: "afxdp forced on a jumbo MTU", yaml: conf(okPod + "underlay: afxdp\n"),
			setup: func(t *testing.T) func() {
				node.MustRun(t, "ip", "link", "set", "eth0", "mtu", "9000")
				return func() { node.MustRun(t, "ip", "link", "set", "eth0", "mtu", "1500") }
			},
			code: 1, want: []string{"underlay afxdp on eth0"}},
		// These fail after the engine runs, with devices, routes and a
		// pod device made: all of it is undone.
		{name: "pod namespace missing", yaml: conf(okPod + fmt.Sprintf("  - {name: pb, ip: 10.1.1.11, netns: %s}\n", missingNetns)),
			code: 1, want: []string{"endpoint pb", missingNetns}},
		{name: "native: pod namespace missing", yaml: conf(badPod + "routing-mode: native\nipv4-native-routing-cidr: 10.1.0.0/16\nauto-direct-node-routes: true\n"),
			code: 1, want: []string{"endpoint pa", missingNetns}},
		{name: "native dual-stack: pod namespace missing", yaml: strings.Replace(conf(badPod+"routing-mode: native\ncluster-pool-ipv6-cidr: fd00:1::/32\n"),
			"pod-cidr: 10.1.1.0/24", `pod-cidr: "10.1.1.0/24,fd00:1:1::/64"`, 1),
			code: 1, want: []string{"endpoint pa", missingNetns}},
		{name: "config file missing", args: []string{"--config", filepath.Join(cfgDir, "nonexistent.yaml")},
			code: 2, want: []string{"nonexistent.yaml"}},
		{name: "config file unreadable", args: []string{"--config", cfgDir},
			code: 2, want: []string{cfgDir, "directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--socket", sock}
			if tt.yaml != "" {
				path := filepath.Join(cfgDir, strings.NewReplacer(" ", "_", ":", "").Replace(tt.name)+".yaml")
				write(t, path, tt.yaml)
				args = append(args, "--config", path)
			}
			args = append(args, tt.args...)
			if tt.setup != nil {
				undo := tt.setup(t)
				defer undo()
			}
			out, code := runAgent(t, node, args...)
			checkFailure(t, out, code, tt.code, tt.want)
			if tt.setup == nil {
				if now := snapshot(); now != clean {
					t.Errorf("left behind:\n%s", diffLines(clean, now))
				}
			}
		})
		if now := snapshot(); now != clean {
			t.Fatalf("after %q, left behind:\n%s", tt.name, diffLines(clean, now))
		}
	}

	// A second agent on the socket of a running one stops before it
	// touches anything; the running one goes on, and takes everything
	// with it when it stops.
	t.Run("another agent running", func(t *testing.T) {
		path := filepath.Join(cfgDir, "running.yaml")
		write(t, path, conf(okPod+"underlay: udp\n"))
		first := lab.Start(node, "agent", vxdpBin, "agent", "--config", path, "--socket", sock)
		waitAgent(t, first, sock)
		out, code := runAgent(t, node, "--config", path, "--socket", sock)
		checkFailure(t, out, code, 1, []string{"api socket " + sock, "another agent is listening"})
		if st, err := runCLI(sock, "status"); err != nil || !strings.Contains(st, "Endpoints:") {
			t.Fatalf("the running agent was disturbed: %v\n%s", err, st)
		}
		if out, _ := node.Run("ip", "link", "show", "vxdp_host"); !strings.Contains(out, "vxdp_host") {
			t.Fatalf("the running agent's vxdp_host is gone:\n%s", out)
		}
		must(t, first.Signal(syscall.SIGTERM))
		if code, err := first.Wait(10 * time.Second); err != nil || code != 0 {
			t.Fatalf("exit %d %v\n%s", code, err, first.Output())
		}
		// A clean stop keeps the (empty) state directory.
		os.Remove(stateDir)
		if now := snapshot(); now != clean {
			t.Fatalf("left behind by a clean stop:\n%s", diffLines(clean, now))
		}
	})
}

// runAgent runs `vxdp agent args...` in ns and returns its output and exit
// status.
func runAgent(t *testing.T, ns *nstest.Netns, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, vxdpBin, "agent"}, args...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("agent still running after 30 s:\n%s", out)
	}
	return string(out), exitCode(err)
}

// checkFailure wants exit status code and a last line "vxdp: ..." with
// every string of want: the cause, said once, at the end.
func checkFailure(t *testing.T, out string, got, code int, want []string) {
	t.Helper()
	if got != code {
		t.Errorf("exit %d, want %d\n%s", got, code, out)
	}
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Fatalf("panicked:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "vxdp: ") {
		t.Errorf("last line %q is not the error\n%s", last, out)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("message %q lacks %q", last, w)
		}
	}
}

// bindIn holds addr (network "udp" or "tcp") in ns until the returned
// function closes it.
func bindIn(t *testing.T, ns *nstest.Netns, network, addr string) func() {
	t.Helper()
	var closer interface{ Close() error }
	must(t, ns.Do(func() error {
		var err error
		if network == "udp" {
			closer, err = net.ListenPacket(network, addr)
		} else {
			closer, err = net.Listen(network, addr)
		}
		return err
	}))
	return func() { closer.Close() }
}

// diffLines lists the lines only in a (-) or only in b (+).
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l := range ma {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
