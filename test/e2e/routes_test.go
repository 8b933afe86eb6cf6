package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// exactRoute is node ns's main-table route for dst as `ip route` prints
// it, or "".
func exactRoute(t *testing.T, ns *nstest.Netns, dst string) string {
	t.Helper()
	return strings.TrimSpace(ns.MustRun(t, "ip", "-4", "route", "show", "exact", dst))
}

// vxdpRoutes is what node ns routes with vxdp's protocol number.
func vxdpRoutes(t *testing.T, ns *nstest.Netns) string {
	t.Helper()
	return strings.TrimSpace(ns.MustRun(t, "ip", "-4", "route", "show", "proto", "208"))
}

// vxdp never takes a route it did not install: a node, a list of nodes or
// a VTEP whose CIDR the node's main table already routes for someone else
// is refused with that route named, the route stays as it was, and the
// overlay keeps working. What vxdp installs it removes (node delete,
// agent stop) while the foreign routes stay.
func TestRoutesNotTaken(t *testing.T) {
	c := newClusterWith(t, [2]string{"", ""})
	n1 := c.node[0]
	// An operator's route through the underlay peer and a dev route of
	// another daemon.
	n1.MustRun(t, "ip", "route", "add", "10.1.99.0/24", "via", "10.169.72.238")
	n1.MustRun(t, "ip", "route", "add", "10.1.98.0/24", "dev", "eth0", "proto", "static", "metric", "50")
	foreign := map[string]string{"10.1.99.0/24": exactRoute(t, n1, "10.1.99.0/24"), "10.1.98.0/24": exactRoute(t, n1, "10.1.98.0/24")}
	connected := exactRoute(t, n1, "10.169.72.0/24")
	tunnels := c.mustCLI(0, "tunnel", "list")
	foreignIntact := func(t *testing.T) {
		t.Helper()
		for dst, want := range foreign {
			if got := exactRoute(t, n1, dst); got != want {
				t.Fatalf("route %s changed:\n%s\nnow:\n%s", dst, want, got)
			}
		}
		if got := exactRoute(t, n1, "10.169.72.0/24"); got != connected {
			t.Fatalf("underlay route changed:\n%s\nnow:\n%s", connected, got)
		}
	}

	t.Run("refused", func(t *testing.T) {
		nodes := filepath.Join(c.dir, "taken.yaml")
		write(t, nodes, "- {name: n5, ip: 10.169.72.245, pod-cidr: 10.1.5.0/24}\n- {name: n6, ip: 10.169.72.246, pod-cidr: 10.1.98.0/24}\n")
		for _, tt := range []struct {
			args []string
			want []string
		}{
			{[]string{"node", "add", "n9", "--ip", "10.169.72.249", "--pod-cidr", "10.1.99.0/24"},
				[]string{"node n9: route 10.1.99.0/24: already exists in the main table (via 10.169.72.238 dev eth0 proto boot) and vxdp did not install it"}},
			{[]string{"node", "add", "--file", nodes},
				[]string{"node n6: route 10.1.98.0/24:", "dev eth0 proto static metric 50", "vxdp did not install it"}},
			{[]string{"vtep", "add", "10.1.99.0/24", "--endpoint", "10.169.72.236", "--mac", "82:36:4c:98:2e:56"},
				[]string{"vtep 10.1.99.0/24: route 10.1.99.0/24:", "via 10.169.72.238 dev eth0", "vxdp did not install it"}},
		} {
			out, err := c.cli(0, tt.args...)
			if exitCode(err) != 1 {
				t.Errorf("%v: exit %d, want 1\n%s", tt.args, exitCode(err), out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("%v: the refusal does not say %q:\n%s", tt.args, w, out)
				}
			}
		}
		foreignIntact(t)
		if out := c.mustCLI(0, "tunnel", "list"); out != tunnels {
			t.Fatalf("refused nodes changed the tunnel map:\n%s", out)
		}
		if out := c.mustCLI(0, "vtep", "list"); strings.Contains(out, "10.1.99.0") {
			t.Fatalf("refused vtep listed:\n%s", out)
		}
		if r := exactRoute(t, n1, "10.1.5.0/24"); r != "" {
			t.Fatalf("a refused list installed %q", r)
		}
		c.mustPing("pod1a", "10.1.2.20")
		c.mustPing("node1", "10.1.2.21")
		c.mustPing("node1", "10.169.72.238")
	})

	t.Run("node delete removes vxdp's route only", func(t *testing.T) {
		c.mustCLI(0, "node", "add", "n3", "--ip", "10.169.72.243", "--pod-cidr", "10.1.3.0/24")
		if r := exactRoute(t, n1, "10.1.3.0/24"); !regexp.MustCompile(`^10\.1\.3\.0/24 dev vxdp_host proto 208 .*mtu 1450$`).MatchString(r) {
			t.Fatalf("route of an added node: %q", r)
		}
		c.mustCLI(0, "node", "del", "n3")
		if r := exactRoute(t, n1, "10.1.3.0/24"); r != "" {
			t.Fatalf("route left after node del: %q", r)
		}
		foreignIntact(t)
	})

	t.Run("agent stop removes vxdp's routes only", func(t *testing.T) {
		if r := vxdpRoutes(t, n1); !strings.Contains(r, "10.1.2.0/24 dev vxdp_host") || !strings.Contains(r, "10.1.0.0/16 dev vxdp_host") {
			t.Fatalf("vxdp's routes before the stop:\n%s", r)
		}
		must(t, c.agents[0].Signal(syscall.SIGTERM))
		if code, err := c.agents[0].Wait(10 * time.Second); err != nil || code != 0 {
			t.Fatalf("agent stop: exit %d, %v\n%s", code, err, c.agents[0].Output())
		}
		if r := vxdpRoutes(t, n1); r != "" {
			t.Fatalf("routes left by a stopped agent:\n%s", r)
		}
		foreignIntact(t)
	})
}

// Native routing with auto-direct-node-routes: the `via` routes to the
// nodes go on a clean stop, are left for the next agent after kill -9 and
// taken over by it, and go with `vxdp agent --cleanup`; a foreign route
// stays through all of it.
func TestNativeViaRoutesLifecycle(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	n1, n2, p1 := lab.Netns("node1"), lab.Netns("node2"), lab.Netns("pod1")
	lab.Veth(n1, "eth0", "10.169.72.233/24", n2, "eth0", "10.169.72.238/24", 1500)
	n1.MustRun(t, "ip", "route", "add", "10.1.99.0/24", "via", "10.169.72.238")
	foreign := exactRoute(t, n1, "10.1.99.0/24")
	cfg := filepath.Join(dir, "node1.yaml")
	write(t, cfg, fmt.Sprintf(`node-name: node1
node-ip: 10.169.72.233
pod-cidr: 10.1.1.0/24
routing-mode: native
auto-direct-node-routes: "true"
state-dir: %s
nodes:
  - {name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}
endpoints:
  - {name: pod1, ip: 10.1.1.10, netns: %s}
`, filepath.Join(dir, "state"), p1.Path))
	sock := filepath.Join(dir, "node1.sock")
	start := func(name string) *nstest.Proc {
		p := lab.Start(n1, name, vxdpBin, "agent", "--config", cfg, "--socket", sock)
		waitAgent(t, p, sock)
		return p
	}
	const via = "10.1.2.0/24 via 10.169.72.238 dev eth0"
	check := func(when, want string) {
		t.Helper()
		if got := vxdpRoutes(t, n1); got != want {
			t.Fatalf("%s: vxdp's routes %q, want %q", when, got, want)
		}
		if got := exactRoute(t, n1, "10.1.99.0/24"); got != foreign {
			t.Fatalf("%s: foreign route %q, was %q", when, got, foreign)
		}
	}

	a := start("agent")
	check("running", via)
	must(t, a.Signal(syscall.SIGTERM))
	if code, err := a.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v\n%s", code, err, a.Output())
	}
	check("after a clean stop", "")

	a = start("agent-2")
	must(t, a.Signal(syscall.SIGKILL))
	a.Wait(5 * time.Second)
	check("after kill -9", via)
	a = start("agent-3") // takes the route over rather than refusing it
	check("after the restart", via)
	if out, err := runCLI(sock, "status"); err != nil {
		t.Fatalf("status after the restart: %v\n%s", err, out)
	}
	must(t, a.Signal(syscall.SIGKILL))
	a.Wait(5 * time.Second)
	if out, err := n1.Run(vxdpBin, "agent", "--config", cfg, "--socket", sock, "--cleanup"); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	check("after --cleanup", "")
	if _, err := os.Stat(filepath.Join(dir, "state", "state-10.169.72.233.json")); !os.IsNotExist(err) {
		t.Fatalf("state file after cleanup: %v", err)
	}
}
