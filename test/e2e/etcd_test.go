package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Three agents with no static peers find each other through a real etcd
// on the underlay: pods ping across all pairs; a killed agent leaves the
// others' tunnel maps within the lease TTL and comes back when restarted;
// etcd going away for a while does not stop pod traffic, and the agents
// catch up when it returns. node3 claims its pod CIDR (pod-cidr: auto).
func TestEtcdMembership(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Fatal("etcd not installed (make deps installs etcd-server)")
	}
	lab := nstest.New(t)
	dir := t.TempDir()
	kv := lab.Netns("etcd")
	names := []string{"node1", "node2", "node3"}
	ips := []string{"10.169.72.233", "10.169.72.238", "10.169.72.240"}
	nodes := make([]*nstest.Netns, 3)
	pods := make([]*nstest.Netns, 3)
	hosts := []bridgeHost{{kv, "10.169.72.10/24"}}
	for i := range names {
		nodes[i] = lab.Netns(names[i])
		pods[i] = lab.Netns("p" + names[i])
		hosts = append(hosts, bridgeHost{nodes[i], ips[i] + "/24"})
	}
	bridge(t, lab, hosts)
	data := filepath.Join(dir, "etcd-data")
	etcdRuns := 0
	startEtcd := func() *nstest.Proc {
		etcdRuns++
		return startEtcdOn(t, lab, kv, "10.169.72.10", data, etcdRuns)
	}
	etcd := startEtcd()

	podIP := []string{"10.1.1.10", "10.1.2.10", ""}
	sockets := make([]string, 3)
	configs := make([]string, 3)
	agents := make([]*nstest.Proc, 3)
	for i := range names {
		podCIDR := fmt.Sprintf("10.1.%d.0/24", i+1)
		ep := fmt.Sprintf("\nendpoints:\n  - {name: pod, ip: %s, netns: %s}", podIP[i], pods[i].Path)
		if i == 2 {
			podCIDR, ep = "auto", "" // node3 claims its block and gets its pod afterwards
		}
		configs[i] = filepath.Join(dir, names[i]+".yaml")
		write(t, configs[i], fmt.Sprintf(`node-name: %s
node-ip: %s
pod-cidr: %s
cluster-pool-ipv4-cidr: 10.1.0.0/16
cluster-pool-ipv4-mask-size: 24
state-dir: %s
kvstore: etcd
kvstore-opt: {etcd.endpoints: "http://10.169.72.10:2379", etcd.lease-ttl: "3s"}%s
`, names[i], ips[i], podCIDR, filepath.Join(dir, "state-"+names[i]), ep))
		sockets[i] = filepath.Join(dir, names[i]+".sock")
	}
	starts := 0
	start := func(i int) {
		starts++
		agents[i] = lab.Start(nodes[i], fmt.Sprintf("%s-%d", names[i], starts), vxdpBin, "agent", "--config", configs[i], "--socket", sockets[i])
		waitAgent(t, agents[i], sockets[i])
	}
	for i := range names {
		start(i)
	}
	// node3's pod goes into the block it claimed.
	var status struct {
		PodCIDR string `json:"pod_cidr"`
	}
	out, err := runCLI(sockets[2], "status", "-o", "json")
	must(t, err)
	mustJSON(t, out, &status)
	if !strings.HasPrefix(status.PodCIDR, "10.1.") || status.PodCIDR == "10.1.1.0/24" || status.PodCIDR == "10.1.2.0/24" {
		t.Fatalf("node3 claimed %q", status.PodCIDR)
	}
	p3 := strings.TrimSuffix(status.PodCIDR, "0/24") + "10"
	podIP[2] = p3
	if out, err := runCLI(sockets[2], "endpoint", "add", "pod", "--ip", p3, "--netns", pods[2].Path); err != nil {
		t.Fatal(err, out)
	}

	waitTunnels := func(i int, want []string, absent []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var out string
		for time.Now().Before(deadline) {
			out, _ = runCLI(sockets[i], "tunnel", "list")
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(out, w)
			}
			for _, a := range absent {
				ok = ok && !strings.Contains(out, a)
			}
			if ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s tunnel list, want %v without %v:\n%s", names[i], want, absent, out)
	}
	waitTunnels(0, []string{"10.169.72.238:0", "10.169.72.240:0"}, nil)
	waitTunnels(1, []string{"10.169.72.233:0", "10.169.72.240:0"}, nil)
	waitTunnels(2, []string{"10.169.72.233:0", "10.169.72.238:0"}, nil)
	if out, _ := runCLI(sockets[0], "node", "list"); !strings.Contains(out, "etcd") {
		t.Fatalf("node list does not say where entries came from:\n%s", out)
	}
	pingAll := func() {
		t.Helper()
		for i := range pods {
			for j := range pods {
				if i == j {
					continue
				}
				if out, err := nstest.Ping(pods[i], "-c", "2", "-i", "0.2", "-W", "2", podIP[j]); err != nil {
					t.Fatalf("ping %s -> %s: %v\n%s", names[i], podIP[j], err, out)
				}
			}
		}
	}
	pingAll()

	t.Run("a killed agent leaves within the TTL and comes back", func(t *testing.T) {
		must(t, agents[1].Signal(syscall.SIGKILL))
		agents[1].Wait(5 * time.Second)
		killed := time.Now()
		waitTunnels(0, []string{"10.169.72.240:0"}, []string{"10.169.72.238:0"})
		waitTunnels(2, []string{"10.169.72.233:0"}, []string{"10.169.72.238:0"})
		t.Logf("node2 gone from the others after %v (TTL 3 s)", time.Since(killed))
		start(1)
		waitTunnels(0, []string{"10.169.72.238:0"}, nil)
		waitTunnels(2, []string{"10.169.72.238:0"}, nil)
		pingAll()
	})

	t.Run("etcd away for a while", func(t *testing.T) {
		must(t, etcd.Signal(syscall.SIGKILL))
		etcd.Wait(5 * time.Second)
		gone := time.Now()
		for time.Since(gone) < 6*time.Second {
			pingAll()
		}
		out, _ := runCLI(sockets[0], "status")
		if !strings.Contains(out, "unreachable") {
			t.Fatalf("status does not report etcd unreachable:\n%s", out)
		}
		etcd = startEtcd()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			out, _ = runCLI(sockets[0], "status")
			if strings.Contains(out, "etcd connected") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(out, "etcd connected") {
			t.Fatalf("agent did not reconnect:\n%s", out)
		}
		waitTunnels(0, []string{"10.169.72.238:0", "10.169.72.240:0"}, nil)
		pingAll()
	})
}

// bridgeHost is a namespace and the address (with prefix length) of its
// eth0 on the bridge.
type bridgeHost struct {
	ns   *nstest.Netns
	addr string
}

// bridge joins the hosts' eth0 on one bridge in a switch namespace, the
// underlay of an etcd cluster.
func bridge(t *testing.T, lab *nstest.TestLab, hosts []bridgeHost) {
	t.Helper()
	sw := lab.Netns("switch")
	sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun(t, "ip", "link", "set", "br0", "up")
	for i, h := range hosts {
		port := fmt.Sprintf("p%d", i)
		lab.Veth(h.ns, "eth0", h.addr, sw, port, "", 1500)
		sw.MustRun(t, "ip", "link", "set", port, "master", "br0")
	}
}

// etcdURL is the client URL of an etcd listening on addr.
func etcdURL(addr string) string {
	return "http://" + net.JoinHostPort(addr, "2379")
}

// startEtcdOn runs etcd in ns, serving clients on addr with its data in
// data (the run number names the process), and waits until it is healthy.
func startEtcdOn(t *testing.T, lab *nstest.TestLab, ns *nstest.Netns, addr, data string, run int) *nstest.Proc {
	t.Helper()
	url := etcdURL(addr)
	p := lab.Start(ns, fmt.Sprintf("etcd-%d", run), "etcd", "--name", "default", "--data-dir", data,
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := ns.Run("curl", "-g", "-s", "-m", "1", url+"/health"); err == nil && strings.Contains(out, `"health":"true"`) {
			return p
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("etcd did not start:\n%s", p.Output())
	return nil
}
