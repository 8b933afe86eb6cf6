package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/vxdp/vxdp/identity"
)

// lease is one attachment of a container to the node's pod network: the
// addresses the agent handed it and the endpoint that carries them. It is
// keyed by container ID and interface name, as the CNI specification keys
// an attachment.
type lease struct {
	ContainerID string     `json:"container_id"`
	Ifname      string     `json:"ifname"`
	Endpoint    string     `json:"endpoint"`
	Network     string     `json:"network,omitempty"` // the CNI network's name
	Netns       string     `json:"netns,omitempty"`
	IP          netip.Addr `json:"ip,omitzero"`
	IP6         netip.Addr `json:"ip6,omitzero"`
	// The endpoint's identity and policy, for bringing it back when a
	// clean stop of the agent removed it.
	Identity  identity.ID   `json:"identity,omitempty"`
	AllowFrom []identity.ID `json:"allow_from,omitempty"`
	// The Kubernetes pod, whose annotations change the two above; only
	// when the request did not set them itself.
	PodNamespace string `json:"pod_namespace,omitempty"`
	PodName      string `json:"pod_name,omitempty"`
}

type attachment struct{ containerID, ifname string }

func (l *lease) key() attachment { return attachment{l.ContainerID, l.Ifname} }

var (
	// errExhausted is returned when a pod CIDR has no address left.
	errExhausted = errors.New("no free address left")
	// errRecord is returned when a change of the leases could not be
	// written: nothing was handed out or released.
	errRecord = errors.New("leases not recorded")
)

// ipam hands out pod addresses from the node's pod CIDRs. Every lease is
// written to its file (fsync, rename) before the caller creates anything
// with it, and removed from the file only after what it carried is gone,
// so that an agent or a plugin killed at any moment never leaves an
// address that two containers could be given: a lease without its
// endpoint stays reserved until the runtime deletes or garbage-collects
// the attachment. The file outlives a clean stop: containers do.
type ipam struct {
	mu     sync.Mutex
	path   string // "" keeps leases in memory only (no state-dir)
	v4, v6 netip.Prefix
	// reserved are addresses no lease may take: the host device's.
	reserved map[netip.Addr]bool
	leases   map[attachment]*lease
	used     map[netip.Addr]*lease
	next4    netip.Addr // where the next IPv4 search starts
	next6    netip.Addr
}

// newIPAM loads the leases of path (none when it does not exist). Leases
// whose addresses lie outside the pod CIDRs now configured are returned
// as dropped, for the caller to report, and not kept.
func newIPAM(path string, v4, v6 netip.Prefix, reserved []netip.Addr) (*ipam, []lease, error) {
	m := &ipam{path: path, v4: v4, v6: v6, reserved: map[netip.Addr]bool{},
		leases: map[attachment]*lease{}, used: map[netip.Addr]*lease{}}
	for _, a := range reserved {
		m.reserved[a] = true
	}
	if v4.IsValid() {
		m.next4 = v4.Addr()
	}
	if v6.IsValid() {
		m.next6 = v6.Addr()
	}
	if path == "" {
		return m, nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var file struct {
		Leases []lease `json:"leases"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var dropped []lease
	for i := range file.Leases {
		l := file.Leases[i]
		if !m.fits(l) || m.leases[l.key()] != nil || m.used[l.IP] != nil || m.used[l.IP6] != nil {
			dropped = append(dropped, l)
			continue
		}
		m.add(&l)
	}
	if len(dropped) > 0 {
		// On a full disk the file keeps them, and the next start drops
		// them again.
		if err := m.save(); err != nil && !noSpace(err) {
			return nil, nil, err
		}
	}
	return m, dropped, nil
}

// fits reports whether a loaded lease still belongs to this node's CIDRs.
func (m *ipam) fits(l lease) bool {
	if l.ContainerID == "" || l.Ifname == "" || l.Endpoint == "" {
		return false
	}
	if !l.IP.IsValid() && !l.IP6.IsValid() {
		return false
	}
	if l.IP.IsValid() && (!m.v4.IsValid() || !m.v4.Contains(l.IP)) {
		return false
	}
	return !l.IP6.IsValid() || m.v6.IsValid() && m.v6.Contains(l.IP6)
}

func (m *ipam) add(l *lease) {
	m.leases[l.key()] = l
	if l.IP.IsValid() {
		m.used[l.IP] = l
	}
	if l.IP6.IsValid() {
		m.used[l.IP6] = l
	}
}

func (m *ipam) remove(l *lease) {
	delete(m.leases, l.key())
	delete(m.used, l.IP)
	delete(m.used, l.IP6)
}

// get returns a copy of the lease of an attachment.
func (m *ipam) get(containerID, ifname string) (lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.leases[attachment{containerID, ifname}]
	if l == nil {
		return lease{}, false
	}
	return *l, true
}

// list returns every lease, by container ID and interface.
func (m *ipam) list() []lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ContainerID != out[j].ContainerID {
			return out[i].ContainerID < out[j].ContainerID
		}
		return out[i].Ifname < out[j].Ifname
	})
	return out
}

// setPolicy records a new identity and allow-list of a lease.
func (m *ipam) setPolicy(containerID, ifname string, id identity.ID, allow []identity.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.leases[attachment{containerID, ifname}]
	if l == nil {
		return nil
	}
	oldID, oldAllow := l.Identity, l.AllowFrom
	l.Identity, l.AllowFrom = id, allow
	if err := m.save(); err != nil {
		l.Identity, l.AllowFrom = oldID, oldAllow
		return fmt.Errorf("%w: %w", errRecord, err)
	}
	return nil
}

// byEndpoint returns the lease whose endpoint has the given name.
func (m *ipam) byEndpoint(name string) (lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.leases {
		if l.Endpoint == name {
			return *l, true
		}
	}
	return lease{}, false
}

// leased reports whether an address is leased.
func (m *ipam) leased(a netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used[a] != nil
}

// allocate records a lease for the attachment of tmpl (container,
// interface, endpoint name and what else the lease keeps): an address of each
// configured family, the requested ones where given (each must be free
// and inside its pod CIDR), none of busy (the addresses endpoints outside
// IPAM hold), and persists it before returning. An attachment that
// already has a lease is an error: the runtime deletes before it adds
// again.
func (m *ipam) allocate(tmpl lease, want []netip.Addr, busy map[netip.Addr]bool) (lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases[tmpl.key()] != nil {
		return lease{}, fmt.Errorf("container %s already has interface %s on this network", tmpl.ContainerID, tmpl.Ifname)
	}
	for _, l := range m.leases {
		if l.Endpoint == tmpl.Endpoint {
			return lease{}, fmt.Errorf("endpoint name %s is taken by container %s", tmpl.Endpoint, l.ContainerID)
		}
	}
	l := &tmpl
	l.IP, l.IP6 = netip.Addr{}, netip.Addr{}
	for _, a := range want {
		a = a.Unmap()
		p, dst := m.v4, &l.IP
		if a.Is6() {
			p, dst = m.v6, &l.IP6
		}
		if dst.IsValid() {
			return lease{}, fmt.Errorf("two addresses of one family requested: %s and %s", *dst, a)
		}
		if !p.IsValid() {
			return lease{}, fmt.Errorf("address %s requested, but the node has no pod CIDR of its family", a)
		}
		if !m.usable(p, a) {
			return lease{}, fmt.Errorf("address %s requested is not a usable pod address of %s", a, p)
		}
		if m.used[a] != nil || busy[a] {
			return lease{}, fmt.Errorf("address %s requested is in use", a)
		}
		*dst = a
	}
	if m.v4.IsValid() && !l.IP.IsValid() {
		a, err := m.search(m.v4, &m.next4, busy)
		if err != nil {
			return lease{}, err
		}
		l.IP = a
	}
	if m.v6.IsValid() && !l.IP6.IsValid() {
		a, err := m.search(m.v6, &m.next6, busy)
		if err != nil {
			return lease{}, err
		}
		l.IP6 = a
	}
	m.add(l)
	if err := m.save(); err != nil {
		m.remove(l)
		return lease{}, fmt.Errorf("%w: %w", errRecord, err)
	}
	return *l, nil
}

// release forgets an attachment's lease and persists that; an unknown
// attachment is no error (DEL is idempotent).
func (m *ipam) release(containerID, ifname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.leases[attachment{containerID, ifname}]
	if l == nil {
		return nil
	}
	m.remove(l)
	if err := m.save(); err != nil {
		m.add(l)
		return fmt.Errorf("%w: %w", errRecord, err)
	}
	return nil
}

// usable reports whether a may be a pod's address in p: inside it, not
// its network address, not the IPv4 broadcast address, not reserved.
func (m *ipam) usable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Addr() || m.reserved[a] {
		return false
	}
	return !a.Is4() || p.Bits() >= 31 || a != lastAddr(p)
}

// search finds the next free address of p from *next on, wrapping once
// around the CIDR, so that a released address is reused as late as
// possible (a peer's connection state for it has time to age out). It
// gives up after a bounded number of candidates in a huge IPv6 CIDR.
func (m *ipam) search(p netip.Prefix, next *netip.Addr, busy map[netip.Addr]bool) (netip.Addr, error) {
	const maxTries = 1 << 20
	start := *next
	a := start
	for range maxTries {
		if a = a.Next(); !a.IsValid() || !p.Contains(a) {
			a = p.Addr()
		}
		if m.usable(p, a) && m.used[a] == nil && !busy[a] {
			*next = a
			return a, nil
		}
		if a == start {
			break
		}
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s: %w", p, errExhausted)
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// save writes every lease to the file, durably: a crash right after save
// returns finds the new file or, before it, the old one, never a torn one.
func (m *ipam) save() error {
	if m.path == "" {
		return nil
	}
	var file struct {
		Leases []*lease `json:"leases"`
	}
	file.Leases = make([]*lease, 0, len(m.leases))
	for _, l := range m.leases {
		file.Leases = append(file.Leases, l)
	}
	sort.Slice(file.Leases, func(i, j int) bool {
		a, b := file.Leases[i], file.Leases[j]
		return a.ContainerID < b.ContainerID || a.ContainerID == b.ContainerID && a.Ifname < b.Ifname
	})
	b, err := json.Marshal(&file)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(m.path), 0o750); err != nil {
		return err
	}
	tmp := m.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return err
	}
	// The rename itself reaches the disk with the directory.
	if d, err := os.Open(filepath.Dir(m.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
