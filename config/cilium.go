package config

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
)

// ciliumKeysText is Cilium's list of configuration keys, one a line, with
// comment lines that say where it comes from (scripts/cilium-keys.sh).
//
//go:embed cilium_keys.txt
var ciliumKeysText string

// ciliumKeys holds every key a cilium-config ConfigMap can hold. A source
// that sets one vxdp does not implement is not wrong, only written for
// Cilium: the key is ignored and reported by Ignored, where any other
// unknown key is an error.
var ciliumKeys = func() map[string]bool {
	m := make(map[string]bool)
	for _, line := range strings.Split(ciliumKeysText, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			m[line] = true
		}
	}
	return m
}()

// isCiliumKey reports whether key is one of Cilium's configuration keys.
func isCiliumKey(key string) bool { return ciliumKeys[key] }

// Ignored returns the Cilium keys the sources set that vxdp does not use,
// sorted, each once; nil when there were none. The caller says so once
// (IgnoredMessage): such a key is not an error, but its setting has no
// effect here.
func (c *Config) Ignored() []string { return slices.Clone(c.ignored) }

// IgnoredMessage is the one-line warning for the keys Ignored returns:
//
//	ignoring 2 Cilium keys vxdp does not use: bpf-lb-map-max, debug
func IgnoredMessage(keys []string) string {
	noun := "keys"
	if len(keys) == 1 {
		noun = "key"
	}
	return fmt.Sprintf("ignoring %d Cilium %s vxdp does not use: %s", len(keys), noun, strings.Join(keys, ", "))
}

// addIgnored merges keys into the sorted set of ignored keys.
func (c *Config) addIgnored(keys []string) {
	if len(keys) == 0 {
		return
	}
	all := append(slices.Clone(c.ignored), keys...)
	slices.Sort(all)
	c.ignored = slices.Compact(all)
}
