package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/internal/nstest"
)

// cluster is the test topology: two nodes on a veth underlay with MTU
// 1500, two pods on each node.
//
//	pod1a 10.1.1.10 (id 1000)  pod1b 10.1.1.11 (id 1001)    pod2a 10.1.2.20 (id 2000)  pod2b 10.1.2.21 (256)
//	          \                 /                                     \                 /
//	     node1 10.169.72.233 eth0  <------- veth underlay ------->  eth0 10.169.72.238 node2
type cluster struct {
	t        *testing.T
	lab      *nstest.TestLab
	dir      string
	node     [2]*nstest.Netns
	pods     map[string]*nstest.Netns
	agents   [2]*nstest.Proc
	sockets  [2]string
	configs  [2]string
	nodeIPs  [2]string
	podCIDRs [2]string
	extra    [2]string // extra configuration lines per node
}

var podIPs = map[string]string{
	"pod1a": "10.1.1.10", "pod1b": "10.1.1.11",
	"pod2a": "10.1.2.20", "pod2b": "10.1.2.21",
}

// newClusterWith adds extra configuration lines to each node's file.
func newClusterWith(t *testing.T, extra [2]string) *cluster {
	t.Helper()
	c := newLab(t, [2]string{"10.1.1.0/24", "10.1.2.0/24"}, extra)
	c.configs[0] = c.writeConfig("node1", 0, 1, fmt.Sprintf(`
  - {name: pod1a, ip: 10.1.1.10, netns: %s, identity: 1000}
  - {name: pod1b, ip: 10.1.1.11, netns: %s, identity: "1001"}`, c.pods["pod1a"].Path, c.pods["pod1b"].Path))
	c.configs[1] = c.writeConfig("node2", 1, 0, fmt.Sprintf(`
  - {name: pod2a, ip: 10.1.2.20, netns: %s, identity: 2000}
  - {name: pod2b, ip: 10.1.2.21, netns: %s}`, c.pods["pod2a"].Path, c.pods["pod2b"].Path))
	c.startAgents("--log-level", "debug")
	return c
}

// newLab builds the namespaces of the picture above (nodes, pods and the
// veth underlay) for nodes with the given pod CIDRs; the caller writes the
// configurations and starts the agents.
func newLab(t *testing.T, podCIDRs, extra [2]string) *cluster {
	return newLabOn(t, "ipv4", podCIDRs, extra)
}

// underlayIPs are the nodes' underlay addresses per family, with the
// underlay's prefix length.
var underlayIPs = map[string]struct {
	ips  [2]string
	bits int
}{
	"ipv4": {[2]string{"10.169.72.233", "10.169.72.238"}, 24},
	"ipv6": {[2]string{"fd69:72::233", "fd69:72::238"}, 64},
}

// newLabOn is newLab with an underlay of the given family ("ipv4" or
// "ipv6").
func newLabOn(t *testing.T, underlay string, podCIDRs, extra [2]string) *cluster {
	t.Helper()
	u, ok := underlayIPs[underlay]
	if !ok {
		t.Fatalf("underlay %q", underlay)
	}
	c := &cluster{
		t:        t,
		lab:      nstest.New(t),
		dir:      t.TempDir(),
		pods:     map[string]*nstest.Netns{},
		nodeIPs:  u.ips,
		podCIDRs: podCIDRs,
		extra:    extra,
	}
	c.node[0] = c.lab.Netns("node1")
	c.node[1] = c.lab.Netns("node2")
	for _, p := range []string{"pod1a", "pod1b", "pod2a", "pod2b"} {
		c.pods[p] = c.lab.Netns(p)
	}
	c.lab.Veth(c.node[0], "eth0", fmt.Sprintf("%s/%d", c.nodeIPs[0], u.bits), c.node[1], "eth0", fmt.Sprintf("%s/%d", c.nodeIPs[1], u.bits), 1500)
	return c
}

// startAgents starts both nodes' agents on their configurations, with
// args added, and waits until each serves its API.
func (c *cluster) startAgents(args ...string) {
	c.t.Helper()
	for i := range c.node {
		c.sockets[i] = filepath.Join(c.dir, fmt.Sprintf("node%d.sock", i+1))
		c.agents[i] = c.lab.Start(c.node[i], fmt.Sprintf("agent%d", i+1),
			append([]string{vxdpBin, "agent", "--config", c.configs[i], "--socket", c.sockets[i]}, args...)...)
	}
	for i := range c.node {
		c.waitReady(i)
	}
}

func (c *cluster) writeConfig(name string, self, peer int, endpoints string) string {
	extra := c.extra[self]
	// A state directory of the test's own: the default one keys its files
	// by node IP, which tests running at the same time share.
	if !strings.Contains(extra, "state-dir:") {
		extra += "\nstate-dir: " + c.stateDir(name)
	}
	cfg := fmt.Sprintf(`%s
node-name: %s
node-ip: %s
pod-cidr: "%s"
cluster-pool-ipv4-cidr: 10.1.0.0/16
nodes:
  - {name: node%d, ip: "%s", pod-cidr: "%s"}
endpoints:%s
`, extra, name, c.nodeIPs[self], c.podCIDRs[self], peer+1, c.nodeIPs[peer], c.podCIDRs[peer], endpoints)
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// stateDir is the state directory writeConfig gives node name (unless
// its extra lines set one).
func (c *cluster) stateDir(name string) string { return filepath.Join(c.dir, "state-"+name) }

func (c *cluster) waitReady(i int) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if !c.agents[i].Alive() {
			c.t.Fatalf("agent %d exited:\n%s", i+1, c.agents[i].Output())
		}
		if _, err := c.cli(i, "status"); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("agent %d not ready:\n%s", i+1, c.agents[i].Output())
}

// cli runs the vxdp CLI against node i's agent.
func (c *cluster) cli(i int, args ...string) (string, error) {
	cmd := exec.Command(vxdpBin, append([]string{"--socket", c.sockets[i]}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) mustCLI(i int, args ...string) string {
	c.t.Helper()
	out, err := c.cli(i, args...)
	if err != nil {
		c.t.Fatalf("vxdp %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) stats(i int) map[string]any {
	c.t.Helper()
	var st struct {
		Drops map[string]float64 `json:"drops"`
	}
	out := c.mustCLI(i, "stats", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("stats json: %v\n%s", err, out)
	}
	m := map[string]any{}
	for k, v := range st.Drops {
		m[k] = v
	}
	return m
}

// offload returns the named offload of node i's device: an endpoint's
// name, or "underlay" for the tunnel device.
func (c *cluster) offload(i int, device, name string) api.Offload {
	c.t.Helper()
	var st api.Stats
	out := c.mustCLI(i, "stats", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("stats json: %v\n%s", err, out)
	}
	// With several underlay sockets, the one the flow hashed to counts.
	var best *api.Offload
	for _, d := range st.Devices {
		if d.Device != device && !(device == "underlay" && d.Kind == "underlay") {
			continue
		}
		for j, o := range d.Offloads {
			if o.Name == name && (best == nil || o.Count > best.Count) {
				best = &d.Offloads[j]
			}
		}
	}
	if best == nil {
		c.t.Fatalf("node%d: no offload %s on %s:\n%s", i+1, name, device, out)
	}
	return *best
}

func (c *cluster) drops(i int, reason string) int {
	v, _ := c.stats(i)[reason].(float64)
	return int(v)
}

func (c *cluster) ping(from string, to string, args ...string) (string, error) {
	ns := c.pods[from]
	if ns == nil {
		for i, n := range c.node {
			if from == fmt.Sprintf("node%d", i+1) {
				ns = n
			}
		}
	}
	return nstest.Ping(ns, append(append([]string{"-c", "3", "-i", "0.2", "-W", "2"}, args...), to)...)
}

func (c *cluster) mustPing(from, to string) {
	c.t.Helper()
	out, err := c.ping(from, to)
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		c.t.Fatalf("ping %s -> %s: %v\n%s", from, to, err, out)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
