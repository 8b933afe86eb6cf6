package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The parsers below return short reasons rather than the standard
// library's errors, whose text repeats the input and names Go functions:
// the *Error around them already shows the value.

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, reason("want true or false")
}

func formatBool(b bool) string { return strconv.FormatBool(b) }

// parseAddr accepts an IPv4 or IPv6 address without a zone. IPv4-mapped
// IPv6 addresses are refused rather than unmapped: they compare unequal to
// the IPv4 form everywhere else, and the user meant the IPv4 form anyway.
func parseAddr(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		return netip.Addr{}, reason("want an address, not a CIDR")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, reason("not an IP address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, reason("an IPv6 zone is not allowed")
	}
	if a.Is4In6() {
		return netip.Addr{}, reason("IPv4-mapped IPv6 address: write it as IPv4")
	}
	return a, nil
}

func formatAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// parsePrefix accepts "addr/len" with no host bits set: "10.1.1.1/24" is
// refused with the network it probably means, rather than changed behind
// the writer's back (it may as well have meant 10.1.1.1/32).
func parsePrefix(s string) (netip.Prefix, error) {
	addrText, bitsText, ok := strings.Cut(s, "/")
	if !ok {
		return netip.Prefix{}, reason("missing /prefix-length")
	}
	a, err := parseAddr(addrText)
	if err != nil {
		return netip.Prefix{}, err
	}
	bits, err := parsePrefixLen(bitsText, a.BitLen())
	if err != nil {
		return netip.Prefix{}, err
	}
	p := netip.PrefixFrom(a, bits)
	if err := checkMasked(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// checkMasked refuses a prefix with host bits set.
func checkMasked(p netip.Prefix) error {
	if p != p.Masked() {
		return reasonf("host bits set (did you mean %s?)", p.Masked())
	}
	return nil
}

// parsePrefixLen is stricter than strconv.Atoi: no sign, no leading zeros
// ("/024" is almost certainly not what was meant).
func parsePrefixLen(s string, maxBits int) (int, error) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, reason("bad prefix length")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, reason("bad prefix length")
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > maxBits {
		return 0, reason("bad prefix length")
	}
	return n, nil
}

func formatPrefix(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// parseUint parses a decimal number no larger than max.
func parseUint(s string, max uint64) (uint64, error) { return parseRange(s, 0, max) }

// parseRange parses a decimal number from min to max; the refusal names
// that range.
func parseRange(s string, min, max uint64) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < min || v > max {
		return 0, reasonf("want a whole number from %d to %d", min, max)
	}
	return v, nil
}

// parseMask parses a 32-bit number written "0x..." in hex or in decimal.
// Octal is deliberately not guessed from a leading zero.
func parseMask(s string) (uint32, error) {
	base, digits := 10, s
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		base, digits = 16, s[2:]
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, reason("want a 32-bit number, hex as 0x...")
	}
	return uint32(v), nil
}

func formatMask(m uint32) string {
	if m == 0 {
		return "0"
	}
	return "0x" + strconv.FormatUint(uint64(m)|1<<32, 16)[1:]
}

// parseMAC accepts the forms net.ParseMAC does, but only 6-byte unicast
// addresses: frames to a multicast or zero MAC would be flooded or dropped
// by the VTEP.
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, reason("want a 6-byte MAC address like 82:36:4c:98:2e:56")
	}
	if err := checkMAC(m); err != nil {
		return nil, err
	}
	return m, nil
}

func checkMAC(m net.HardwareAddr) error {
	if len(m) != 6 {
		return reason("want a 6-byte MAC address")
	}
	if m[0]&1 != 0 {
		return reason("not a unicast MAC address")
	}
	if m[0]|m[1]|m[2]|m[3]|m[4]|m[5] == 0 {
		return reason("the zero MAC address is not usable")
	}
	return nil
}

// parseDottedMask parses an IPv4 netmask such as 255.255.255.0 and returns
// its prefix length. Non-contiguous masks have no prefix length and are
// refused.
func parseDottedMask(s string) (int, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, reason("want a dotted IPv4 mask like 255.255.255.0")
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	inv := ^m
	if inv&(inv+1) != 0 {
		return 0, reason("mask is not contiguous")
	}
	ones := 0
	for ; m != 0; m <<= 1 {
		ones++
	}
	return ones, nil
}

func formatDottedMask(bits int) string {
	if bits < 0 {
		return ""
	}
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

// checkNodeAddr is what an underlay address must be: something a UDP
// socket can be bound to and reached at.
func checkNodeAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return reason("required")
	case a.Zone() != "":
		return reason("an IPv6 zone is not allowed")
	case a.Is4In6():
		return reason("IPv4-mapped IPv6 address: write it as IPv4")
	case a.IsUnspecified():
		return reason("the unspecified address is not a node address")
	case a.IsMulticast():
		return reason("a multicast address is not a node address")
	case a.IsLoopback():
		return reason("a loopback address is not a node address")
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return reason("the broadcast address is not a node address")
	}
	return nil
}

// checkIfname applies the kernel's dev_valid_name rules, and also refuses
// control characters, which the kernel allows but no tool prints sanely.
func checkIfname(s string) error {
	if s == "" {
		return reason("must not be empty")
	}
	if len(s) > maxIfname {
		return reasonf("longer than %d bytes", maxIfname)
	}
	if s == "." || s == ".." {
		return reason("not a device name")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return reason("device names may not hold '/', ':', white space or control characters")
		}
	}
	return nil
}

// checkEndpointName keeps names usable as file names and in messages.
func checkEndpointName(s string) error {
	if s == "" {
		return reason("must not be empty")
	}
	if len(s) > maxEndpointName {
		return reasonf("longer than %d characters", maxEndpointName)
	}
	if s == "." || s == ".." {
		return reason("not usable as a file name")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return reason("only letters, digits, '.', '_' and '-' are allowed")
		}
	}
	return nil
}

// checkNodeName accepts what Kubernetes could call a node, loosely: the
// name is printed in tables and must stay on one line, and it is the last
// element of the node's etcd key, which a '/' would move elsewhere.
func checkNodeName(s string) error {
	if s == "" {
		return reason("must not be empty")
	}
	if len(s) > maxNodeName {
		return reasonf("longer than %d characters", maxNodeName)
	}
	if !utf8.ValidString(s) {
		return reason("not valid UTF-8")
	}
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return reason("'/', white space and control characters are not allowed")
		}
	}
	return nil
}

// checkPath is the least a path must be: present and passable to a
// system call.
func checkPath(s string) error {
	if s == "" {
		return reason("must not be empty")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return reason("contains a NUL byte")
	}
	return nil
}

// reservedIdentities are Cilium's reserved identity names and numbers, as
// allow-from accepts them. It mirrors the identity package's table; config
// keeps its own copy so that it stays a leaf package.
var reservedIdentities = map[string]uint32{
	"unknown":        0,
	"host":           1,
	"world":          2,
	"unmanaged":      3,
	"health":         4,
	"init":           5,
	"remote-node":    6,
	"kube-apiserver": 7,
	"ingress":        8,
	"world-ipv4":     9,
	"world-ipv6":     10,
}

// parseAllowFrom splits a list of identities on commas and white space.
// Names are lowercased; numbers are kept as written minus leading zeros.
// An empty member between commas (",,") is refused: read as nothing, it
// would leave the pod open to all.
func parseAllowFrom(s string) ([]string, error) {
	var out []string
	parts := strings.Split(s, ",")
	for i, part := range parts {
		fields := strings.Fields(part)
		if len(fields) == 0 {
			if len(parts) == 1 {
				break // an empty value: the default
			}
			return nil, reasonf("member %d is empty", i+1)
		}
		for _, f := range fields {
			id, err := normalizeIdentity(f)
			if err != nil {
				return nil, err
			}
			out = append(out, id)
		}
	}
	return out, nil
}

// normalizeIdentity accepts a reserved name or a number that a VNI can
// carry. Identity 0 (unknown) is refused: a packet never arrives with it,
// so allowing it can only be a mistake.
func normalizeIdentity(s string) (string, error) {
	if n, ok := reservedIdentities[strings.ToLower(s)]; ok {
		if n == 0 {
			return "", reasonf("identity %q never reaches a pod", s)
		}
		return strings.ToLower(s), nil
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return "", reasonf("identity %q is neither a number nor a reserved name", s)
	}
	if v == 0 {
		return "", reasonf("identity %q never reaches a pod", s)
	}
	if v > MaxIdentity {
		return "", reasonf("identity %q does not fit in a 24-bit VNI", s)
	}
	return strconv.FormatUint(v, 10), nil
}

// parsePodCIDRs parses a pod-cidr value: one CIDR, or one of each family
// separated by a comma ("10.1.1.0/24,fd00:1:1::/64"). Each leaves room
// for the network address, the host device and a pod.
func parsePodCIDRs(s string) (v4, v6 netip.Prefix, err error) {
	for _, w := range splitList(s) {
		p, err := parsePrefix(w)
		if err != nil {
			return v4, v6, err
		}
		if err := checkPodCIDRRoom(p); err != nil {
			return v4, v6, err
		}
		dst := &v4
		if p.Addr().Is6() {
			dst = &v6
		}
		if dst.IsValid() {
			return v4, v6, reason("more than one CIDR of a family: want one IPv4 and/or one IPv6 CIDR")
		}
		*dst = p
	}
	if !v4.IsValid() && !v6.IsValid() {
		return v4, v6, reason("want a CIDR")
	}
	return v4, v6, nil
}

// parseAddrPair parses one address, or one of each family separated by a
// comma ("10.1.1.10,fd00:1:1::10").
func parseAddrPair(s string) (v4, v6 netip.Addr, err error) {
	for _, w := range splitList(s) {
		a, err := parseAddr(w)
		if err != nil {
			return v4, v6, err
		}
		dst := &v4
		if a.Is6() {
			dst = &v6
		}
		if dst.IsValid() {
			return v4, v6, reason("more than one address of a family: want one IPv4 and/or one IPv6 address")
		}
		*dst = a
	}
	if !v4.IsValid() && !v6.IsValid() {
		return v4, v6, reason("want an address")
	}
	return v4, v6, nil
}

// splitList splits on commas, trimming white space around each element;
// an empty element stays, for the parser to refuse.
func splitList(s string) []string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// joinPair writes a pair the way parsePodCIDRs and parseAddrPair read it.
func joinPair(a, b fmt.Stringer, aOK, bOK bool) string {
	switch {
	case aOK && bOK:
		return a.String() + "," + b.String()
	case aOK:
		return a.String()
	case bOK:
		return b.String()
	}
	return ""
}

// maxBusyPoll bounds busy-poll: a worker polls at most this long between
// sleeps.
const maxBusyPoll = 100 * time.Millisecond

// parseBusyPoll parses busy-poll: a Go duration from 0 to maxBusyPoll, or
// a plain 0.
func parseBusyPoll(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > maxBusyPoll {
		return 0, reasonf("want a duration from 0 to %v, such as 50us", maxBusyPoll)
	}
	return d, nil
}

// formatDuration writes a duration as parseBusyPoll reads it back.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.String()
}
