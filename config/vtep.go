package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// rawKeys keeps what the sources wrote for keys whose effect depends on
// other keys. Holding the parts and combining them after every change
// makes the result independent of the order the keys arrive in, which
// neither a YAML mapping nor a directory listing promises.
type rawKeys struct {
	// tunnel is the legacy `tunnel` key as last given ("" = not given).
	tunnel string
	// enableIPv4 and enableIPv6 are those keys as given, normalized
	// ("" = not given: the family follows pod-cidr).
	enableIPv4, enableIPv6 string
	// podCIDRGiven says pod-cidr was given a value; ipam: kubernetes
	// refuses one, while the pod CIDRs the agent fills in from the Node
	// object are fine. (A flag, not the text: the text of a CIDR is not
	// kept, so a configuration written out and read again is the same.)
	podCIDRGiven bool
	// enableK8s is enable-k8s as given, normalized ("" = not given).
	enableK8s string

	// The four vtep-* keys, parsed. vtepGiven is set once any of them has
	// been given a non-empty value.
	vtepGiven     bool
	vtepEndpoints []netip.Addr
	vtepCIDRs     []vtepCIDR
	vtepMaskBits  int
	vtepMaskGiven bool
	vtepMACs      []net.HardwareAddr
}

// vtepCIDR is one word of vtep-cidr: an address with the prefix length it
// was written with, or bits < 0 when it was written bare and takes its
// length from vtep-mask.
type vtepCIDR struct {
	addr netip.Addr
	bits int
}

func (v vtepCIDR) String() string {
	if v.bits < 0 {
		return v.addr.String()
	}
	return fmt.Sprintf("%s/%d", v.addr, v.bits)
}

func setVTEPEndpoints(c *Config, s string) error {
	var eps []netip.Addr
	for _, w := range strings.Fields(s) {
		a, err := parseAddr(w)
		if err != nil {
			return &Error{Key: "vtep-endpoint", Value: w, Reason: err.Error()}
		}
		if err := checkNodeAddr(a); err != nil {
			return &Error{Key: "vtep-endpoint", Value: w, Reason: err.Error()}
		}
		// Endpoints are underlay addresses, all of node-ip's family
		// (Validate checks which): a mixed list is never right.
		if len(eps) > 0 && a.Is4() != eps[0].Is4() {
			return &Error{Key: "vtep-endpoint", Value: w, Reason: "of another address family than " + eps[0].String() + ": all are of node-ip's family"}
		}
		eps = append(eps, a)
	}
	c.raw.vtepEndpoints = eps
	c.buildVTEPs()
	return nil
}

func setVTEPCIDRs(c *Config, s string) error {
	var cidrs []vtepCIDR
	for _, w := range strings.Fields(s) {
		v, err := parseVTEPCIDR(w)
		if err != nil {
			return &Error{Key: "vtep-cidr", Value: w, Reason: err.Error()}
		}
		cidrs = append(cidrs, v)
	}
	c.raw.vtepCIDRs = cidrs
	c.buildVTEPs()
	return nil
}

// parseVTEPCIDR accepts "a.b.c.d/len" or a bare "a.b.c.d" that vtep-mask
// completes. Only IPv4: Cilium's VTEP support is IPv4-only, and so are the
// devices it is meant for.
func parseVTEPCIDR(w string) (vtepCIDR, error) {
	if !strings.Contains(w, "/") {
		a, err := parseAddr(w)
		if err != nil {
			return vtepCIDR{}, err
		}
		if !a.Is4() {
			return vtepCIDR{}, reason("VTEP CIDRs are IPv4")
		}
		return vtepCIDR{addr: a, bits: -1}, nil
	}
	p, err := parsePrefix(w)
	if err != nil {
		return vtepCIDR{}, err
	}
	if !p.Addr().Is4() {
		return vtepCIDR{}, reason("VTEP CIDRs are IPv4")
	}
	return vtepCIDR{addr: p.Addr(), bits: p.Bits()}, nil
}

func setVTEPMask(c *Config, s string) error {
	if s == "" {
		c.raw.vtepMaskGiven, c.raw.vtepMaskBits = false, 0
		c.buildVTEPs()
		return nil
	}
	bits, err := parseDottedMask(s)
	if err != nil {
		return err
	}
	c.raw.vtepMaskGiven, c.raw.vtepMaskBits = true, bits
	c.buildVTEPs()
	return nil
}

func setVTEPMACs(c *Config, s string) error {
	var macs []net.HardwareAddr
	for _, w := range strings.Fields(s) {
		m, err := parseMAC(w)
		if err != nil {
			return &Error{Key: "vtep-mac", Value: w, Reason: err.Error()}
		}
		macs = append(macs, m)
	}
	c.raw.vtepMACs = macs
	c.buildVTEPs()
	return nil
}

// buildVTEPs combines the vtep-* keys into VTEPs whenever they fit
// together, and leaves VTEPs empty while they do not; vtepProblem tells
// Validate why.
func (c *Config) buildVTEPs() {
	r := &c.raw
	r.vtepGiven = len(r.vtepEndpoints) > 0 || len(r.vtepCIDRs) > 0 || len(r.vtepMACs) > 0 || r.vtepMaskGiven
	if !r.vtepGiven {
		c.VTEPs = nil
		return
	}
	if c.vtepProblem() != nil {
		c.VTEPs = nil
		return
	}
	vteps := make([]VTEP, len(r.vtepEndpoints))
	for i := range vteps {
		bits := r.vtepCIDRs[i].bits
		if bits < 0 {
			bits = r.vtepMaskBits
		}
		vteps[i] = VTEP{
			Endpoint: r.vtepEndpoints[i],
			CIDR:     netip.PrefixFrom(r.vtepCIDRs[i].addr, bits).Masked(),
			MAC:      r.vtepMACs[i],
		}
	}
	c.VTEPs = vteps
}

// vtepProblem reports why the vtep-* keys do not combine: lists of
// different lengths, or a bare address with no vtep-mask to complete it.
func (c *Config) vtepProblem() *Error {
	r := &c.raw
	n := len(r.vtepEndpoints)
	if len(r.vtepCIDRs) != n {
		return &Error{Key: "vtep-cidr", Value: joinWords(r.vtepCIDRs),
			Reason: fmt.Sprintf("%d entries, but vtep-endpoint has %d", len(r.vtepCIDRs), n)}
	}
	if len(r.vtepMACs) != n {
		return &Error{Key: "vtep-mac", Value: joinWords(r.vtepMACs),
			Reason: fmt.Sprintf("%d entries, but vtep-endpoint has %d", len(r.vtepMACs), n)}
	}
	if !r.vtepMaskGiven {
		for _, v := range r.vtepCIDRs {
			if v.bits < 0 {
				return &Error{Key: "vtep-cidr", Value: v.String(),
					Reason: "no prefix length, and no vtep-mask to supply one"}
			}
		}
	}
	return nil
}

func joinWords[T fmt.Stringer](ws []T) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.String()
	}
	return strings.Join(s, " ")
}
