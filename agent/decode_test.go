package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		body string
		want string // "" for accepted
	}{
		{`{"name":"n2","ip":"192.0.2.2","pod_cidr":"10.1.2.0/24"}`, ""},
		{" {\"name\":\"n2\"}\n", ""},
		{`null`, "null"},
		{` null `, "null"},
		{`{"name":"n2"} {"name":"n3"}`, "after the JSON value"},
		{`{"name":"n2"}x`, "after the JSON value"},
		{`{"name":"n2","color":"red"}`, "unknown field"},
		{`[]`, "cannot unmarshal"},
		{``, "EOF"},
	}
	for _, tt := range tests {
		var req api.NodeRequest
		err := decodeRequest([]byte(tt.body), &req)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("decodeRequest(%q) = %v, want %q", tt.body, err, tt.want)
		}
	}
}

// FuzzDecodeRequest: any body either decodes into a request or is refused
// with an error; it never panics, and what decodes re-decodes alike.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"n2","ip":"192.0.2.2","pod_cidr":"10.1.2.0/24"}`,
		`[{"name":"n2","ip":"192.0.2.2","pod_cidr":"10.1.2.0/24"}]`,
		`{"name":"pa","ip":"10.1.1.10","netns":"/run/netns/pa","allow_from":["1000","world"]}`,
		`{"cidr":"10.9.0.0/24","endpoint":"192.0.2.50","mac":"82:36:4c:98:2e:56"}`,
		`{"allow_from":[],"allow_all":true}`,
		`null`, `{} {}`, `{"name":`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		targets := []func() any{
			func() any { return &api.NodeRequest{} },
			func() any { return &[]api.NodeRequest{} },
			func() any { return &api.EndpointRequest{} },
			func() any { return &api.PolicyRequest{} },
			func() any { return &api.VTEPRequest{} },
			func() any { return &[]api.VTEPRequest{} },
		}
		for _, mk := range targets {
			v := mk()
			if err := decodeRequest(body, v); err != nil {
				continue
			}
			w := mk()
			if err := decodeRequest(body, w); err != nil {
				t.Fatalf("%T: decoded once, then refused: %v", v, err)
			}
			checkDecoded(t, v)
		}
	})
}

// fuzzAgent is enough of an agent for the request checks.
var fuzzAgent = &Agent{local: config.Local{NodeName: "n1", NodeIP: netip.MustParseAddr("192.0.2.1"),
	PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), ClusterCIDR: netip.MustParsePrefix("10.1.0.0/16")}}

// checkDecoded runs a decoded request through the checks the API applies:
// they refuse or accept without panicking, and what they accept passes the
// checks of the state and etcd paths too.
func checkDecoded(t *testing.T, v any) {
	switch req := v.(type) {
	case *api.NodeRequest:
		if n, err := fuzzAgent.nodeRequest(*req); err == nil {
			if err := fuzzAgent.checkNode(n); err != nil {
				t.Fatalf("node %+v accepted, then refused: %v", *req, err)
			}
		}
	case *api.EndpointRequest:
		if ep, err := fuzzAgent.endpointRequest(*req); err == nil {
			if err := fuzzAgent.checkEndpoint(ep); err != nil {
				t.Fatalf("endpoint %+v accepted, then refused: %v", *req, err)
			}
		}
	case *api.VTEPRequest:
		if vt, err := fuzzAgent.vtepRequest(*req); err == nil {
			if err := fuzzAgent.checkVTEP(vt); err != nil {
				t.Fatalf("vtep %+v accepted, then refused: %v", *req, err)
			}
		}
	}
}

// What the API has no route for is answered as JSON too.
func TestJSONErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, api.Status{}) })
	h := jsonErrors(mux)
	for _, tt := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/v1/nope", http.StatusNotFound, ""},
		{"DELETE", "/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET", "/v1/status", http.StatusOK, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		var e api.Error
		if rec.Code != tt.code || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil {
			t.Errorf("%s %s: %d %q %q, want %d as JSON", tt.method, tt.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body, tt.code)
		}
		if tt.code != http.StatusOK && e.Error == "" || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: error %q, Allow %q", tt.method, tt.path, e.Error, rec.Header().Get("Allow"))
		}
	}
}

// Request bodies are bounded by what the request can need: a thousand
// nodes in one list go in, an endpoint request of 100 KiB does not.
func TestRequestBodyBounds(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
	h := ta.handler()
	var nodes []api.NodeRequest
	for i := range 1000 {
		nodes = append(nodes, api.NodeRequest{Name: fmt.Sprintf("peer%d", i),
			IP: fmt.Sprintf("198.18.%d.%d", i/250, 1+i%250), PodCIDR: fmt.Sprintf("10.1.%d.%d/28", 16+i/16, i%16*16)})
	}
	body, _ := json.Marshal(nodes)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/nodes", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("1000 nodes (%d bytes): %d %s", len(body), rec.Code, rec.Body)
	}
	big := fmt.Sprintf(`{"name":"pa","ip":"10.1.1.10","netns":"%s"}`, strings.Repeat("x", 100<<10))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/endpoints", strings.NewReader(big)))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "too large") {
		t.Fatalf("100 KiB endpoint request: %d %s", rec.Code, rec.Body)
	}
}
