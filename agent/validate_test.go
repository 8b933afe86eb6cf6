package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/kvstore"
)

// post sends body to path and returns the answer's status and error text.
func post(t *testing.T, h http.Handler, path string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader(string(b))))
	var e api.Error
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return rec.Code, e.Error
}

// fileRefuses reports whether the configuration file refuses base plus
// extra, at parsing or at validation.
func fileRefuses(t *testing.T, extra string) error {
	t.Helper()
	cfg, err := config.Parse([]byte(baseConfig + extra))
	if err != nil {
		return err
	}
	return cfg.Validate()
}

// A node the file refuses is refused by every other way in: the API (400,
// naming the API's field), the state of a previous run and etcd (logged,
// skipped, the start goes on).
func TestNodeRefusedEverywhere(t *testing.T) {
	long := strings.Repeat("n", 300)
	for _, tt := range []struct {
		name, ip, cidr string
		field          string // the API field the refusal names
	}{
		{"x", "0.0.0.0", "10.1.9.0/24", "ip"},
		{"x", "255.255.255.255", "10.1.9.0/24", "ip"},
		{"x", "127.0.0.1", "10.1.9.0/24", "ip"},
		{"x", "224.0.0.1", "10.1.9.0/24", "ip"},
		{"x", "192.0.2.1", "10.1.9.0/24", "ip"},     // this node's address
		{"x", "2001:db8::9", "10.1.9.0/24", "ip"},   // another family
		{"x", "10.1.1.77", "10.1.9.0/24", "ip"},     // inside this node's pod CIDR
		{"a/b", "192.0.2.9", "10.1.9.0/24", "name"}, // not an etcd key element
		{long, "192.0.2.9", "10.1.9.0/24", "name"},
		{"n1", "192.0.2.9", "10.1.9.0/24", "name"}, // this node's name
		{"x", "192.0.2.9", "10.1.1.0/25", "pod_cidr"},
		{"x", "192.0.2.9", "10.1.9.0/31", "pod_cidr"},
		{"x", "192.0.2.9", "10.2.0.0/24", "pod_cidr"}, // outside the cluster pool
		{"x", "192.0.2.9", "10.1.9.1/24", "pod_cidr"}, // host bits
	} {
		t.Run(tt.name[:min(len(tt.name), 8)]+" "+tt.ip+" "+tt.cidr, func(t *testing.T) {
			if err := fileRefuses(t, fmt.Sprintf("nodes:\n  - {name: %q, ip: %q, pod-cidr: %q}\n", tt.name, tt.ip, tt.cidr)); err == nil {
				t.Fatal("the file takes it")
			}

			ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
			code, msg := post(t, ta.handler(), "/v1/nodes", api.NodeRequest{Name: tt.name, IP: tt.ip, PodCIDR: tt.cidr})
			if code != http.StatusBadRequest || !strings.Contains(msg, tt.field+" ") {
				t.Errorf("API: %d %q, want 400 naming %s", code, msg, tt.field)
			}

			ip, err1 := netip.ParseAddr(tt.ip)
			p, err2 := netip.ParsePrefix(tt.cidr)
			if err1 != nil || err2 != nil {
				return
			}
			st := &state{Nodes: []api.Node{{Name: tt.name, IP: ip, PodCIDR: p, Source: fromAPI},
				{Name: "good", IP: addr("192.0.2.8"), PodCIDR: prefix("10.1.8.0/24"), Source: fromAPI}}}
			ta = newTestAgent(t, loadConfig(t, baseConfig), st)
			if got := ta.nodeOrigins(); len(got) != 1 || got["good"] == "" {
				t.Errorf("state: nodes %v, want only the good one", got)
			}

			ta.etcdNodeEvent(kvstore.Event{Kind: kvstore.EventPut, Node: kvstore.NodeRecord{Name: tt.name, IP: ip, PodCIDR: p}})
			if got := ta.nodeOrigins(); len(got) != 1 {
				t.Errorf("etcd: nodes %v, want only the good one", got)
			}
		})
	}
}

// An etcd record that the checks refuse leaves the node as it was known.
func TestEtcdBadRecordKeepsNode(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
	good := kvstore.NodeRecord{Name: "e", IP: addr("192.0.2.7"), PodCIDR: prefix("10.1.7.0/24")}
	ta.etcdNodeEvent(kvstore.Event{Kind: kvstore.EventPut, Node: good})
	bad := good
	bad.IP = addr("0.0.0.0")
	ta.etcdNodeEvent(kvstore.Event{Kind: kvstore.EventPut, Node: bad})
	if got := ta.nodeOrigins()["e"]; got != "etcd 192.0.2.7 10.1.7.0/24" {
		t.Fatalf("node after a bad record: %q", got)
	}
}

// The same for endpoints: the file, the API and the state.
func TestEndpointRefusedEverywhere(t *testing.T) {
	long := strings.Repeat("p", 300)
	for _, tt := range []struct {
		name, ip, netns, ifname string
		identity                uint32
		allow                   []string
		field                   string
	}{
		{name: long, ip: "10.1.1.10", field: "name"},
		{name: "a/b", ip: "10.1.1.10", field: "name"},
		{name: "..", ip: "10.1.1.10", field: "name"},
		{name: "p", ip: "10.1.2.10", field: "ip"},  // outside the pod CIDR
		{name: "p", ip: "10.1.1.0", field: "ip"},   // network address
		{name: "p", ip: "10.1.1.1", field: "ip"},   // vxdp_host's
		{name: "p", ip: "10.1.1.255", field: "ip"}, // broadcast
		{name: "p", ip: "10.1.1.10", ifname: "a-name-of-16-chr", field: "ifname"},
		{name: "p", ip: "10.1.1.10", ifname: "a:b", field: "ifname"},
		{name: "p", ip: "10.1.1.10", identity: 5, field: "identity"},
		{name: "p", ip: "10.1.1.10", identity: 1 << 24, field: "identity"},
		{name: "p", ip: "10.1.1.10", allow: []string{"", ""}, field: "allow_from"},
		{name: "p", ip: "10.1.1.10", allow: []string{"unknown"}, field: "allow_from"},
	} {
		if tt.netns == "" {
			tt.netns = "/run/netns/p"
		}
		t.Run(tt.name[:min(len(tt.name), 8)]+" "+tt.field, func(t *testing.T) {
			ifname := tt.ifname
			if ifname == "" {
				ifname = "eth0"
			}
			line := fmt.Sprintf("endpoints:\n  - {name: %q, ip: %q, netns: %q, ifname: %q", tt.name, tt.ip, tt.netns, ifname)
			if tt.identity != 0 {
				line += fmt.Sprintf(", identity: %d", tt.identity)
			}
			if tt.allow != nil {
				line += fmt.Sprintf(", allow-from: %q", strings.Join(tt.allow, ","))
			}
			if err := fileRefuses(t, line+"}\n"); err == nil {
				t.Fatal("the file takes it")
			}

			ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
			req := api.EndpointRequest{Name: tt.name, IP: tt.ip, Netns: tt.netns, Ifname: tt.ifname, AllowFrom: tt.allow}
			if tt.identity != 0 {
				req.Identity = fmt.Sprint(tt.identity)
			}
			code, msg := post(t, ta.handler(), "/v1/endpoints", req)
			if code != http.StatusBadRequest || !strings.Contains(msg, tt.field+" ") && !strings.Contains(msg, tt.field+":") {
				t.Errorf("API: %d %q, want 400 naming %s", code, msg, tt.field)
			}
			if ta.devicesMade() != 0 {
				t.Errorf("API: a refused endpoint got a device")
			}

			var allow []identity.ID
			for _, s := range tt.allow {
				id, _ := identity.Parse(s)
				allow = append(allow, id)
			}
			st := &state{Endpoints: []stateEndpoint{{FromAPI: true, Endpoint: api.Endpoint{Name: tt.name, IP: addr(tt.ip),
				Netns: tt.netns, Ifname: ifname, Identity: identity.ID(tt.identity), AllowFrom: allow}}}}
			ta = newTestAgent(t, loadConfig(t, baseConfig), st)
			if n := len(ta.eng.Endpoints()); n != 0 || ta.devicesMade() != 0 {
				t.Errorf("state: %d endpoints, %d devices after restoring a bad one", n, ta.devicesMade())
			}
		})
	}
}

// And for VTEPs: the file, the API, the state and etcd.
func TestVTEPRefusedEverywhere(t *testing.T) {
	for _, tt := range []struct{ cidr, endpoint, mac, field string }{
		{"10.9.0.0/24", "0.0.0.0", "02:00:00:00:00:50", "endpoint"},
		{"10.9.0.0/24", "224.0.0.5", "02:00:00:00:00:50", "endpoint"},
		{"10.9.0.0/24", "127.0.0.1", "02:00:00:00:00:50", "endpoint"},
		{"10.9.0.1/24", "192.0.2.50", "02:00:00:00:00:50", "cidr"},
		{"10.9.0.0/24", "192.0.2.50", "01:00:5e:00:00:01", "mac"},
		{"10.9.0.0/24", "192.0.2.50", "00:00:00:00:00:00", "mac"},
	} {
		t.Run(tt.cidr+" "+tt.endpoint+" "+tt.mac, func(t *testing.T) {
			vtep := fmt.Sprintf("enable-vtep: true\nvtep-endpoint: %s\nvtep-cidr: %s\nvtep-mac: %s\n", tt.endpoint, tt.cidr, tt.mac)
			if err := fileRefuses(t, vtep); err == nil {
				t.Fatal("the file takes it")
			}

			ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
			code, msg := post(t, ta.handler(), "/v1/vteps", api.VTEPRequest{CIDR: tt.cidr, Endpoint: tt.endpoint, MAC: tt.mac})
			if code != http.StatusBadRequest || !strings.Contains(msg, tt.field+" ") {
				t.Errorf("API: %d %q, want 400 naming %s", code, msg, tt.field)
			}

			row := api.VTEP{CIDR: prefix(tt.cidr), Endpoint: addr(tt.endpoint), MAC: tt.mac}
			ta = newTestAgent(t, loadConfig(t, baseConfig), &state{VTEPs: &[]api.VTEP{row}})
			if n := len(ta.eng.VTEPs()); n != 0 {
				t.Errorf("state: %d VTEPs after restoring a bad one", n)
			}

			vs := ta.vtepsWith([]kvstore.VTEPRecord{{CIDR: row.CIDR, Endpoint: row.Endpoint, MAC: row.MAC}})
			if len(vs) != 0 {
				t.Errorf("etcd: %v taken", vs)
			}
		})
	}
}
