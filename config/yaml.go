package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse reads a YAML document into a Config: Default() with the document's
// keys applied. It checks each value but not the rules between keys; call
// Validate once every source has been applied. An empty document yields
// the defaults.
func Parse(data []byte) (*Config, error) {
	c := Default()
	if err := c.applyYAML(data, ""); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the YAML file at path and parses it like Parse; errors name
// the file. The result is not validated.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Reason: fmt.Sprintf("read %s: %s", path, pathErrorReason(err)), Err: err}
	}
	c := Default()
	if err := c.applyYAML(data, path); err != nil {
		return nil, err
	}
	return c, nil
}

// pathErrorReason drops the operation and path from a file system error,
// for messages that name the path themselves.
func pathErrorReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// decoder walks yaml.Node trees rather than decoding into structs: that
// way each error can name the key and the value as written, and the line.
type decoder struct {
	file string
	// noLines drops line numbers, for YAML embedded in a scalar of another
	// document, where they would count from the wrong place.
	noLines bool
}

// errAt builds an *Error located at n.
func (d *decoder) errAt(n *yaml.Node, key, value, why string) *Error {
	return d.locate(&Error{Key: key, Value: value, Reason: why}, n)
}

// locate adds the position of n to e unless e already has one.
func (d *decoder) locate(e *Error, n *yaml.Node) *Error {
	if e.File == "" {
		e.File = d.file
	}
	if e.Line == 0 && n != nil && !d.noLines {
		e.Line = n.Line
	}
	return e
}

func (c *Config) applyYAML(data []byte, file string) error {
	d := &decoder{file: file}
	root, err := d.document(data)
	if err != nil || root == nil {
		return err
	}
	if root.Kind != yaml.MappingNode {
		return d.errAt(root, "", "", "the document must be a mapping of keys to values")
	}
	return d.apply(c, root)
}

// document decodes exactly one YAML document and returns its root, or nil
// when the document is empty.
func (d *decoder) document(data []byte) (root *yaml.Node, err error) {
	// The YAML parser is third-party code fed with whatever the file holds;
	// a panic in it must still end as a configuration error.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, &Error{Reason: "invalid YAML", File: d.file}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, d.yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, d.errAt(&extra, "", "", "more than one YAML document")
	case !errors.Is(err, io.EOF):
		return nil, d.yamlError(err)
	}
	n := &doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		n = n.Content[0]
	}
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	return n, nil
}

func (d *decoder) yamlError(err error) *Error {
	why := strings.TrimPrefix(err.Error(), "yaml: ")
	return &Error{Reason: "invalid YAML: " + why, File: d.file}
}

// apply sets every key of mapping m. The keys of one document are one
// source: unlike keys from different sources, they may not contradict each
// other through the legacy tunnel key. Every bad key and value is reported,
// not only the first; Cilium keys vxdp does not use are set aside for
// Ignored.
func (d *decoder) apply(c *Config, m *yaml.Node) error {
	var errs []*Error
	var ignored []string
	given := make(map[string]string)
	lines := make(map[string]int)
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := resolve(m.Content[i]), resolve(m.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			errs = append(errs, d.errAt(kn, "", "", "a key must be a plain string"))
			continue
		}
		key := kn.Value
		if key == "" {
			errs = append(errs, d.errAt(kn, "", "", "empty key"))
			continue
		}
		if first, dup := lines[key]; dup {
			errs = append(errs, d.errAt(kn, key, "", fmt.Sprintf("given twice (first on line %d)", first)))
			continue
		}
		lines[key] = kn.Line
		spec, ok := keyIndex[key]
		switch {
		case !ok && isCiliumKey(key):
			ignored = append(ignored, key)
			continue
		case !ok:
			errs = append(errs, d.errAt(kn, key, "", "unknown key"))
			continue
		}
		text, err := d.value(c, spec, vn)
		if err != nil {
			errs = append(errs, d.locate(asError(err, key, text), vn))
			continue
		}
		given[key] = text
	}
	if err := checkTunnelKeys(given); err != nil {
		errs = append(errs, d.locate(err, nil).atLine(lines["tunnel"], d))
	}
	if len(errs) == 0 {
		c.addIgnored(ignored)
	}
	return joinErrors(errs)
}

// atLine sets the line of an error that has no node to point at.
func (e *Error) atLine(line int, d *decoder) *Error {
	if e.Line == 0 && !d.noLines {
		e.Line = line
	}
	return e
}

// value applies one key's YAML value and returns its text for messages.
func (d *decoder) value(c *Config, spec *keySpec, vn *yaml.Node) (string, error) {
	switch vn.Kind {
	case yaml.ScalarNode:
		text := scalarText(vn)
		if spec.kind == kindItems && strings.TrimSpace(text) != "" {
			// A list written as a YAML string, as a ConfigMap would
			// hold it: its own line numbers mean nothing here.
			inner := &decoder{file: d.file, noLines: true}
			return text, setItemsText(c, spec.name, spec.setNode, text, inner)
		}
		return text, c.Set(spec.name, text)
	case yaml.SequenceNode:
		switch spec.kind {
		case kindItems:
			return "", spec.setNode(c, vn, d)
		case kindWords:
			words := make([]string, 0, len(vn.Content))
			for _, item := range vn.Content {
				item = resolve(item)
				if item.Kind != yaml.ScalarNode {
					return "", d.errAt(item, spec.name, "", "list items must be single values")
				}
				words = append(words, strings.TrimSpace(scalarText(item)))
			}
			text := strings.Join(words, " ")
			return text, c.Set(spec.name, text)
		}
		return "", d.errAt(vn, spec.name, "", "want a single value, not a list")
	case yaml.MappingNode:
		if spec.kind == kindMap {
			// A mapping of single values, as Cilium's kvstore-opt: handed
			// on as the JSON object a ConfigMap file would hold.
			m := map[string]string{}
			for i := 0; i+1 < len(vn.Content); i += 2 {
				k, v := resolve(vn.Content[i]), resolve(vn.Content[i+1])
				if k.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode {
					return "", d.errAt(v, spec.name, "", "values must be single values")
				}
				m[scalarText(k)] = scalarText(v)
			}
			b, _ := json.Marshal(m)
			return string(b), c.Set(spec.name, string(b))
		}
		if spec.kind == kindItems {
			return "", d.errAt(vn, spec.name, "", "want a list, not a mapping")
		}
		return "", d.errAt(vn, spec.name, "", "want a single value, not a mapping")
	}
	return "", d.errAt(vn, spec.name, "", "unsupported YAML value")
}

// checkTunnelKeys rejects a source that sets the legacy tunnel key and a
// current key to different things, as Cilium does: which one was meant
// cannot be guessed.
func checkTunnelKeys(given map[string]string) *Error {
	t := strings.TrimSpace(given["tunnel"])
	if t == "" {
		return nil
	}
	mode, proto := legacyTunnel(strings.ToLower(t))
	if rm := strings.TrimSpace(given["routing-mode"]); rm != "" && !strings.EqualFold(rm, mode) {
		return &Error{Key: "tunnel", Value: t, Reason: fmt.Sprintf("contradicts routing-mode %q", rm)}
	}
	if tp := strings.TrimSpace(given["tunnel-protocol"]); tp != "" && proto != "" && !strings.EqualFold(tp, proto) {
		return &Error{Key: "tunnel", Value: t, Reason: fmt.Sprintf("contradicts tunnel-protocol %q", tp)}
	}
	return nil
}

// resolve follows aliases to the node they name. The depth limit only
// guards against a malformed tree; the parser does not build alias chains.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// scalarText is a scalar's text as written (without quotes); null reads
// as empty, which every key takes as "default".
func scalarText(n *yaml.Node) string {
	if isNull(n) {
		return ""
	}
	return n.Value
}
