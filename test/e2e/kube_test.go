package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vxdp/vxdp/internal/kubetest"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/k8s"
)

// Three agents with no static peers learn the cluster from a real
// kube-apiserver (and its etcd) on the underlay: Node objects made
// through the API give pod CIDRs and addresses, the mesh forms, pods
// ping each other and move a verified TCP stream; a deleted Node leaves
// every agent; the API server away for 10 s does not stop pod traffic,
// and a Node added after its return reaches every agent, except where a
// configured peer of the same name wins.
//
// node1 and node2 take their pod CIDRs from their Node objects (ipam:
// kubernetes); node3 has its pod-cidr in the file and names the server
// with k8s-api-server on top of its kubeconfig.
func TestKubernetesMembership(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	kubeNS := lab.Netns("kube")
	names := []string{"node1", "node2", "node3"}
	ips := []string{"10.169.72.233", "10.169.72.238", "10.169.72.240"}
	nodes := make([]*nstest.Netns, 3)
	pods := make([]*nstest.Netns, 3)
	hosts := []bridgeHost{{kubeNS, "10.169.72.10/24"}}
	for i := range names {
		nodes[i] = lab.Netns(names[i])
		pods[i] = lab.Netns("p" + names[i])
		hosts = append(hosts, bridgeHost{nodes[i], ips[i] + "/24"})
	}
	bridge(t, lab, hosts)
	srv := kubetest.Start(t, kubetest.Options{Lab: lab, Netns: kubeNS, Addr: netip.MustParseAddr("10.169.72.10")})
	kc := srv.Client()

	// The Node objects a kubelet and the node controller would make:
	// pod CIDRs in the spec, the address in the status. node4 has no
	// agent; node5 comes later.
	for i, name := range names {
		createNode(t, kc, name, fmt.Sprintf("10.1.%d.0/24", i+1), ips[i])
	}
	createNode(t, kc, "node4", "10.1.4.0/24", "10.169.72.244")

	podIP := []string{"10.1.1.10", "10.1.2.10", "10.1.3.10"}
	sockets := make([]string, 3)
	for i, name := range names {
		src := "ipam: kubernetes\nk8s-kubeconfig-path: " + srv.Kubeconfig + "\n"
		if i == 2 {
			src = "pod-cidr: 10.1.3.0/24\nk8s-kubeconfig-path: " + srv.Kubeconfig + "\nk8s-api-server: " + srv.URL + "\n"
		}
		static := ""
		if i == 0 {
			// A configured peer of the name node5 will have: it wins.
			static = "nodes:\n  - {name: node5, ip: 10.169.72.250, pod-cidr: 10.1.5.0/24}\n"
		}
		cfg := filepath.Join(dir, name+".yaml")
		write(t, cfg, fmt.Sprintf("node-name: %s\nnode-ip: %s\nstate-dir: %s\n%s%sendpoints:\n  - {name: pod, ip: %s, netns: %s}\n",
			name, ips[i], filepath.Join(dir, "state-"+name), src, static, podIP[i], pods[i].Path))
		sockets[i] = filepath.Join(dir, name+".sock")
		p := lab.Start(nodes[i], name, vxdpBin, "agent", "--config", cfg, "--socket", sockets[i])
		waitAgent(t, p, sockets[i])
	}

	waitTunnels := func(i int, want, absent []string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
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
	row := func(i int) string { return fmt.Sprintf("10.1.%d.0:0   %s:0", i+1, ips[i]) }
	for i := range names {
		var want []string
		for j := range names {
			if j != i {
				want = append(want, row(j))
			}
		}
		waitTunnels(i, append(want, "10.1.4.0:0   10.169.72.244:0"), nil, 20*time.Second)
	}
	out, _ := runCLI(sockets[0], "node", "list")
	if !strings.Contains(out, "kubernetes") {
		t.Fatalf("node list does not say the nodes came from kubernetes:\n%s", out)
	}
	t.Logf("node1 node list:\n%s", out)
	out, _ = runCLI(sockets[0], "status")
	if !strings.Contains(out, "kubernetes connected (4 nodes)") {
		t.Fatalf("status:\n%s", out)
	}
	// Each agent publishes its tunnel data on its own Node.
	deadline := time.Now().Add(15 * time.Second)
	for i, name := range names {
		var got map[string]string
		for time.Now().Before(deadline) {
			n, err := kc.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
			must(t, err)
			got = n.Annotations
			if got[k8s.AnnotationTunnelProtocol] == "vxlan" && got[k8s.AnnotationTunnelPort] == "8472" && got[k8s.AnnotationNodeIP] == ips[i] {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got[k8s.AnnotationTunnelProtocol] != "vxlan" || got[k8s.AnnotationTunnelPort] != "8472" || got[k8s.AnnotationNodeIP] != ips[i] {
			t.Fatalf("%s annotations: %v", name, got)
		}
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
	transfer(t, pods[0], pods[2], podIP[2], 5301, 32<<20, time.Minute)
	transfer(t, pods[1], pods[0], podIP[0], 5302, 32<<20, time.Minute)

	t.Run("a deleted Node leaves every agent", func(t *testing.T) {
		must(t, kc.CoreV1().Nodes().Delete(context.Background(), "node4", metav1.DeleteOptions{}))
		for i := range names {
			waitTunnels(i, nil, []string{"10.1.4.0:0"}, 10*time.Second)
			if out, _ := runCLI(sockets[i], "node", "list"); strings.Contains(out, "node4") {
				t.Fatalf("%s still lists node4:\n%s", names[i], out)
			}
		}
	})

	t.Run("api server away for 10 s", func(t *testing.T) {
		srv.StopAPIServer()
		gone := time.Now()
		for time.Since(gone) < 10*time.Second {
			pingAll()
		}
		out, _ := runCLI(sockets[0], "status")
		if !strings.Contains(out, "kubernetes unreachable") {
			t.Fatalf("status does not report the API server unreachable:\n%s", out)
		}
		srv.StartAPIServer()
		back := time.Now()
		// A change after the return reaches every agent; node1's
		// configured node5 stays as it is.
		createNode(t, kc, "node5", "10.1.5.0/24", "10.169.72.245")
		waitTunnels(1, []string{"10.1.5.0:0   10.169.72.245:0"}, nil, 60*time.Second)
		waitTunnels(2, []string{"10.1.5.0:0   10.169.72.245:0"}, nil, 60*time.Second)
		t.Logf("node5 reached node2 and node3 %v after the API server returned", time.Since(back).Round(100*time.Millisecond))
		waitTunnels(0, []string{"10.1.5.0:0   10.169.72.250:0"}, nil, 5*time.Second)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if out, _ = runCLI(sockets[0], "status"); strings.Contains(out, "kubernetes connected") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(out, "kubernetes connected") {
			t.Fatalf("node1 did not reconnect:\n%s", out)
		}
		if out, _ := runCLI(sockets[0], "node", "list"); !strings.Contains(out, "node5") || !strings.Contains(out, "config") {
			t.Fatalf("node1's configured node5 should stay:\n%s", out)
		}
		pingAll()
	})
}

// createNode makes a Node with one pod CIDR and an InternalIP, as a
// kubelet and the node controller would.
func createNode(t *testing.T, kc kubernetes.Interface, name, podCIDR, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
	}, metav1.CreateOptions{})
	must(t, err)
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	_, err = kc.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	must(t, err)
}
