package kvstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unicode"
)

// NodeRecord is what a node publishes about itself: enough for every other
// node to put it in its tunnel map. It is stored as JSON under
// <prefix>nodes/<name>; the field names match dataplane.NodeSpec's.
type NodeRecord struct {
	Name     string       `json:"name"`
	IP       netip.Addr   `json:"ip"`                 // underlay address
	PodCIDR  netip.Prefix `json:"pod_cidr"`           // its IPv4 pods
	PodCIDR6 netip.Prefix `json:"pod_cidr6,omitzero"` // its IPv6 pods
	Protocol string       `json:"protocol,omitempty"`
	Port     uint16       `json:"port,omitempty"`
}

// VTEPRecord is one VTEP: the CIDR behind it, its underlay address and the
// MAC its inner frames are sent to. Stored as JSON under
// <prefix>vteps/<cidr>.
type VTEPRecord struct {
	CIDR     netip.Prefix `json:"cidr"`
	Endpoint netip.Addr   `json:"endpoint"`
	MAC      string       `json:"mac"`
}

// EventKind says what happened to a node.
type EventKind uint8

// Event kinds.
const (
	EventPut    EventKind = iota + 1 // added or changed
	EventDelete                      // gone
)

func (k EventKind) String() string {
	switch k {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is a change in the node set. For EventDelete, Node is the record
// last seen, so that the consumer knows which pod CIDR to withdraw.
type Event struct {
	Kind EventKind
	Node NodeRecord
}

// ErrInvalid marks a record or argument that cannot be stored.
var ErrInvalid = errors.New("invalid")

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w node name: empty", ErrInvalid)
	}
	if len(name) > 253 {
		return fmt.Errorf("%w node name %.20q...: longer than 253 bytes", ErrInvalid, name)
	}
	// The name is the last element of a key: a "/" would move the record
	// out of the place the watchers look in.
	for _, r := range name {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%w node name %q: no '/', white space or control characters", ErrInvalid, name)
		}
	}
	return nil
}

func (n *NodeRecord) check() error {
	if err := checkName(n.Name); err != nil {
		return err
	}
	if !n.IP.IsValid() || n.IP.IsUnspecified() {
		return fmt.Errorf("%w node %s: no IP address", ErrInvalid, n.Name)
	}
	if !n.PodCIDR.IsValid() && !n.PodCIDR6.IsValid() {
		return fmt.Errorf("%w node %s: no pod CIDR", ErrInvalid, n.Name)
	}
	for _, p := range []netip.Prefix{n.PodCIDR, n.PodCIDR6} {
		if p.IsValid() && p != p.Masked() {
			return fmt.Errorf("%w node %s: pod CIDR %s has host bits set", ErrInvalid, n.Name, p)
		}
	}
	if n.PodCIDR.IsValid() && !n.PodCIDR.Addr().Is4() || n.PodCIDR6.IsValid() && !n.PodCIDR6.Addr().Is6() {
		return fmt.Errorf("%w node %s: pod CIDRs %s, %s: want pod_cidr IPv4 and pod_cidr6 IPv6", ErrInvalid, n.Name, n.PodCIDR, n.PodCIDR6)
	}
	return nil
}

// decodeNode parses the record stored under nodes/<name>; a record whose
// name disagrees with its key is refused, as it would otherwise shadow
// another node.
func decodeNode(name string, b []byte) (NodeRecord, error) {
	var n NodeRecord
	if err := json.Unmarshal(b, &n); err != nil {
		return NodeRecord{}, err
	}
	if n.Name != name {
		return NodeRecord{}, fmt.Errorf("record names node %q", n.Name)
	}
	if err := n.check(); err != nil {
		return NodeRecord{}, err
	}
	return n, nil
}

// normalize checks v and rewrites the MAC in one spelling, so that equal
// records compare equal whoever wrote them.
func (v *VTEPRecord) normalize() error {
	if !v.CIDR.IsValid() || !v.CIDR.Addr().Is4() {
		return fmt.Errorf("%w VTEP CIDR %s: want an IPv4 prefix", ErrInvalid, v.CIDR)
	}
	if v.CIDR != v.CIDR.Masked() {
		return fmt.Errorf("%w VTEP CIDR %s: host bits set", ErrInvalid, v.CIDR)
	}
	// The endpoint is an underlay address of either family (the CIDR
	// behind it stays IPv4); each agent keeps those of its own node-ip's.
	if !v.Endpoint.IsValid() || v.Endpoint.IsUnspecified() || v.Endpoint.Zone() != "" || v.Endpoint.Is4In6() {
		return fmt.Errorf("%w VTEP %s: endpoint %s is not an underlay address", ErrInvalid, v.CIDR, v.Endpoint)
	}
	mac, err := net.ParseMAC(v.MAC)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("%w VTEP %s: MAC %q is not an Ethernet address", ErrInvalid, v.CIDR, v.MAC)
	}
	v.MAC = mac.String()
	return nil
}

func decodeVTEP(name string, b []byte) (VTEPRecord, error) {
	var v VTEPRecord
	if err := json.Unmarshal(b, &v); err != nil {
		return VTEPRecord{}, err
	}
	if err := v.normalize(); err != nil {
		return VTEPRecord{}, err
	}
	if prefixKey(v.CIDR) != name {
		return VTEPRecord{}, fmt.Errorf("record is for %s", v.CIDR)
	}
	return v, nil
}

// prefixKey spells a prefix as a single key element: "10.1.2.0-24".
func prefixKey(p netip.Prefix) string {
	return strings.Replace(p.String(), "/", "-", 1)
}

func parsePrefixKey(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("%q: no prefix length", s)
	}
	return netip.ParsePrefix(s[:i] + "/" + s[i+1:])
}

// Sub-trees of the prefix.
const (
	nodesDir        = "nodes/"
	vtepsDir        = "vteps/"
	podCIDRDir      = "podcidr/"
	podCIDROwnsDir  = "podcidr-owners/"  // node name -> its IPv4 block, the reverse of podcidr/
	podCIDR6OwnsDir = "podcidr6-owners/" // node name -> its IPv6 block
)
