package config

import (
	"errors"
	"net/netip"
	"testing"
)

func TestK8sKeys(t *testing.T) {
	const base = "node-ip: 10.169.72.233\n"
	good := []struct {
		name, yaml string
		enabled    bool
		pending    bool // ipam kubernetes: the agent reads the pod CIDRs
	}{
		{"off by default", base + "pod-cidr: 10.1.1.0/24\n", false, false},
		{"kubeconfig", base + "pod-cidr: 10.1.1.0/24\nk8s-kubeconfig-path: /etc/vxdp/kubeconfig\n", true, false},
		{"api server", base + "pod-cidr: 10.1.1.0/24\nk8s-api-server: https://10.169.72.10:6443\n", true, false},
		{"in cluster", base + "pod-cidr: 10.1.1.0/24\nenable-k8s: true\n", true, false},
		{"ipam kubernetes", base + "ipam: kubernetes\n", true, true},
		{"ipam kubernetes with a kubeconfig", base + "ipam: kubernetes\nk8s-kubeconfig-path: /k\n", true, true},
		{"cilium's ipam default", base + "pod-cidr: 10.1.1.0/24\nipam: cluster-pool\n", false, false},
		{"enable-k8s false alone", base + "pod-cidr: 10.1.1.0/24\nenable-k8s: false\n", false, false},
	}
	for _, tt := range good {
		c, err := Parse([]byte(tt.yaml))
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if c.K8sEnabled() != tt.enabled || c.kubePending() != tt.pending {
			t.Errorf("%s: enabled %v pending %v, want %v %v", tt.name, c.K8sEnabled(), c.kubePending(), tt.enabled, tt.pending)
		}
	}
	bad := []struct{ name, yaml, key string }{
		{"unknown ipam", base + "pod-cidr: 10.1.1.0/24\nipam: multi-pool\n", "ipam"},
		{"ipam kubernetes with pod-cidr", base + "pod-cidr: 10.1.1.0/24\nipam: kubernetes\n", "pod-cidr"},
		{"ipam kubernetes with pod-cidr auto", base + "pod-cidr: auto\ncluster-pool-ipv4-cidr: 10.1.0.0/16\nipam: kubernetes\n", "pod-cidr"},
		{"api server not a url", base + "pod-cidr: 10.1.1.0/24\nk8s-api-server: 10.169.72.10:6443\n", "k8s-api-server"},
		{"api server other scheme", base + "pod-cidr: 10.1.1.0/24\nk8s-api-server: ftp://10.169.72.10\n", "k8s-api-server"},
		{"enable-k8s not a bool", base + "pod-cidr: 10.1.1.0/24\nenable-k8s: maybe\n", "enable-k8s"},
		{"enable-k8s false with a kubeconfig", base + "pod-cidr: 10.1.1.0/24\nenable-k8s: false\nk8s-kubeconfig-path: /k\n", "enable-k8s"},
		{"enable-k8s false with ipam kubernetes", base + "enable-k8s: false\nipam: kubernetes\n", "enable-k8s"},
		{"kubernetes and etcd", base + "pod-cidr: 10.1.1.0/24\nk8s-api-server: https://10.169.72.10:6443\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "kvstore"},
		{"no pod-cidr without ipam kubernetes", base + "k8s-api-server: https://10.169.72.10:6443\n", "pod-cidr"},
	}
	for _, tt := range bad {
		c, err := Parse([]byte(tt.yaml))
		if err == nil {
			err = c.Validate()
		}
		var e *Error
		var es Errors
		switch {
		case errors.As(err, &e):
		case errors.As(err, &es) && len(es) > 0:
			e = es[0]
		default:
			t.Errorf("%s: error %v, want one on %s", tt.name, err, tt.key)
			continue
		}
		if e.Key != tt.key {
			t.Errorf("%s: error on %q (%v), want %q", tt.name, e.Key, e, tt.key)
		}
	}
}

// TestK8sPodCIDRsFilled: the pod CIDRs the agent reads from the Node
// object pass validation with ipam: kubernetes, and Get still reports
// no pod-cidr key given.
func TestK8sPodCIDRsFilled(t *testing.T) {
	c, err := Parse([]byte("node-ip: 10.169.72.233\nipam: kubernetes\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v4, v6 := c.KubeFamilies(); !v4 || !v6 {
		t.Fatalf("KubeFamilies %v %v", v4, v6)
	}
	c.PodCIDR, c.PodCIDR6 = netip.MustParsePrefix("10.1.3.0/24"), netip.MustParsePrefix("fd00:1:3::/64")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.EnableIPv4 || !c.EnableIPv6 || c.kubePending() {
		t.Fatalf("after filling: %+v", c)
	}
	c, _ = Parse([]byte("node-ip: 10.169.72.233\nipam: kubernetes\nenable-ipv6: false\n"))
	if v4, v6 := c.KubeFamilies(); !v4 || v6 {
		t.Fatalf("enable-ipv6 false: KubeFamilies %v %v", v4, v6)
	}
}
