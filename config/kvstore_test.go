package config

import (
	"errors"
	"testing"
)

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
	bad := []struct{ name, yaml, key string }{
		{"auto without kvstore", "node-ip: 10.169.72.233\npod-cidr: auto\ncluster-pool-ipv4-cidr: 10.1.0.0/16\n", "pod-cidr"},
		{"auto without cluster", "node-ip: 10.169.72.233\npod-cidr: auto\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "pod-cidr"},
		{"mask not longer", "node-ip: 10.169.72.233\npod-cidr: auto\ncluster-pool-ipv4-cidr: 10.1.0.0/16\ncluster-pool-ipv4-mask-size: 16\nkvstore: etcd\nkvstore-opt: {etcd.endpoints: x}\n", "cluster-pool-ipv4-mask-size"},
		{"mask out of range", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\ncluster-pool-ipv4-mask-size: 31\n", "cluster-pool-ipv4-mask-size"},
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
