package agent

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/identity"
)

const baseConfig = `node-name: n1
node-ip: 192.0.2.1
pod-cidr: 10.1.1.0/24
cluster-pool-ipv4-cidr: 10.1.0.0/16
`

// The configuration's nodes, VTEPs and endpoints reach the engine with
// their origin; the previous run's API entries are restored on top, and
// its VTEP table wins over the file's.
func TestApplyConfig(t *testing.T) {
	cfg := loadConfig(t, baseConfig+`enable-vtep: true
vtep-endpoint: 192.0.2.50
vtep-cidr: 10.9.0.0/24
vtep-mac: 02:00:00:00:00:50
nodes:
  - {name: n2, ip: 192.0.2.2, pod-cidr: 10.1.2.0/24}
endpoints:
  - {name: pa, ip: 10.1.1.10, netns: /run/netns/pa, identity: 1000, allow-from: [world, 2000]}
  - {name: pb, ip: 10.1.1.11, netns: /run/netns/pb, ifname: net0}
`)
	vteps := []api.VTEP{{CIDR: prefix("10.8.0.0/24"), Endpoint: addr("192.0.2.60"), MAC: "02:00:00:00:00:60"}}
	st := &state{
		Nodes: []api.Node{
			{Name: "n3", IP: addr("192.0.2.3"), PodCIDR: prefix("10.1.3.0/24"), Source: fromAPI},
			// Overlaps n2 of the file: skipped, the start goes on.
			{Name: "bad", IP: addr("192.0.2.4"), PodCIDR: prefix("10.1.2.0/25"), Source: fromAPI},
		},
		Endpoints: []stateEndpoint{
			{Endpoint: api.Endpoint{Name: "pa", IP: addr("10.1.1.10"), Netns: "/run/netns/pa"}}, // the file's: not re-added
			{Endpoint: api.Endpoint{Name: "pz", IP: addr("10.1.1.30"), Netns: "/run/netns/pz"}, FromAPI: true},
		},
		VTEPs: &vteps,
	}
	ta := newTestAgent(t, cfg, st)

	want := map[string]string{"n2": "config 192.0.2.2 10.1.2.0/24", "n3": "api 192.0.2.3 10.1.3.0/24"}
	if got := ta.nodeOrigins(); !maps.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	eps := map[string]dataplane.Endpoint{}
	for _, ep := range ta.eng.Endpoints() {
		eps[ep.Name] = ep
	}
	if len(eps) != 3 {
		t.Fatalf("endpoints %v", eps)
	}
	if pa := eps["pa"]; pa.Identity != 1000 || !slices.Equal(pa.AllowFrom, []identity.ID{identity.World, 2000}) || pa.Ifname != "eth0" {
		t.Errorf("pa %+v", pa)
	}
	if pb := eps["pb"]; pb.Identity != identity.DefaultWorkload || pb.AllowFrom != nil || pb.Ifname != "net0" {
		t.Errorf("pb %+v", pb)
	}
	if !maps.Equal(ta.configEndpoints, map[string]bool{"pa": true, "pb": true}) {
		t.Errorf("config endpoints %v", ta.configEndpoints)
	}
	if got := convert(ta.eng.VTEPs(), apiVTEP); !ta.vtepsFromAPI || !slices.Equal(got, vteps) {
		t.Errorf("vteps %v (from api %v), want the previous run's %v", got, ta.vtepsFromAPI, vteps)
	}
}

// An entry of the file the engine refuses fails the start.
func TestApplyConfigRefused(t *testing.T) {
	cfg := loadConfig(t, baseConfig+`endpoints:
  - {name: pa, ip: 10.1.1.10, netns: /run/netns/pa}
`)
	ta := newTestAgent(t, cfg, nil)
	ta.eng.DelEndpoint("pa")
	ta.configEndpoints = map[string]bool{}
	must(t, ta.eng.AddEndpoint(dataplane.EndpointSpec{Name: "other", IP: addr("10.1.1.10"), Netns: "/x"}))
	if err := ta.applyConfig(&state{}); err == nil {
		t.Fatal("an endpoint whose address is taken was accepted")
	}
}

func TestEngineConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       dataplane.Config
	}{
		{"tunnel", baseConfig, dataplane.Config{NodeIP: addr("192.0.2.1"), PodCIDR: prefix("10.1.1.0/24"),
			ClusterCIDR: prefix("10.1.0.0/16"), TunnelPort: 8472, UnderlayMTU: 1400, Protocol: "vxlan", BusyPoll: config.DefaultBusyPoll}},
		{"geneve, no source check", baseConfig + "tunnel-protocol: geneve\ntunnel-source-check: false\n",
			dataplane.Config{NodeIP: addr("192.0.2.1"), PodCIDR: prefix("10.1.1.0/24"),
				ClusterCIDR: prefix("10.1.0.0/16"), TunnelPort: 6081, UnderlayMTU: 1400, Protocol: "geneve", DisableSourceCheck: true, BusyPoll: config.DefaultBusyPoll}},
		{"native", "node-name: n1\nnode-ip: 192.0.2.1\npod-cidr: 10.1.1.0/24\nrouting-mode: native\nipv4-native-routing-cidr: 10.1.0.0/16\nauto-direct-node-routes: true\n",
			dataplane.Config{NodeIP: addr("192.0.2.1"), PodCIDR: prefix("10.1.1.0/24"),
				TunnelPort: 8472, UnderlayMTU: 1400, Protocol: "vxlan", Native: true, AutoDirectNodeRoutes: true, BusyPoll: config.DefaultBusyPoll}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := engineConfig(loadConfig(t, tt.yaml), 1400)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// The API's JSON is what it was when the API aliased the engine's types:
// field names, omitempty, null against [].
func TestAPIJSON(t *testing.T) {
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"endpoint allowing all", apiEndpoint(dataplane.Endpoint{EndpointSpec: dataplane.EndpointSpec{Name: "pa", IP: addr("10.1.1.10"), Netns: "/n", Ifname: "eth0", Identity: 1000}, Device: "pa", MTU: 1450}),
			`{"name":"pa","ip":"10.1.1.10","netns":"/n","ifname":"eth0","identity":1000,"allow_from":null,"device":"pa","mtu":1450}`},
		{"endpoint allowing none", apiEndpoint(dataplane.Endpoint{EndpointSpec: dataplane.EndpointSpec{Name: "pa", AllowFrom: []identity.ID{}}}),
			`{"name":"pa","ip":"","netns":"","ifname":"","identity":0,"allow_from":[],"device":"","mtu":0}`},
		{"fib host", apiFIBEntry(dataplane.FIBEntry{Prefix: prefix("0.0.0.0/0"), Kind: dataplane.RouteHost}),
			`{"prefix":"0.0.0.0/0","kind":"host","target":"vxdp_host"}`},
		{"fib unreachable", apiFIBEntry(dataplane.FIBEntry{Prefix: prefix("10.1.0.0/16"), Kind: dataplane.RouteUnreachable}),
			`{"prefix":"10.1.0.0/16","kind":"unreachable"}`},
		{"fib endpoint", apiFIBEntry(dataplane.FIBEntry{Prefix: prefix("10.1.1.10/32"), Kind: dataplane.RouteLocal, Endpoint: "pa"}),
			`{"prefix":"10.1.1.10/32","kind":"local","target":"endpoint pa"}`},
		{"fib native node", apiFIBEntry(dataplane.FIBEntry{Prefix: prefix("10.1.2.0/24"), Kind: dataplane.RouteHost, Node: "n2", NodeIP: addr("192.0.2.2")}),
			`{"prefix":"10.1.2.0/24","kind":"host","target":"node n2 192.0.2.2"}`},
		{"fib vtep", apiFIBEntry(dataplane.FIBEntry{Prefix: prefix("10.9.0.0/24"), Kind: dataplane.RouteVTEP, VTEP: addr("192.0.2.50"), VTEPMAC: [6]byte{2, 0, 0, 0, 0, 0x50}}),
			`{"prefix":"10.9.0.0/24","kind":"vtep","target":"vtep 192.0.2.50 02:00:00:00:00:50"}`},
		{"no vteps", convert([]dataplane.VTEPSpec(nil), apiVTEP), `null`},
		{"no vteps listed", orEmpty(convert([]dataplane.VTEPSpec(nil), apiVTEP)), `[]`},
		// Added since: monitor_events_lost, source_ports of underlays,
		// kernel_dropped and kernel_dropped_error.
		{"stats", apiStats(dataplane.Stats{Drops: map[string]uint64{"no_route": 2}, TotalDrops: 2, RouteMTU: 1450, UnderlayMTU: 1500, MonitorEventsLost: 4,
			Devices: []dataplane.DeviceCounters{{Device: "pa", Kind: "endpoint", RxPackets: 3, KernelDropped: 7},
				{Device: "udp:192.0.2.1:8472", Kind: "underlay", SourcePorts: &packetio.SourcePorts{Count: 64, Min: 49152, Max: 65280}, KernelDropErr: "gone"}}}),
			`{"devices":[{"device":"pa","kind":"endpoint","rx_batches":0,"rx_packets":3,"rx_bytes":0,"tx_packets":0,"tx_bytes":0,"tx_errors":0,"driver_rx_dropped":0,"driver_tx_errors":0,"kernel_dropped":7},` +
				`{"device":"udp:192.0.2.1:8472","kind":"underlay","rx_batches":0,"rx_packets":0,"rx_bytes":0,"tx_packets":0,"tx_bytes":0,"tx_errors":0,"driver_rx_dropped":0,"driver_tx_errors":0,"kernel_dropped":0,"kernel_dropped_error":"gone","source_ports":{"count":64,"min":49152,"max":65280}}],` +
				`"drops":{"no_route":2},"icmp_errors_sent":0,"arp_replies_sent":0,"total_drops":2,"route_mtu":1450,"underlay_mtu":1500,"monitor_events_lost":4,"icmp_errors_rate_limited":0,"ecn_anomalies":0}`},
		{"node", api.Node{Name: "n2", IP: addr("192.0.2.2"), PodCIDR: prefix("10.1.2.0/24"), Source: fromConfig},
			`{"name":"n2","ip":"192.0.2.2","pod_cidr":"10.1.2.0/24","source":"config"}`},
	}
	for _, tt := range tests {
		if got := js(tt.v); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestParseCapturePoint(t *testing.T) {
	for in, want := range map[string]dataplane.CapturePoint{
		"underlay": {Kind: dataplane.CaptureUnderlay},
		"host":     {Kind: dataplane.CaptureHost},
		"pod:web":  {Kind: dataplane.CaptureEndpoint, Endpoint: "web"},
	} {
		if got, err := parseCapturePoint(in); err != nil || got != want {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "pod:", "pod", "Host", "web"} {
		if _, err := parseCapturePoint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// An allow-list with an empty member is refused, not read as allow-all.
func TestParseAllowFrom(t *testing.T) {
	for _, in := range [][]string{{"", "", "", ""}, {"1000", ""}, {" "}} {
		if got, err := parseAllowFrom(in); err == nil {
			t.Errorf("parseAllowFrom(%q) = %v, want an error", in, got)
		}
	}
	got, err := parseAllowFrom([]string{"1000", "world"})
	if err != nil || len(got) != 2 || got[0] != 1000 || got[1] != identity.World {
		t.Errorf("parseAllowFrom(1000, world) = %v, %v", got, err)
	}
	if got, err := parseAllowFrom(nil); err != nil || got != nil {
		t.Errorf("parseAllowFrom(nil) = %v, %v: want nil (allow all)", got, err)
	}
}
