// Package identity holds vxdp's security identities: Cilium's reserved
// numbers and names (docs.cilium.io, "Identity Management"), their parsing,
// and the rules that map them onto the 24-bit VNI of the tunnel header and
// back. The engine enforces per-endpoint ingress policy over these
// identities (dataplane/policy.go).
package identity

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ID is a security identity. On the wire it travels as the VNI, so only
// the low 24 bits are usable.
type ID uint32

// Reserved identities, numbered as Cilium numbers them.
const (
	Unknown       ID = 0
	Host          ID = 1
	World         ID = 2
	Unmanaged     ID = 3
	Health        ID = 4
	Init          ID = 5
	RemoteNode    ID = 6
	KubeAPIServer ID = 7
	Ingress       ID = 8
	WorldIPv4     ID = 9
	WorldIPv6     ID = 10

	// MinWorkload is the first identity available to workloads.
	MinWorkload ID = 256
	// DefaultWorkload is given to an endpoint created without an identity:
	// the first workload number, so unlabelled pods share one identity the
	// way pods with equal labels do in Cilium.
	DefaultWorkload ID = 256
	// Max is the largest identity a VNI can carry.
	Max ID = 1<<24 - 1
)

var reservedNames = map[ID]string{
	Unknown:       "unknown",
	Host:          "host",
	World:         "world",
	Unmanaged:     "unmanaged",
	Health:        "health",
	Init:          "init",
	RemoteNode:    "remote-node",
	KubeAPIServer: "kube-apiserver",
	Ingress:       "ingress",
	WorldIPv4:     "world-ipv4",
	WorldIPv6:     "world-ipv6",
}

// Errors.
var (
	ErrInvalidVNI = errors.New("vni carries no valid source identity")
	ErrRange      = errors.New("identity out of 24-bit range")
)

// IsReserved reports whether id is one of the reserved numbers below 256.
func (id ID) IsReserved() bool { return id < MinWorkload }

// String returns the reserved name, or the number for workloads.
func (id ID) String() string {
	if n, ok := reservedNames[id]; ok {
		return n
	}
	return strconv.FormatUint(uint64(id), 10)
}

// Parse accepts a number or a reserved name ("world", "remote-node", ...).
func Parse(s string) (ID, error) {
	s = strings.TrimSpace(s)
	for id, n := range reservedNames {
		if strings.EqualFold(n, s) {
			return id, nil
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("identity %q: not a number or reserved name", s)
	}
	if v > uint64(Max) {
		return 0, fmt.Errorf("identity %q: %w", s, ErrRange)
	}
	return ID(v), nil
}

// ToVNI maps the identity of a packet's sender onto the VNI it is sent
// with. world-ipv4 and world-ipv6 fold to world, and the host identity is
// never put on the wire: what the node itself originates reaches peers as
// remote-node, which is what it is to them.
func ToVNI(id ID) (uint32, error) {
	switch id {
	case WorldIPv4, WorldIPv6:
		return uint32(World), nil
	case Host:
		return uint32(RemoteNode), nil
	case Unknown:
		return 0, ErrInvalidVNI
	}
	if id > Max {
		return 0, ErrRange
	}
	return uint32(id), nil
}

// FromVNI maps a received VNI onto the sender's identity. VNI 0 (unknown)
// and 1 (host: a peer can never be our host) are refused.
func FromVNI(vni uint32) (ID, error) {
	if vni == uint32(Unknown) || vni == uint32(Host) || vni > uint32(Max) {
		return 0, ErrInvalidVNI
	}
	return ID(vni), nil
}

// Reserved lists the reserved identities in numeric order.
func Reserved() []ID {
	ids := make([]ID, 0, len(reservedNames))
	for id := range reservedNames {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
