package agent

import (
	"strings"
	"testing"

	"github.com/vxdp/vxdp/api"
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
		}
	})
}
