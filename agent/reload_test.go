package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/identity"
)

const reloadBefore = baseConfig + `nodes:
  - {name: n2, ip: 192.0.2.2, pod-cidr: 10.1.2.0/24}
  - {name: n3, ip: 192.0.2.3, pod-cidr: 10.1.3.0/24}
  - {name: n4, ip: 192.0.2.4, pod-cidr: 10.1.4.0/24}
endpoints:
  - {name: pa, ip: 10.1.1.10, netns: /run/netns/pa}
  - {name: pb, ip: 10.1.1.11, netns: /run/netns/pb}
  - {name: pc, ip: 10.1.1.12, netns: /run/netns/pc}
`

// n2 stays, n3 moves, n4 goes, n5 comes; pa gets a policy (same device),
// pb a new address (a new device), pc goes, pd comes; VTEPs appear.
const reloadAfter = baseConfig + `enable-vtep: true
vtep-endpoint: 192.0.2.50
vtep-cidr: 10.9.0.0/24
vtep-mac: 02:00:00:00:00:50
nodes:
  - {name: n2, ip: 192.0.2.2, pod-cidr: 10.1.2.0/24}
  - {name: n3, ip: 192.0.2.33, pod-cidr: 10.1.3.0/24}
  - {name: n5, ip: 192.0.2.5, pod-cidr: 10.1.5.0/24}
endpoints:
  - {name: pa, ip: 10.1.1.10, netns: /run/netns/pa, allow-from: [2000]}
  - {name: pb, ip: 10.1.1.21, netns: /run/netns/pb}
  - {name: pd, ip: 10.1.1.13, netns: /run/netns/pd}
`

// Reload applies the difference between two configurations and touches
// neither what did not change nor what the API added.
func TestReloadDiff(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, reloadBefore), nil)
	ta.cfg.StateDir = t.TempDir()
	must(t, ta.nodes.add(ta.eng, []dataplane.NodeSpec{{Name: "api1", IP: addr("192.0.2.9"), PodCIDR: prefix("10.1.9.0/24")}}, fromAPI))
	must(t, ta.eng.AddEndpoint(dataplane.EndpointSpec{Name: "papi", IP: addr("10.1.1.99"), Netns: "/run/netns/papi"}))
	paDev, papiDev := ta.pod(t, "pa"), ta.pod(t, "papi")
	made := ta.devicesMade()

	after := loadConfig(t, reloadAfter)
	after.StateDir = ta.cfg.StateDir
	must(t, ta.Reload(after))

	wantNodes := map[string]string{
		"n2":   "config 192.0.2.2 10.1.2.0/24",
		"n3":   "config 192.0.2.33 10.1.3.0/24",
		"n5":   "config 192.0.2.5 10.1.5.0/24",
		"api1": "api 192.0.2.9 10.1.9.0/24",
	}
	if got := ta.nodeOrigins(); !maps.Equal(got, wantNodes) {
		t.Errorf("nodes %v, want %v", got, wantNodes)
	}
	eps := map[string]dataplane.Endpoint{}
	for _, ep := range ta.eng.Endpoints() {
		eps[ep.Name] = ep
	}
	if got := slices.Sorted(maps.Keys(eps)); !slices.Equal(got, []string{"pa", "papi", "pb", "pd"}) {
		t.Fatalf("endpoints %v", got)
	}
	if !slices.Equal(eps["pa"].AllowFrom, []identity.ID{2000}) || eps["pb"].IP != addr("10.1.1.21") {
		t.Errorf("pa %+v, pb %+v", eps["pa"], eps["pb"])
	}
	// pb and pd got new devices; pa and the API's papi kept theirs.
	if n := ta.devicesMade() - made; n != 2 {
		t.Errorf("%d devices made by the reload, want 2 (pb, pd)", n)
	}
	if ta.pod(t, "pa") != paDev || paDev.Closed() || papiDev.Closed() {
		t.Error("a device the reload should not touch was replaced or closed")
	}
	if !maps.Equal(ta.configEndpoints, map[string]bool{"pa": true, "pb": true, "pd": true}) {
		t.Errorf("config endpoints %v", ta.configEndpoints)
	}
	if vs := ta.eng.VTEPs(); len(vs) != 1 || vs[0].CIDR != prefix("10.9.0.0/24") || ta.vtepsFromAPI {
		t.Errorf("vteps %v (from api %v)", vs, ta.vtepsFromAPI)
	}

	// The state file keeps what the next agent needs: every endpoint
	// (papi as the API's) and the API's node.
	b, err := os.ReadFile(ta.statePath())
	must(t, err)
	var st state
	must(t, json.Unmarshal(b, &st))
	fromAPI := map[string]bool{}
	for _, ep := range st.Endpoints {
		fromAPI[ep.Name] = ep.FromAPI
	}
	if !maps.Equal(fromAPI, map[string]bool{"pa": false, "pb": false, "pd": false, "papi": true}) ||
		len(st.Nodes) != 1 || st.Nodes[0].Name != "api1" || st.VTEPs != nil {
		t.Errorf("state %s", b)
	}

	// The same file again changes nothing.
	made = ta.devicesMade()
	must(t, ta.Reload(withState(ta, loadConfig(t, reloadAfter))))
	if ta.devicesMade() != made || !maps.Equal(ta.nodeOrigins(), wantNodes) {
		t.Error("reloading an unchanged file changed the engine")
	}
}

// A change that needs a restart is refused before anything changes.
func TestReloadNeedsRestart(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, reloadBefore), nil)
	before := ta.nodeOrigins()
	for _, change := range []string{"tunnel-port: 4789\n", "routing-mode: native\n", "mtu: 1400\n", "host-ipv4: 10.1.1.254\n", "procfs: /host/proc\n"} {
		err := ta.Reload(withState(ta, loadConfig(t, reloadAfter+change)))
		if !errors.Is(err, ErrNeedsRestart) {
			t.Errorf("%q: %v, want ErrNeedsRestart", change, err)
		}
	}
	moved := loadConfig(t, reloadAfter)
	moved.StateDir = t.TempDir()
	if err := ta.Reload(moved); !errors.Is(err, ErrNeedsRestart) || !strings.Contains(err.Error(), "state-dir") {
		t.Errorf("state-dir changed: %v, want ErrNeedsRestart", err)
	}
	if !maps.Equal(ta.nodeOrigins(), before) || len(ta.eng.Endpoints()) != 3 || len(ta.eng.VTEPs()) != 0 {
		t.Error("a refused reload changed the engine")
	}
}

// A node of the file takes over an API-added node of the same name; if
// the reload is refused after all, the API's node is back as it was.
func TestReloadTakesOverAPINode(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
	ta.cfg.StateDir = t.TempDir()
	must(t, ta.nodes.add(ta.eng, []dataplane.NodeSpec{{Name: "n2", IP: addr("192.0.2.9"), PodCIDR: prefix("10.1.9.0/24")}}, fromAPI))
	after := loadConfig(t, baseConfig+"nodes:\n  - {name: n2, ip: 192.0.2.2, pod-cidr: 10.1.2.0/24}\n")
	after.StateDir = ta.cfg.StateDir
	must(t, ta.Reload(after))
	n, origin, ok := ta.nodes.lookup(ta.eng, "n2")
	if !ok || origin != fromConfig || n.IP != addr("192.0.2.2") || n.PodCIDR != prefix("10.1.2.0/24") {
		t.Fatalf("after the reload n2 is %+v from %q", n, origin)
	}

	// Refused: the file's node collides with another API node's address.
	ta2 := newTestAgent(t, loadConfig(t, baseConfig), nil)
	ta2.cfg.StateDir = t.TempDir()
	must(t, ta2.nodes.add(ta2.eng, []dataplane.NodeSpec{
		{Name: "n2", IP: addr("192.0.2.9"), PodCIDR: prefix("10.1.9.0/24")},
		{Name: "other", IP: addr("192.0.2.2"), PodCIDR: prefix("10.1.8.0/24")},
	}, fromAPI))
	after2 := loadConfig(t, baseConfig+"nodes:\n  - {name: n2, ip: 192.0.2.2, pod-cidr: 10.1.2.0/24}\n")
	after2.StateDir = ta2.cfg.StateDir
	if err := ta2.Reload(after2); err == nil {
		t.Fatal("a reload whose node takes another node's address was accepted")
	}
	n, origin, ok = ta2.nodes.lookup(ta2.eng, "n2")
	if !ok || origin != fromAPI || n.IP != addr("192.0.2.9") {
		t.Fatalf("after a refused reload n2 is %+v from %q, want the API's", n, origin)
	}
}

// A reload says once which Cilium keys the new configuration sets that vxdp
// does not use, and a refused one names every problem of the source.
func TestReloadIgnoredKeysAndProblems(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, reloadBefore), nil)
	ta.cfg.StateDir = t.TempDir()
	core, logs := observer.New(zap.InfoLevel)
	ta.log = zap.New(core)

	next := loadConfig(t, reloadBefore+"debug: \"true\"\nbpf-lb-map-max: \"65536\"\n")
	next.StateDir = ta.cfg.StateDir
	must(t, ta.ReloadWith(func() (*config.Config, error) { return next, nil }))
	warned := logs.FilterMessageSnippet("Cilium key").All()
	if len(warned) != 1 || warned[0].Level != zap.WarnLevel ||
		warned[0].Message != "ignoring 2 Cilium keys vxdp does not use: bpf-lb-map-max, debug" {
		t.Errorf("warnings: %+v", warned)
	}

	// Nothing to say when every key is vxdp's.
	plain := loadConfig(t, reloadBefore)
	plain.StateDir = ta.cfg.StateDir
	must(t, ta.ReloadWith(func() (*config.Config, error) { return plain, nil }))
	if n := logs.FilterMessageSnippet("Cilium key").Len(); n != 1 {
		t.Errorf("%d warnings after a reload without Cilium keys, want still 1", n)
	}

	_, bad := config.Parse([]byte("mtu: 100\nfoo: bar\n"))
	if err := ta.ReloadWith(func() (*config.Config, error) { return nil, bad }); err == nil {
		t.Fatal("a reload with a bad source succeeded")
	}
	refused := logs.FilterMessage("reload refused; the running configuration stays").All()
	if len(refused) != 1 {
		t.Fatalf("refusals logged: %+v", refused)
	}
	msg := fmt.Sprint(refused[0].ContextMap()["error"])
	if !strings.Contains(msg, "mtu") || !strings.Contains(msg, "foo") {
		t.Errorf("refusal names %q, want both problems", msg)
	}
}

// A pod-cidr: auto file reloads onto the blocks the agent holds: its
// endpoints are checked against them; another block size needs a restart.
func TestReloadPodCIDRAuto(t *testing.T) {
	const auto = `node-name: n1
node-ip: 192.0.2.1
pod-cidr: auto
cluster-pool-ipv4-cidr: 10.1.0.0/16
cluster-pool-ipv6-cidr: fd00:1::/48
cluster-pool-ipv6-mask-size: 64
kvstore: etcd
kvstore-opt: {etcd.endpoints: "http://192.0.2.10:2379"}
`
	cfg := loadConfig(t, auto)
	// What the claim in etcd filled in.
	cfg.PodCIDR, cfg.PodCIDR6 = prefix("10.1.3.0/24"), prefix("fd00:1:0:3::/64")
	must(t, cfg.Validate())
	ta := newTestAgent(t, cfg, nil)
	ta.cfg.StateDir = t.TempDir()

	must(t, ta.Reload(withState(ta, loadConfig(t, auto+"endpoints:\n  - {name: pa, ip: \"10.1.3.10,fd00:1:0:3::10\", netns: /run/netns/pa}\n"))))
	if eps := ta.eng.Endpoints(); len(eps) != 1 || ta.cfg.PodCIDR6 != prefix("fd00:1:0:3::/64") {
		t.Fatalf("after reload: endpoints %v, pod-cidr %s,%s", eps, ta.cfg.PodCIDR, ta.cfg.PodCIDR6)
	}
	var ce *config.Error
	err := ta.Reload(withState(ta, loadConfig(t, auto+"endpoints:\n  - {name: pb, ip: \"fd00:1:0:4::10\", netns: /run/netns/pb}\n")))
	if !errors.As(err, &ce) || !strings.Contains(ce.Key, "endpoints[0]") {
		t.Fatalf("an endpoint outside the held IPv6 block: %v", err)
	}
	if err := ta.Reload(withState(ta, loadConfig(t, strings.Replace(auto, "mask-size: 64", "mask-size: 80", 1)))); !errors.Is(err, ErrNeedsRestart) ||
		!strings.Contains(err.Error(), "cluster-pool-ipv6-mask-size") {
		t.Fatalf("another IPv6 block size: %v", err)
	}
	if len(ta.eng.Endpoints()) != 1 {
		t.Fatal("a refused reload changed the endpoints")
	}
}

// A state save that fails (a full disk, here a directory where the
// temporary file goes) is shown in status, leaves the last good file and
// the change in force, and the next save that succeeds clears it.
func TestStateSaveFailureReported(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, reloadBefore), nil)
	ta.cfg.StateDir = t.TempDir()
	ta.saveState()
	good, err := os.ReadFile(ta.statePath())
	must(t, err)
	if st := ta.Status(); st.StateSave != "" {
		t.Fatalf("state_save after a good save: %q", st.StateSave)
	}
	blocker := ta.statePath() + ".tmp"
	must(t, os.Mkdir(blocker, 0o700))
	must(t, ta.eng.AddEndpoint(dataplane.EndpointSpec{Name: "papi", IP: addr("10.1.1.99"), Netns: "/run/netns/papi"}))
	ta.saveState()
	st := ta.Status()
	if !strings.Contains(st.StateSave, ta.statePath()) || !strings.Contains(st.StateSave, "state-dir") {
		t.Errorf("state_save after a failed save: %q", st.StateSave)
	}
	if !st.Healthy {
		t.Errorf("a failed state save made the agent unhealthy: %v", st.Problems)
	}
	if b, _ := os.ReadFile(ta.statePath()); string(b) != string(good) {
		t.Errorf("the failed save changed the state file:\n%s", b)
	}
	if !slices.ContainsFunc(ta.eng.Endpoints(), func(ep dataplane.Endpoint) bool { return ep.Name == "papi" }) {
		t.Error("the endpoint whose save failed is gone")
	}
	must(t, os.Remove(blocker))
	ta.saveState()
	if st := ta.Status(); st.StateSave != "" {
		t.Errorf("state_save after the next good save: %q", st.StateSave)
	}
	if b, _ := os.ReadFile(ta.statePath()); !strings.Contains(string(b), `"papi"`) {
		t.Errorf("the next save lacks the endpoint:\n%s", b)
	}
}

// withState gives a configuration the test agent's state-dir, which a
// reload may not change.
func withState(ta *testAgent, cfg *config.Config) *config.Config {
	cfg.StateDir = ta.cfg.StateDir
	return cfg
}

// busy-poll and nice change on a reload without a restart: the engine's
// workers get the new budget, every thread of the process the new
// niceness, and the same file again changes neither.
func TestReloadBusyPollAndNice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lowering the niceness again needs root")
	}
	t.Cleanup(func() { setNice(0) })
	ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
	ta.cfg.StateDir = t.TempDir()
	allNice := func(want int) {
		t.Helper()
		ents, err := os.ReadDir("/proc/self/task")
		must(t, err)
		for _, e := range ents {
			var tid int
			fmt.Sscan(e.Name(), &tid)
			if n, err := threadNice(tid); err == nil && n != want {
				t.Errorf("thread %d at niceness %d, want %d", tid, n, want)
			}
		}
	}
	must(t, ta.Reload(withState(ta, loadConfig(t, baseConfig+"busy-poll: 30us\nnice: 5\n"))))
	if got := ta.eng.BusyPoll(); got != 30*time.Microsecond {
		t.Errorf("engine busy-poll %v, want 30µs", got)
	}
	allNice(5)
	// Threads the runtime starts now inherit the niceness: goroutines
	// holding threads of their own make it start some.
	release := make(chan struct{})
	got := make(chan int)
	for range 4 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			n, _ := threadNice(unix.Gettid())
			got <- n
			<-release
		}()
	}
	for range 4 {
		if n := <-got; n != 5 {
			t.Errorf("a thread at niceness %d, want 5", n)
		}
	}
	allNice(5)
	close(release)
	must(t, ta.Reload(withState(ta, loadConfig(t, baseConfig+"busy-poll: 30us\nnice: 5\n"))))
	allNice(5)
	must(t, ta.Reload(withState(ta, loadConfig(t, baseConfig))))
	if got := ta.eng.BusyPoll(); got != config.DefaultBusyPoll {
		t.Errorf("engine busy-poll %v after the key went, want the default %v", got, config.DefaultBusyPoll)
	}
	allNice(config.DefaultNice)
}
