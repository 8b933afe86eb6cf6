package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
)

// testAgent is an Agent whose engine runs on in-memory fake devices: the
// phases that touch the kernel are left out, the agent's own logic
// (configuration to engine, reload, origins, state, watchdog) is the real
// one.
type testAgent struct {
	*Agent
	under *fake.Underlay
	host  *fake.Device

	mu   sync.Mutex // protects pods, made
	pods map[string]*fake.Device
	made int // pod devices the factory made
}

// loadConfig reads a YAML configuration as `vxdp agent --config` does.
func loadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vxdp.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newTestAgent starts an agent on fakes with cfg and the state st of a
// previous run (nil for none).
func newTestAgent(t *testing.T, cfg *config.Config, st *state) *testAgent {
	t.Helper()
	ta := &testAgent{under: fake.NewUnderlay("u", netip.AddrPortFrom(cfg.NodeIP, 8472), 16), host: fake.New(HostDevice, 16), pods: map[string]*fake.Device{}}
	factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
		d := fake.New(s.Name, 8)
		ta.mu.Lock()
		ta.pods[s.Name] = d
		ta.made++
		ta.mu.Unlock()
		return d, nil
	}
	eng, err := dataplane.New(engineConfig(cfg, 1500), zap.NewNop(), []packetio.Underlay{ta.under}, ta.host, factory, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	ta.Agent = &Agent{cfg: cfg, local: cfg.Local(), log: zap.NewNop(), eng: eng, nodes: newNodeBook(), configEndpoints: map[string]bool{},
		under: &underlay{device: "eth0", mtu: 1500, kind: "udp", reason: "configured"}}
	if st == nil {
		st = &state{}
	}
	if err := ta.applyConfig(st); err != nil {
		t.Fatal(err)
	}
	return ta
}

func (ta *testAgent) pod(t *testing.T, name string) *fake.Device {
	t.Helper()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	d := ta.pods[name]
	if d == nil {
		t.Fatalf("no pod device %s", name)
	}
	return d
}

func (ta *testAgent) devicesMade() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.made
}

// nodeOrigins maps node names to where they came from, as `vxdp node
// list` shows them.
func (ta *testAgent) nodeOrigins() map[string]string {
	out := map[string]string{}
	for _, n := range ta.nodes.list(ta.eng) {
		out[n.Name] = n.Source + " " + n.IP.String() + " " + n.PodCIDR.String()
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)
