package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func writeDir(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// configMapDir lays out dir the way the kubelet mounts a ConfigMap: the
// files live in a timestamped directory, "..data" links to it, and each
// key is a link through "..data".
func configMapDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2024_05_01_12_00_00.123456789")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	writeDir(t, ts, files)
	// A stray key inside the data directory must not be read as a key.
	writeDir(t, ts, map[string]string{"not-a-key": "x"})
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestApplyDir(t *testing.T) {
	dir := configMapDir(t, map[string]string{
		"routing-mode":    "native\n",
		"tunnel-protocol": "  geneve  ",
		"mtu":             "9000\n",
		"enable-ipsec":    "false",
		"node-ip":         "10.169.72.234",
		"device":          "",
		"nodes":           "- name: node3\n  ip: 10.169.72.239\n  pod-cidr: 10.1.3.0/24\n",
	})
	writeDir(t, dir, map[string]string{".hidden": "ignored"})

	c := parse(t, base+"device: eth1\nunderlay: udp\n")
	if err := c.ApplyDir(dir); err != nil {
		t.Fatal(err)
	}
	// The directory overrides the file key by key, and leaves the rest.
	if c.RoutingMode != "native" || c.TunnelProtocol != "geneve" || c.MTU != 9000 ||
		c.NodeIP != mustAddr("10.169.72.234") || c.Underlay != "udp" || c.Device != "" {
		t.Errorf("after ApplyDir: %+v", c)
	}
	if want := []Node{{Name: "node3", IP: mustAddr("10.169.72.239"), PodCIDR: mustPrefix("10.1.3.0/24")}}; !reflect.DeepEqual(c.Nodes, want) {
		t.Errorf("Nodes = %+v", c.Nodes)
	}
	// Flags override the directory.
	if err := c.Set("mtu", "1500"); err != nil || c.MTU != 1500 {
		t.Errorf("Set after ApplyDir: %v, mtu %d", err, c.MTU)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.TunnelPort != 6081 {
		t.Errorf("TunnelPort = %d", c.TunnelPort)
	}
}

func TestApplyDirErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantKey string
	}{
		{"unknown key", map[string]string{"mtu": "1500", "cluster-nmae": "default"}, "cluster-nmae"},
		{"bad value", map[string]string{"mtu": "1500 bytes"}, "mtu"},
		{"bad list item", map[string]string{"endpoints": "[{name: a, ip: x}]"}, "endpoints[0].ip"},
		{"bad list yaml", map[string]string{"nodes": "[{"}, "nodes"},
		{"contradiction", map[string]string{"tunnel": "disabled", "routing-mode": "tunnel"}, "tunnel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configMapDir(t, tt.files)
			c := parse(t, base)
			before := parse(t, base)
			e := wantKey(t, c.ApplyDir(dir), tt.wantKey)
			if e.File == "" {
				t.Errorf("error names no file: %v", e)
			}
			if !reflect.DeepEqual(c, before) {
				t.Errorf("a failed ApplyDir changed the config")
			}
		})
	}

	t.Run("every problem", func(t *testing.T) {
		dir := configMapDir(t, map[string]string{"mtu": "1500 bytes", "cluster-nmae": "default", "debug": "true",
			"tunnel": "disabled", "routing-mode": "tunnel", "underlay": "udp"})
		c := parse(t, base)
		before := parse(t, base)
		err := c.ApplyDir(dir)
		var errs Errors
		if !errors.As(err, &errs) {
			t.Fatalf("ApplyDir = %v (%T), want Errors", err, err)
		}
		var keys []string
		for _, e := range errs {
			if e.File == "" {
				t.Errorf("problem names no file: %v", e)
			}
			keys = append(keys, e.Key)
		}
		// Name order, then the contradiction between keys.
		if want := []string{"cluster-nmae", "mtu", "tunnel"}; !reflect.DeepEqual(keys, want) {
			t.Errorf("problems with %v, want %v:\n%v", keys, want, err)
		}
		if !reflect.DeepEqual(c, before) {
			t.Errorf("a failed ApplyDir changed the config")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		err := Default().ApplyDir(filepath.Join(t.TempDir(), "nope"))
		wantKey(t, err, "")
	})
	t.Run("directory as a key", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "mtu"), 0o700); err != nil {
			t.Fatal(err)
		}
		wantKey(t, Default().ApplyDir(dir), "mtu")
	})
	t.Run("legacy key overridden by a later source", func(t *testing.T) {
		dir := configMapDir(t, map[string]string{"routing-mode": "tunnel"})
		c := parse(t, base+"tunnel: disabled\n")
		if err := c.ApplyDir(dir); err != nil {
			t.Fatal(err)
		}
		if c.RoutingMode != "tunnel" {
			t.Errorf("RoutingMode = %q", c.RoutingMode)
		}
	})
}
