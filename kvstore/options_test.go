package kvstore

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cilium := write("cilium.config", `---
endpoints:
- https://192.0.2.1:2379
- https://192.0.2.2:2379
trusted-ca-file: '/var/lib/cilium/etcd-ca.pem'
# In case you want client to server authentication
key-file: '/var/lib/cilium/etcd-client.key'
cert-file: '/var/lib/cilium/etcd-client.crt'
`)
	relative := write("relative.config", "endpoints: https://192.0.2.1:2379, https://192.0.2.2:2379\nca-file: ca.pem\ndial-timeout: 3s\n")
	tlsOnly := write("tls-only.config", "trusted-ca-file: /ca.pem\n")
	unknownKey := write("unknown.config", "endpoints: [https://192.0.2.1:2379]\nusername: root\n")
	badEndpoint := write("bad-endpoint.config", "endpoints: [192.0.2.1:2379]\n")
	empty := write("empty.config", "")
	halfCert := write("half.config", "endpoints: [https://192.0.2.1:2379]\ncert-file: /c.pem\n")

	good := []struct {
		name string
		opt  map[string]string
		want Options
	}{
		{"endpoints", map[string]string{"etcd.endpoints": "https://a:2379, https://b:2379"},
			Options{Endpoints: []string{"https://a:2379", "https://b:2379"}, Prefix: DefaultPrefix, LeaseTTL: DefaultLeaseTTL, DialTimeout: DefaultDialTimeout}},
		{"address alias, prefix, ttl", map[string]string{"etcd.address": "http://127.0.0.1:2379", "etcd.prefix": "/cluster1", "etcd.lease-ttl": "30s"},
			Options{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/cluster1/", LeaseTTL: 30 * time.Second, DialTimeout: DefaultDialTimeout}},
		{"ttl in seconds", map[string]string{"etcd.endpoints": "http://a:2379", "etcd.lease-ttl": "7"},
			Options{Endpoints: []string{"http://a:2379"}, Prefix: DefaultPrefix, LeaseTTL: 7 * time.Second, DialTimeout: DefaultDialTimeout}},
		{"cilium config file", map[string]string{"etcd.config": cilium},
			Options{Endpoints: []string{"https://192.0.2.1:2379", "https://192.0.2.2:2379"},
				CAFile: "/var/lib/cilium/etcd-ca.pem", CertFile: "/var/lib/cilium/etcd-client.crt", KeyFile: "/var/lib/cilium/etcd-client.key",
				Prefix: DefaultPrefix, LeaseTTL: DefaultLeaseTTL, DialTimeout: DefaultDialTimeout}},
		{"config file, relative paths", map[string]string{"etcd.config": relative},
			Options{Endpoints: []string{"https://192.0.2.1:2379", "https://192.0.2.2:2379"}, CAFile: filepath.Join(dir, "ca.pem"),
				Prefix: DefaultPrefix, LeaseTTL: DefaultLeaseTTL, DialTimeout: 3 * time.Second}},
		{"TLS from the file, endpoints from the option", map[string]string{"etcd.config": tlsOnly, "etcd.endpoints": "https://a:2379"},
			Options{Endpoints: []string{"https://a:2379"}, CAFile: "/ca.pem", Prefix: DefaultPrefix, LeaseTTL: DefaultLeaseTTL, DialTimeout: DefaultDialTimeout}},
	}
	for _, tt := range good {
		got, err := ParseOptions(tt.opt)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}

	bad := []struct {
		name string
		opt  map[string]string
		key  string // the key the error must name
		text string // and a piece of its reason
	}{
		{"nothing", map[string]string{}, "etcd.endpoints", "no etcd endpoints"},
		{"empty endpoints", map[string]string{"etcd.endpoints": " , "}, "etcd.endpoints", "no endpoints"},
		{"no scheme", map[string]string{"etcd.endpoints": "10.0.0.1:2379"}, "etcd.endpoints", "https://host:port"},
		{"bad scheme", map[string]string{"etcd.endpoints": "unix:///run/etcd.sock"}, "etcd.endpoints", "http://host:port"},
		{"path", map[string]string{"etcd.endpoints": "http://a:2379/v3"}, "etcd.endpoints", "no path"},
		{"mixed schemes", map[string]string{"etcd.endpoints": "http://a:2379,https://b:2379"}, "etcd.endpoints", "mix"},
		{"both names", map[string]string{"etcd.endpoints": "http://a:2379", "etcd.address": "http://b:2379"}, "etcd.endpoints", "together"},
		{"ttl garbage", map[string]string{"etcd.endpoints": "http://a:2379", "etcd.lease-ttl": "soon"}, "etcd.lease-ttl", "duration"},
		{"ttl short", map[string]string{"etcd.endpoints": "http://a:2379", "etcd.lease-ttl": "500ms"}, "etcd.lease-ttl", "at least"},
		{"prefix blank", map[string]string{"etcd.endpoints": "http://a:2379", "etcd.prefix": " "}, "etcd.prefix", "empty"},
		{"unknown option", map[string]string{"etcd.endpoints": "http://a:2379", "etcd.leasettl": "5s"}, "etcd.leasettl", "unknown"},
		{"config missing", map[string]string{"etcd.config": filepath.Join(dir, "nope")}, "etcd.config", "no such file"},
		{"config unknown key", map[string]string{"etcd.config": unknownKey}, "etcd.config", "username"},
		{"config bad endpoint", map[string]string{"etcd.config": badEndpoint}, "etcd.config", "192.0.2.1:2379"},
		{"config empty", map[string]string{"etcd.config": empty}, "etcd.config", "empty"},
		{"config half a certificate", map[string]string{"etcd.config": halfCert}, "etcd.config", "key-file"},
		{"config and option endpoints", map[string]string{"etcd.config": cilium, "etcd.endpoints": "https://a:2379"}, "etcd.config", "one place"},
		{"config without endpoints", map[string]string{"etcd.config": tlsOnly}, "etcd.config", "no etcd endpoints"},
		{"TLS files with http", map[string]string{"etcd.config": tlsOnly, "etcd.endpoints": "http://a:2379"}, "etcd.config", "http://"},
	}
	for _, tt := range bad {
		_, err := ParseOptions(tt.opt)
		var oe *OptionError
		if !errors.As(err, &oe) {
			t.Errorf("%s: error %v, want an OptionError", tt.name, err)
			continue
		}
		if oe.Key != tt.key || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: %v; want one naming %s and saying %q", tt.name, err, tt.key, tt.text)
		}
		if v := tt.opt[tt.key]; strings.TrimSpace(v) != "" && !strings.Contains(err.Error(), strings.TrimSpace(v)) {
			t.Errorf("%s: %v does not quote the value %q", tt.name, err, v)
		}
	}
}
