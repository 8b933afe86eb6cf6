package kvstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	e := newEtcd(t, true)
	o := testOptions(t, e.clientURL)
	o.CAFile, o.CertFile, o.KeyFile = e.pki.caFile, e.pki.clientCert, e.pki.cliKey
	a := openStore(t, o, "a")
	publish(t, a, testNode(0))

	// The Cilium-style config file, with paths relative to it.
	cfg := filepath.Join(e.pki.dir, "etcd.config")
	body := "---\nendpoints:\n- " + e.clientURL + "\ntrusted-ca-file: ca.crt\nkey-file: client.key\ncert-file: client.crt\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	fo, err := ParseOptions(map[string]string{"etcd.config": cfg, "etcd.prefix": o.Prefix, "etcd.lease-ttl": "10s"})
	if err != nil {
		t.Fatal(err)
	}
	b := openStore(t, fo, "b")
	publish(t, b, testNode(1))
	collect(a.Watch(t.Context())).waitNames(t, 3*time.Second, "node-a", "node-b")

	// Without a client certificate, or with one from another CA, the
	// server turns us away, and the error says so.
	for _, tc := range []struct {
		name      string
		cert, key string
	}{
		{"no client certificate", "", ""},
		{"foreign client certificate", e.pki.otherCert, e.pki.otherKey},
	} {
		bad := o
		bad.CertFile, bad.KeyFile = tc.cert, tc.key
		bad.DialTimeout = time.Second
		start := time.Now()
		s, err := Open(context.Background(), bad)
		if err == nil {
			s.Close()
			t.Fatalf("%s: Open succeeded", tc.name)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: Open took %s", tc.name, d)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: error does not mention the certificate: %v", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}

	// Without the CA the server's certificate is not trusted.
	bad := o
	bad.CAFile = ""
	bad.DialTimeout = time.Second
	if s, err := Open(context.Background(), bad); err == nil {
		s.Close()
		t.Fatal("Open trusted an unknown CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: %v", err)
	}

	// Unreadable TLS files fail before any connection, naming the file.
	bad = o
	bad.CAFile = filepath.Join(e.pki.dir, "missing.crt")
	if _, err := Open(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing CA file: %v", err)
	}
}
