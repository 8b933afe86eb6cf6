package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// setItemsText sets nodes or endpoints from YAML text: the form a flag or
// a ConfigMap file gives them, or a YAML string holding the list.
func setItemsText(c *Config, key string, setNode func(*Config, *yaml.Node, *decoder) error, text string, d *decoder) error {
	null := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	if text == "" {
		return setNode(c, null, d)
	}
	root, err := d.document([]byte(text))
	if err != nil {
		e := asError(err, key, "")
		if e.Key == "" {
			e.Key = key
		}
		return e
	}
	if root == nil {
		root = null
	}
	return setNode(c, root, d)
}

func setNodes(c *Config, n *yaml.Node, d *decoder) error {
	nodes, err := d.nodes(n)
	if err == nil {
		c.Nodes = nodes
	}
	return err
}

func setEndpoints(c *Config, n *yaml.Node, d *decoder) error {
	eps, err := d.endpoints(n)
	if err == nil {
		c.Endpoints = eps
	}
	return err
}

// field is one key of a list item with its value node.
type field struct {
	key  string     // list[i].name, for messages
	name *yaml.Node // the key as written
	val  *yaml.Node
}

// items checks that n is a list of mappings whose keys are all in allowed,
// and returns each item's fields. Keys are reported as list[i].key.
func (d *decoder) items(n *yaml.Node, list string, allowed ...string) ([][]field, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, d.errAt(n, list, "", fmt.Sprintf("want a list of {%s}", strings.Join(allowed, ", ")))
	}
	out := make([][]field, 0, len(n.Content))
	for i, item := range n.Content {
		item = resolve(item)
		prefix := fmt.Sprintf("%s[%d]", list, i)
		if item.Kind != yaml.MappingNode {
			return nil, d.errAt(item, prefix, "", fmt.Sprintf("want a mapping {%s}", strings.Join(allowed, ", ")))
		}
		var fields []field
		seen := make(map[string]bool)
		for j := 0; j+1 < len(item.Content); j += 2 {
			kn, vn := resolve(item.Content[j]), resolve(item.Content[j+1])
			if kn.Kind != yaml.ScalarNode {
				return nil, d.errAt(kn, prefix, "", "a key must be a plain string")
			}
			key := prefix + "." + kn.Value
			if !contains(allowed, kn.Value) {
				return nil, d.errAt(kn, key, "", "unknown key")
			}
			if seen[kn.Value] {
				return nil, d.errAt(kn, key, "", "given twice")
			}
			seen[kn.Value] = true
			fields = append(fields, field{key: key, name: kn, val: vn})
		}
		out = append(out, fields)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scalar returns a field's single value, trimmed.
func (d *decoder) scalar(f field) (string, error) {
	if f.val.Kind != yaml.ScalarNode {
		return "", d.errAt(f.val, f.key, "", "want a single value")
	}
	return strings.TrimSpace(scalarText(f.val)), nil
}

// nodes parses the nodes list. Missing fields stay zero for Validate to
// report, so that a Config built in code gets the same messages.
func (d *decoder) nodes(n *yaml.Node) ([]Node, error) {
	items, err := d.items(n, "nodes", "name", "ip", "pod-cidr")
	if err != nil || len(items) == 0 {
		return nil, err // an empty list is nil, so that it reads back the same
	}
	nodes := make([]Node, len(items))
	for i, fields := range items {
		for _, f := range fields {
			s, err := d.scalar(f)
			if err != nil {
				return nil, err
			}
			if s == "" {
				continue
			}
			if err := setNodeField(&nodes[i], f.name.Value, s); err != nil {
				return nil, d.errAt(f.val, f.key, s, err.Error())
			}
		}
	}
	return nodes, nil
}

func setNodeField(n *Node, name, s string) error {
	switch name {
	case "name":
		if err := checkNodeName(s); err != nil {
			return err
		}
		n.Name = s
	case "ip":
		a, err := parseAddr(s)
		if err != nil {
			return err
		}
		if err := checkNodeAddr(a); err != nil {
			return err
		}
		n.IP = a
	case "pod-cidr":
		v4, v6, err := parsePodCIDRs(s)
		if err != nil {
			return err
		}
		n.PodCIDR, n.PodCIDR6 = v4, v6
	}
	return nil
}

// endpoints parses the endpoints list; ifname defaults to DefaultIfname.
func (d *decoder) endpoints(n *yaml.Node) ([]Endpoint, error) {
	items, err := d.items(n, "endpoints", "name", "ip", "netns", "ifname", "identity", "allow-from")
	if err != nil || len(items) == 0 {
		return nil, err // an empty list is nil, so that it reads back the same
	}
	eps := make([]Endpoint, len(items))
	for i, fields := range items {
		ep := &eps[i]
		ep.Ifname = DefaultIfname
		for _, f := range fields {
			if f.name.Value == "allow-from" {
				ids, err := d.allowFrom(f)
				if err != nil {
					return nil, err
				}
				ep.AllowFrom = ids
				continue
			}
			s, err := d.scalar(f)
			if err != nil {
				return nil, err
			}
			if s == "" {
				continue
			}
			if err := setEndpointField(ep, f.name.Value, s); err != nil {
				return nil, d.errAt(f.val, f.key, s, err.Error())
			}
		}
	}
	return eps, nil
}

func setEndpointField(ep *Endpoint, name, s string) error {
	switch name {
	case "name":
		if err := checkEndpointName(s); err != nil {
			return err
		}
		ep.Name = s
	case "ip":
		v4, v6, err := parseAddrPair(s)
		if err != nil {
			return err
		}
		ep.IP, ep.IP6 = v4, v6
	case "netns":
		if err := checkPath(s); err != nil {
			return err
		}
		ep.Netns = s
	case "ifname":
		if err := checkIfname(s); err != nil {
			return err
		}
		ep.Ifname = s
	case "identity":
		v, err := parseUint(s, MaxIdentity)
		if err != nil {
			return err
		}
		if err := checkIdentity(uint32(v)); err != nil {
			return err
		}
		ep.Identity = uint32(v)
	}
	return nil
}

// allowFrom accepts a YAML list of identities or one string of them
// separated by commas or white space.
func (d *decoder) allowFrom(f field) ([]string, error) {
	var text string
	switch f.val.Kind {
	case yaml.ScalarNode:
		text = scalarText(f.val)
	case yaml.SequenceNode:
		words := make([]string, 0, len(f.val.Content))
		for _, item := range f.val.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode {
				return nil, d.errAt(item, f.key, "", "list items must be single values")
			}
			words = append(words, scalarText(item))
		}
		text = strings.Join(words, ",")
	default:
		return nil, d.errAt(f.val, f.key, "", "want a list of identities")
	}
	ids, err := parseAllowFrom(text)
	if err != nil {
		return nil, d.errAt(f.val, f.key, text, err.Error())
	}
	return ids, nil
}

// formatNodes writes nodes as a YAML flow list that setItemsFromText reads
// back unchanged.
func formatNodes(nodes []Node) string {
	if len(nodes) == 0 {
		return ""
	}
	seq := flowSeq()
	for _, n := range nodes {
		seq.Content = append(seq.Content, flowMap(
			"name", n.Name,
			"ip", formatAddr(n.IP),
			"pod-cidr", joinPair(n.PodCIDR, n.PodCIDR6, n.PodCIDR.IsValid(), n.PodCIDR6.IsValid()),
		))
	}
	return encodeFlow(seq)
}

func formatEndpoints(eps []Endpoint) string {
	if len(eps) == 0 {
		return ""
	}
	seq := flowSeq()
	for _, ep := range eps {
		m := flowMap(
			"name", ep.Name,
			"ip", joinPair(ep.IP, ep.IP6, ep.IP.IsValid(), ep.IP6.IsValid()),
			"netns", ep.Netns,
			"ifname", ep.Ifname,
		)
		if ep.Identity != 0 {
			m.Content = append(m.Content, str("identity"), plain(strconv.FormatUint(uint64(ep.Identity), 10)))
		}
		if len(ep.AllowFrom) > 0 {
			ids := flowSeq()
			for _, id := range ep.AllowFrom {
				ids.Content = append(ids.Content, plain(id))
			}
			m.Content = append(m.Content, str("allow-from"), ids)
		}
		seq.Content = append(seq.Content, m)
	}
	return encodeFlow(seq)
}

func flowSeq() *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
}

// flowMap builds a mapping from key, value pairs, leaving out empty values
// so that they read back as unset.
func flowMap(kv ...string) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		m.Content = append(m.Content, str(kv[i]), str(kv[i+1]))
	}
	return m
}

// str is a string scalar; the encoder quotes it whenever it would
// otherwise read back as another type. Invalid UTF-8, which only a Config
// built in code can hold and Validate rejects, is replaced so that the
// encoder has nothing to refuse.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.ToValidUTF8(s, "\uFFFD")}
}

// plain is a scalar left untagged, so numbers print bare; every value is
// read back as text anyway, and the encoder still quotes what YAML syntax
// requires.
func plain(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: strings.ToValidUTF8(s, "\uFFFD")}
}

// encodeFlow cannot fail on the string-only trees built above; the empty
// result on error is unreachable rather than a policy.
func encodeFlow(n *yaml.Node) string {
	b, err := yaml.Marshal(n)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
