package kvstore

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

// Defaults for the options a configuration leaves out.
const (
	DefaultPrefix      = "/vxdp/v1/"
	DefaultLeaseTTL    = 15 * time.Second
	DefaultDialTimeout = 5 * time.Second
)

// Options says how to reach etcd and where vxdp's keys live in it.
type Options struct {
	// Endpoints are client URLs (http:// or https://), all of one scheme:
	// the etcd client secures every connection as the first one says.
	Endpoints []string
	// CAFile verifies the servers (empty: the system's roots); CertFile
	// and KeyFile are the client certificate, given together or not at all.
	CAFile, CertFile, KeyFile string
	// Prefix is prepended to every key; it always ends in "/".
	Prefix string
	// LeaseTTL bounds how long a node that stopped without saying so stays
	// in everyone's tunnel map. etcd counts it in whole seconds.
	LeaseTTL time.Duration
	// DialTimeout bounds the first connection, in Open, and each request.
	DialTimeout time.Duration
	Logger      *zap.Logger
}

// Keys of Cilium's kvstore-opt that ParseOptions understands.
const (
	OptEndpoints = "etcd.endpoints"
	OptAddress   = "etcd.address" // Cilium's older name for etcd.endpoints
	OptConfig    = "etcd.config"
	OptPrefix    = "etcd.prefix"
	OptLeaseTTL  = "etcd.lease-ttl"
)

// OptionError is what ParseOptions returns: which key, which value, why.
type OptionError struct {
	Key, Value, Reason string
}

func (e *OptionError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("kvstore-opt %s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("kvstore-opt %s=%q: %s", e.Key, e.Value, e.Reason)
}

// ParseOptions turns Cilium's kvstore-opt mapping into Options. Unknown keys
// are errors rather than ignored: a misspelt etcd.lease-ttl would otherwise
// silently leave nodes in the tunnel map for the default 15 s.
func ParseOptions(opt map[string]string) (Options, error) {
	o := Options{Prefix: DefaultPrefix, LeaseTTL: DefaultLeaseTTL, DialTimeout: DefaultDialTimeout}
	keys := make([]string, 0, len(opt))
	for k := range opt {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first error reported does not depend on map order

	var endpointsKey string
	for _, k := range keys {
		v := strings.TrimSpace(opt[k])
		switch k {
		case OptEndpoints, OptAddress:
			if endpointsKey != "" {
				return Options{}, &OptionError{Key: k, Value: v, Reason: "given together with " + endpointsKey}
			}
			endpointsKey = k
			eps, err := splitEndpoints(v)
			if err != nil {
				return Options{}, &OptionError{Key: k, Value: v, Reason: err.Error()}
			}
			o.Endpoints = eps
		case OptConfig:
			if v == "" {
				return Options{}, &OptionError{Key: k, Reason: "empty path"}
			}
		case OptPrefix:
			p, err := normalizePrefix(v)
			if err != nil {
				return Options{}, &OptionError{Key: k, Value: v, Reason: err.Error()}
			}
			o.Prefix = p
		case OptLeaseTTL:
			d, err := parseTTL(v)
			if err != nil {
				return Options{}, &OptionError{Key: k, Value: v, Reason: err.Error()}
			}
			o.LeaseTTL = d
		default:
			return Options{}, &OptionError{Key: k, Value: v,
				Reason: "unknown option (known: " + strings.Join([]string{OptEndpoints, OptAddress, OptConfig, OptPrefix, OptLeaseTTL}, ", ") + ")"}
		}
	}

	if path := strings.TrimSpace(opt[OptConfig]); path != "" {
		fc, err := readConfigFile(path)
		if err != nil {
			return Options{}, &OptionError{Key: OptConfig, Value: path, Reason: err.Error()}
		}
		if len(fc.endpoints) > 0 {
			if endpointsKey != "" {
				return Options{}, &OptionError{Key: OptConfig, Value: path, Reason: "has endpoints, and so has " + endpointsKey + ": give them in one place"}
			}
			o.Endpoints = fc.endpoints
		}
		o.CAFile, o.CertFile, o.KeyFile = fc.ca, fc.cert, fc.key
		if fc.dialTimeout > 0 {
			o.DialTimeout = fc.dialTimeout
		}
	}

	if len(o.Endpoints) == 0 {
		key, val := OptEndpoints, ""
		if p := opt[OptConfig]; p != "" {
			key, val = OptConfig, p
		}
		return Options{}, &OptionError{Key: key, Value: val, Reason: "no etcd endpoints: give etcd.endpoints or an etcd.config file with endpoints"}
	}
	if err := o.check(); err != nil {
		key, val := OptEndpoints, strings.Join(o.Endpoints, ",")
		if p := opt[OptConfig]; p != "" {
			key, val = OptConfig, p
		}
		return Options{}, &OptionError{Key: key, Value: val, Reason: err.Error()}
	}
	return o, nil
}

func splitEndpoints(s string) ([]string, error) {
	var eps []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if err := checkEndpoint(f); err != nil {
			return nil, err
		}
		eps = append(eps, f)
	}
	if len(eps) == 0 {
		return nil, errors.New("no endpoints")
	}
	return eps, nil
}

// checkEndpoint insists on a scheme: without one the client would talk
// plain text to a server that may well expect TLS, and fail obscurely.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q: want http://host:port or https://host:port", ep)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("endpoint %q: a client URL has no path", ep)
	}
	return nil
}

func normalizePrefix(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty prefix")
	}
	if strings.ContainsAny(p, " \t\n\x00") {
		return "", errors.New("prefix contains white space or NUL")
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}

// parseTTL takes a Go duration, or a bare number of seconds as etcd's own
// tools write a TTL.
func parseTTL(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, errors.New("want a duration such as 15s")
	}
	if d < time.Second {
		return 0, errors.New("must be at least 1s")
	}
	if d > 24*time.Hour {
		return 0, errors.New("must be at most 24h")
	}
	return d, nil
}

// fileConfig is what vxdp takes from a Cilium-style etcd config file.
type fileConfig struct {
	endpoints     []string
	ca, cert, key string
	dialTimeout   time.Duration
}

// rawFileConfig lists every key accepted. Decoding rejects the others: a
// config carrying, say, a username would otherwise connect without the
// authentication its author asked for.
type rawFileConfig struct {
	Endpoints     yaml.Node `yaml:"endpoints"`
	TrustedCAFile string    `yaml:"trusted-ca-file"`
	CAFile        string    `yaml:"ca-file"` // etcd's older spelling
	CertFile      string    `yaml:"cert-file"`
	KeyFile       string    `yaml:"key-file"`
	DialTimeout   string    `yaml:"dial-timeout"`
}

func readConfigFile(path string) (fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, err
	}
	var raw rawFileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return fileConfig{}, errors.New("empty file")
		}
		return fileConfig{}, fmt.Errorf("%v (known keys: endpoints, trusted-ca-file, cert-file, key-file, dial-timeout)", err)
	}
	var fc fileConfig
	switch raw.Endpoints.Kind {
	case 0:
	case yaml.ScalarNode: // "a,b" as etcd.endpoints takes it
		if fc.endpoints, err = splitEndpoints(raw.Endpoints.Value); err != nil {
			return fileConfig{}, fmt.Errorf("endpoints: %v", err)
		}
	case yaml.SequenceNode:
		var list []string
		if err := raw.Endpoints.Decode(&list); err != nil {
			return fileConfig{}, fmt.Errorf("endpoints: %v", err)
		}
		for _, ep := range list {
			ep = strings.TrimSpace(ep)
			if err := checkEndpoint(ep); err != nil {
				return fileConfig{}, fmt.Errorf("endpoints: %v", err)
			}
			fc.endpoints = append(fc.endpoints, ep)
		}
	default:
		return fileConfig{}, errors.New("endpoints: want a list of URLs")
	}
	if raw.TrustedCAFile != "" && raw.CAFile != "" && raw.TrustedCAFile != raw.CAFile {
		return fileConfig{}, errors.New("trusted-ca-file and ca-file differ")
	}
	fc.ca = raw.TrustedCAFile
	if fc.ca == "" {
		fc.ca = raw.CAFile
	}
	fc.cert, fc.key = raw.CertFile, raw.KeyFile
	// Relative paths are taken from the config file's directory: the
	// agent's working directory is not something the author of the file
	// can know.
	dir := filepath.Dir(path)
	for _, p := range []*string{&fc.ca, &fc.cert, &fc.key} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if raw.DialTimeout != "" {
		d, err := time.ParseDuration(raw.DialTimeout)
		if err != nil || d <= 0 {
			return fileConfig{}, fmt.Errorf("dial-timeout %q: want a positive duration", raw.DialTimeout)
		}
		fc.dialTimeout = d
	}
	return fc, nil
}

// check validates o and fills in the defaults; Open and ParseOptions share
// it so that Options built by hand get the same scrutiny.
func (o *Options) check() error {
	if len(o.Endpoints) == 0 {
		return errors.New("no etcd endpoints")
	}
	scheme := ""
	for _, ep := range o.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return err
		}
		s, _, _ := strings.Cut(ep, "://")
		if scheme == "" {
			scheme = s
		} else if s != scheme {
			return errors.New("endpoints mix http and https")
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("a client certificate needs both cert-file and key-file")
	}
	if scheme == "http" && (o.CAFile != "" || o.CertFile != "") {
		return errors.New("TLS files are given but the endpoints are http://")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	p, err := normalizePrefix(o.Prefix)
	if err != nil {
		return err
	}
	o.Prefix = p
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeaseTTL < time.Second {
		return errors.New("lease TTL must be at least 1s")
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	return nil
}

// ttlSeconds is the TTL as etcd wants it, rounded up so that a node is
// never dropped sooner than configured.
func (o *Options) ttlSeconds() int64 {
	return int64(math.Ceil(o.LeaseTTL.Seconds()))
}

func (o *Options) secure() bool {
	return strings.HasPrefix(o.Endpoints[0], "https://")
}

// tlsConfig builds the client side of TLS. The client certificate is read
// again at each handshake so that a rotated certificate is picked up on the
// next reconnection without restarting the agent; it is also read once here
// so that a bad file fails Open with its name rather than a handshake error.
func (o *Options) tlsConfig() (*tls.Config, error) {
	if !o.secure() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("trusted CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("trusted CA file %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile); err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)
		}
		certFile, keyFile := o.CertFile, o.KeyFile
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("client certificate %s / key %s: %w", certFile, keyFile, err)
			}
			return &c, nil
		}
	}
	return cfg, nil
}
