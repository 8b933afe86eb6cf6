package identity

import (
	"errors"
	"testing"
)

func TestVNIMapping(t *testing.T) {
	tests := []struct {
		name string
		id   ID
		vni  uint32
		err  error
	}{
		{"workload", 1000, 1000, nil},
		{"first workload", MinWorkload, 256, nil},
		{"world", World, 2, nil},
		{"world-ipv4 folds", WorldIPv4, 2, nil},
		{"world-ipv6 folds", WorldIPv6, 2, nil},
		{"host sent as remote-node", Host, 6, nil},
		{"remote-node", RemoteNode, 6, nil},
		{"unknown refused", Unknown, 0, ErrInvalidVNI},
		{"largest", Max, 1<<24 - 1, nil},
		{"too large", Max + 1, 0, ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vni, err := ToVNI(tt.id)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ToVNI(%d) error %v, want %v", tt.id, err, tt.err)
			}
			if err == nil && vni != tt.vni {
				t.Fatalf("ToVNI(%d) = %d, want %d", tt.id, vni, tt.vni)
			}
		})
	}
}

func TestFromVNI(t *testing.T) {
	for _, vni := range []uint32{0, 1, 1 << 24} {
		if _, err := FromVNI(vni); !errors.Is(err, ErrInvalidVNI) {
			t.Errorf("FromVNI(%d) accepted", vni)
		}
	}
	for _, vni := range []uint32{2, 6, 256, 1<<24 - 1} {
		id, err := FromVNI(vni)
		if err != nil || uint32(id) != vni {
			t.Errorf("FromVNI(%d) = %d, %v", vni, id, err)
		}
	}
}

func TestParse(t *testing.T) {
	good := map[string]ID{"world": World, "Remote-Node": RemoteNode, "1000": 1000, " 2 ": World, "world-ipv6": WorldIPv6}
	for s, want := range good {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "worlds", "-1", "16777216", "0x10"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	if World.String() != "world" || ID(1000).String() != "1000" {
		t.Errorf("String: %s %s", World, ID(1000))
	}
	if r := Reserved(); len(r) != 11 || r[0] != Unknown || r[10] != WorldIPv6 {
		t.Errorf("Reserved() = %v", r)
	}
}
