package config

import (
	"os"
	"path/filepath"
	"strings"
)

// ApplyDir applies a Cilium ConfigMap mounted as a directory: one file per
// key, the file's content (white space trimmed) being the value. Names
// starting with "." are skipped: Kubernetes keeps the real files in
// "..data" and timestamped "..2024_..." directories and links each key to
// them. An unknown key is an error, like in a YAML file.
//
// The directory is one source: it may not contradict itself through the
// legacy tunnel key, but it overrides what the YAML file said. On error
// the Config is left unchanged.
func (c *Config) ApplyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return &Error{Reason: "read config directory: " + err.Error(), Err: err}
	}
	next := *c // setters replace slices, never modify them, so a shallow copy is safe
	given := make(map[string]string)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if _, ok := keyIndex[name]; !ok {
			return &Error{Key: name, Reason: "unknown key", File: path}
		}
		// ReadFile follows the key's symlink into ..data.
		data, err := os.ReadFile(path)
		if err != nil {
			return &Error{Key: name, Reason: "cannot read: " + pathErrorReason(err), File: path, Err: err}
		}
		value := strings.TrimSpace(string(data))
		if err := next.Set(name, value); err != nil {
			e := asError(err, name, value)
			if e.File == "" {
				e.File = path
			}
			return e
		}
		given[name] = value
	}
	if err := checkTunnelKeys(given); err != nil {
		err.File = filepath.Join(dir, "tunnel")
		return err
	}
	*c = next
	return nil
}
