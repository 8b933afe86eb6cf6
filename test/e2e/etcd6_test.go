package e2e

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Three dual-stack agents on an IPv6 underlay, every one with pod-cidr:
// auto for both families and no static peers: each claims an IPv4 and an
// IPv6 block in etcd, the mesh forms from the records, IPv6 (and IPv4)
// pods reach each other across nodes, a node's record read back from etcd
// carries its IPv6 underlay address and IPv6 pod CIDR, and a restarted
// node gets its blocks back.
func TestEtcdDualStack(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Fatal("etcd not installed (make deps installs etcd-server)")
	}
	lab := nstest.New(t)
	dir := t.TempDir()
	kv := lab.Netns("etcd")
	const etcdIP = "fd69:72::10"
	names := []string{"node1", "node2", "node3"}
	ips := []string{"fd69:72::233", "fd69:72::238", "fd69:72::240"}
	nodes := make([]*nstest.Netns, 3)
	pods := make([]*nstest.Netns, 3)
	hosts := []bridgeHost{{kv, etcdIP + "/64"}}
	for i := range names {
		nodes[i] = lab.Netns(names[i])
		pods[i] = lab.Netns("p" + names[i])
		hosts = append(hosts, bridgeHost{nodes[i], ips[i] + "/64"})
	}
	bridge(t, lab, hosts)
	startEtcdOn(t, lab, kv, etcdIP, filepath.Join(dir, "etcd-data"), 1)

	sockets := make([]string, 3)
	configs := make([]string, 3)
	agents := make([]*nstest.Proc, 3)
	for i := range names {
		configs[i] = filepath.Join(dir, names[i]+".yaml")
		write(t, configs[i], fmt.Sprintf(`node-name: %s
node-ip: %s
pod-cidr: auto
cluster-pool-ipv4-cidr: 10.1.0.0/16
cluster-pool-ipv4-mask-size: 24
cluster-pool-ipv6-cidr: fd00:1::/48
cluster-pool-ipv6-mask-size: 64
state-dir: %s
kvstore: etcd
kvstore-opt: {etcd.endpoints: "%s", etcd.lease-ttl: "3s"}
`, names[i], ips[i], filepath.Join(dir, "state-"+names[i]), etcdURL(etcdIP)))
		sockets[i] = filepath.Join(dir, names[i]+".sock")
	}
	starts := 0
	start := func(i int) {
		starts++
		agents[i] = lab.Start(nodes[i], fmt.Sprintf("%s-%d", names[i], starts), vxdpBin, "agent", "--config", configs[i], "--socket", sockets[i])
		waitAgent(t, agents[i], sockets[i])
	}
	type status struct {
		PodCIDR  netip.Prefix `json:"pod_cidr"`
		PodCIDR6 netip.Prefix `json:"pod_cidr6"`
	}
	statusOf := func(i int) status {
		t.Helper()
		out, err := runCLI(sockets[i], "status", "-o", "json")
		must(t, err)
		var st status
		mustJSON(t, out, &st)
		return st
	}
	v4pool, v6pool := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/48")
	claimed := make([]status, 3)
	pod4, pod6 := make([]string, 3), make([]string, 3)
	seen := map[netip.Prefix]string{}
	for i := range names {
		start(i)
		st := statusOf(i)
		if st.PodCIDR.Bits() != 24 || !v4pool.Contains(st.PodCIDR.Addr()) || st.PodCIDR6.Bits() != 64 || !v6pool.Contains(st.PodCIDR6.Addr()) {
			t.Fatalf("%s claimed %s and %s", names[i], st.PodCIDR, st.PodCIDR6)
		}
		for _, p := range []netip.Prefix{st.PodCIDR, st.PodCIDR6} {
			if other, dup := seen[p]; dup {
				t.Fatalf("%s and %s both hold %s", other, names[i], p)
			}
			seen[p] = names[i]
		}
		claimed[i] = st
		pod4[i] = st.PodCIDR.Addr().Next().Next().String() // .2: .1 is vxdp_host's
		pod6[i] = st.PodCIDR6.Addr().Next().Next().String()
		if out, err := runCLI(sockets[i], "endpoint", "add", "pod", "--ip", pod4[i], "--ip", pod6[i], "--netns", pods[i].Path); err != nil {
			t.Fatal(err, out)
		}
	}
	t.Logf("claimed: %+v", claimed)

	// tunnelRows are the rows node j's pods take in a peer's tunnel map.
	tunnelRows := func(j int) []string {
		return []string{
			fmt.Sprintf("[%s]:0", claimed[j].PodCIDR6.Addr()),
			fmt.Sprintf("[%s]:0", ips[j]),
			claimed[j].PodCIDR.Addr().String() + ":0",
		}
	}
	waitTunnels := func(i int, want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var out string
		for time.Now().Before(deadline) {
			out, _ = runCLI(sockets[i], "tunnel", "list")
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(out, w)
			}
			if ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s tunnel list, want %v:\n%s", names[i], want, out)
	}
	waitMesh := func() {
		t.Helper()
		for i := range names {
			var want []string
			for j := range names {
				if j != i {
					want = append(want, tunnelRows(j)...)
				}
			}
			waitTunnels(i, want)
		}
	}
	waitMesh()
	if out, _ := runCLI(sockets[0], "node", "list"); !strings.Contains(out, "etcd") ||
		!strings.Contains(out, claimed[1].PodCIDR.String()+","+claimed[1].PodCIDR6.String()) {
		t.Fatalf("node list lacks node2's etcd entry with both CIDRs:\n%s", out)
	}
	pingAll := func() {
		t.Helper()
		for i := range pods {
			for j := range pods {
				if i == j {
					continue
				}
				if out, err := nstest.Ping(pods[i], "-c", "2", "-i", "0.2", "-W", "2", pod6[j]); err != nil {
					t.Fatalf("ping -6 %s -> %s: %v\n%s", names[i], pod6[j], err, out)
				}
			}
		}
	}
	pingAll()
	if out, err := nstest.Ping(pods[0], "-c", "2", "-i", "0.2", "-W", "2", pod4[2]); err != nil {
		t.Fatalf("ping %s -> %s: %v\n%s", names[0], pod4[2], err, out)
	}
	transfer(t, pods[0], pods[1], pod6[1], 7021, 16<<20, time.Minute)

	t.Run("the record in etcd", func(t *testing.T) {
		var rec struct {
			Name     string       `json:"name"`
			IP       netip.Addr   `json:"ip"`
			PodCIDR  netip.Prefix `json:"pod_cidr"`
			PodCIDR6 netip.Prefix `json:"pod_cidr6"`
		}
		mustJSON(t, etcdGet(t, kv, etcdIP, "/vxdp/v1/nodes/node1"), &rec)
		if rec.Name != "node1" || rec.IP != netip.MustParseAddr(ips[0]) || rec.PodCIDR != claimed[0].PodCIDR || rec.PodCIDR6 != claimed[0].PodCIDR6 {
			t.Fatalf("node1's record %+v, want ip %s and pod CIDRs %s, %s", rec, ips[0], claimed[0].PodCIDR, claimed[0].PodCIDR6)
		}
		if got := etcdGet(t, kv, etcdIP, "/vxdp/v1/podcidr6-owners/node1"); got != claimed[0].PodCIDR6.String() {
			t.Fatalf("node1's IPv6 claim %q, want %s", got, claimed[0].PodCIDR6)
		}
	})

	t.Run("a restarted node keeps its blocks", func(t *testing.T) {
		must(t, agents[1].Signal(syscall.SIGTERM))
		agents[1].Wait(10 * time.Second)
		start(1)
		if st := statusOf(1); st != claimed[1] {
			t.Fatalf("node2 came back with %+v, had %+v", st, claimed[1])
		}
		if out, err := runCLI(sockets[1], "endpoint", "add", "pod", "--ip", pod4[1], "--ip", pod6[1], "--netns", pods[1].Path); err != nil {
			t.Fatal(err, out)
		}
		waitMesh()
		pingAll()
	})
}

// etcdGet reads key from the etcd at addr through its JSON gateway (no
// etcdctl needed), from inside ns.
func etcdGet(t *testing.T, ns *nstest.Netns, addr, key string) string {
	t.Helper()
	body := fmt.Sprintf(`{"key":%q}`, base64.StdEncoding.EncodeToString([]byte(key)))
	out, err := ns.Run("curl", "-g", "-s", "-m", "3", "-X", "POST", etcdURL(addr)+"/v3/kv/range", "-d", body)
	if err != nil {
		t.Fatalf("etcd range %s: %v\n%s", key, err, out)
	}
	var resp struct {
		KVs []struct {
			Value string `json:"value"`
		} `json:"kvs"`
	}
	mustJSON(t, out, &resp)
	if len(resp.KVs) != 1 {
		t.Fatalf("etcd has no %s:\n%s", key, out)
	}
	v, err := base64.StdEncoding.DecodeString(resp.KVs[0].Value)
	must(t, err)
	return string(v)
}
