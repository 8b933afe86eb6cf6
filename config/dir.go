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
// them. A Cilium key vxdp does not use is ignored and added to Ignored; any
// other unknown key is an error, like in a YAML file.
//
// The directory is one source: it may not contradict itself through the
// legacy tunnel key, but it overrides what the YAML file said. Every bad key
// and value of the directory is reported (Errors when there are several).
// On error the Config is left unchanged.
func (c *Config) ApplyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return &Error{Reason: "read config directory: " + err.Error(), Err: err}
	}
	next := *c // setters replace slices, never modify them, so a shallow copy is safe
	var errs []*Error
	var ignored []string
	given := make(map[string]string)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if _, ok := keyIndex[name]; !ok {
			if isCiliumKey(name) {
				ignored = append(ignored, name)
			} else {
				errs = append(errs, &Error{Key: name, Reason: "unknown key", File: path})
			}
			continue
		}
		value, err := applyDirFile(&next, name, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		given[name] = value
	}
	if err := checkTunnelKeys(given); err != nil {
		err.File = filepath.Join(dir, "tunnel")
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return joinErrors(errs)
	}
	next.addIgnored(ignored)
	*c = next
	return nil
}

// applyDirFile sets key from the file at path and returns the value.
func applyDirFile(c *Config, key, path string) (string, *Error) {
	// ReadFile follows the key's symlink into ..data.
	data, err := os.ReadFile(path)
	if err != nil {
		return "", &Error{Key: key, Reason: "cannot read: " + pathErrorReason(err), File: path, Err: err}
	}
	value := strings.TrimSpace(string(data))
	if err := c.Set(key, value); err != nil {
		e := asError(err, key, value)
		if e.File == "" {
			e.File = path
		}
		return "", e
	}
	return value, nil
}
