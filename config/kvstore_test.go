package config

import (
	"errors"
	"net/netip"
	"testing"
)

// auto6 is a pod-cidr: auto configuration with an IPv6 pool, /48.
const auto6 = "node-ip: fd69:72::233\npod-cidr: auto\ncluster-pool-ipv6-cidr: fd00:1::/48\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n"

func TestKVStoreKeys(t *testing.T) {
	good := []struct{ name, yaml string }{
		{"mapping", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: \"http://127.0.0.1:2379\"}\n"},
		{"json string", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nkvstore: etcd\nkvstore-opt: '{\"etcd.config\": \"/etc/vxdp/etcd.config\"}'\n"},
		{"auto", "node-ip: 10.169.72.233\npod-cidr: auto\ncluster-pool-ipv4-cidr: 10.1.0.0/16\ncluster-pool-ipv4-mask-size: \"26\"\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: \"http://127.0.0.1:2379\"}\n"},
	}
	for _, tt := range good {
		c, err := Parse([]byte(tt.yaml))
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	c, _ := Parse([]byte(good[2].yaml))
	if !c.PodCIDRAuto || c.PodCIDRMaskSize != 26 || c.KVStoreOpt["etcd.endpoints"] != "http://127.0.0.1:2379" {
		t.Fatalf("parsed %+v", c)
	}
	if v4, v6 := c.AutoFamilies(); !v4 || v6 {
		t.Fatalf("an IPv4 pool only: auto claims v4 %v v6 %v", v4, v6)
	}
	bad := []struct{ name, yaml, key string }{
		{"auto without kvstore", "node-ip: 10.169.72.233\npod-cidr: auto\ncluster-pool-ipv4-cidr: 10.1.0.0/16\n", "pod-cidr"},
		{"auto without cluster", "node-ip: 10.169.72.233\npod-cidr: auto\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "pod-cidr"},
		{"mask not longer", "node-ip: 10.169.72.233\npod-cidr: auto\ncluster-pool-ipv4-cidr: 10.1.0.0/16\ncluster-pool-ipv4-mask-size: 16\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "cluster-pool-ipv4-mask-size"},
		{"mask out of range", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\ncluster-pool-ipv4-mask-size: 31\n", "cluster-pool-ipv4-mask-size"},
		{"auto without either pool", "node-ip: 10.169.72.233\npod-cidr: auto\nenable-ipv4: false\ncluster-pool-ipv4-cidr: 10.1.0.0/16\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "pod-cidr"},
		{"enable-ipv6 without its pool", "node-ip: 10.169.72.233\npod-cidr: auto\nenable-ipv6: true\ncluster-pool-ipv4-cidr: 10.1.0.0/16\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "enable-ipv6"},
		{"ipv6 mask not longer", auto6 + "cluster-pool-ipv6-mask-size: 48\n", "cluster-pool-ipv6-mask-size"},
		{"ipv6 mask too long", auto6 + "cluster-pool-ipv6-mask-size: 127\n", "cluster-pool-ipv6-mask-size"},
		{"ipv6 mask too short", auto6 + "cluster-pool-ipv6-mask-size: 8\n", "cluster-pool-ipv6-mask-size"},
		{"ipv6 mask not a number", auto6 + "cluster-pool-ipv6-mask-size: /64\n", "cluster-pool-ipv6-mask-size"},
		{"ipv6 pool of the other family", "node-ip: 10.169.72.233\npod-cidr: auto\ncluster-pool-ipv6-cidr: 10.2.0.0/16\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "cluster-pool-ipv6-cidr"},
		{"auto IPv6 with direct routes over IPv4", "node-ip: 10.169.72.233\npod-cidr: auto\nrouting-mode: native\nauto-direct-node-routes: true\ncluster-pool-ipv6-cidr: fd00:1::/48\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "auto-direct-node-routes"},
		{"kvstore without options", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nkvstore: etcd\n", "kvstore-opt"},
		{"unknown kvstore", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nkvstore: consul\n", "kvstore"},
		{"options not strings", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nkvstore-opt: '[1,2]'\n", "kvstore-opt"},
	}
	for _, tt := range bad {
		c, err := Parse([]byte(tt.yaml))
		if err == nil {
			err = c.Validate()
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tt.key {
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.key)
		}
	}
}

// pod-cidr: auto claims a block of each pool that is set; the node's pod
// CIDRs, once claimed, are checked as if written in the file.
func TestAutoDualStack(t *testing.T) {
	c, err := Parse([]byte(auto6 + "cluster-pool-ipv4-cidr: 10.1.0.0/16\ncluster-pool-ipv6-mask-size: \"64\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PodCIDRMaskSize6 != 64 {
		t.Fatalf("mask size %d", c.PodCIDRMaskSize6)
	}
	if v4, v6 := c.AutoFamilies(); !v4 || !v6 {
		t.Fatalf("both pools: auto claims v4 %v v6 %v", v4, v6)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("before the claim: %v", err)
	}
	// Half claimed: still waiting for the other family.
	c.PodCIDR = netip.MustParsePrefix("10.1.3.0/24")
	if err := c.Validate(); err != nil || !c.autoPending() {
		t.Fatalf("half claimed: %v, pending %v", err, c.autoPending())
	}
	c.PodCIDR6 = netip.MustParsePrefix("fd00:1:0:3::/64")
	if err := c.Validate(); err != nil || c.autoPending() || !c.EnableIPv4 || !c.EnableIPv6 {
		t.Fatalf("claimed: %v, pending %v, families %v %v", err, c.autoPending(), c.EnableIPv4, c.EnableIPv6)
	}
	// A block outside the pool (an old claim of another pool) is refused.
	c.PodCIDR6 = netip.MustParsePrefix("fd00:2::/64")
	var ce *Error
	if err := c.Validate(); !errors.As(err, &ce) || ce.Key != "pod-cidr" {
		t.Fatalf("block outside the pool: %v", err)
	}

	// enable-ipv4: false leaves the IPv4 pool alone.
	c, err = Parse([]byte(auto6 + "cluster-pool-ipv4-cidr: 10.1.0.0/16\nenable-ipv4: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v4, v6 := c.AutoFamilies(); v4 || !v6 || c.PodCIDRMaskSize6 != 120 {
		t.Fatalf("enable-ipv4 false: auto claims v4 %v v6 %v, mask size %d", v4, v6, c.PodCIDRMaskSize6)
	}
	c.PodCIDR6 = netip.MustParsePrefix("fd00:1::100/120")
	if err := c.Validate(); err != nil || c.PodCIDR.IsValid() || c.EnableIPv4 {
		t.Fatalf("IPv6 only: %v", err)
	}
}
