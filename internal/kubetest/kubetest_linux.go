//go:build linux

// Package kubetest runs a real Kubernetes API server for end-to-end tests:
// Debian's etcd and a kube-apiserver built from the module proxy (make
// kube-apiserver), both inside a network namespace of the test's lab, so
// that agents in node namespaces on the same underlay reach it at its
// address there and nothing listens in the root namespace. The test's own
// client dials from inside that namespace.
//
// The server authorizes everything (--authorization-mode=AlwaysAllow) and
// knows one token, an administrator's; it has its own CA, serving
// certificate and service-account key pair, made here with Go's crypto.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Version is the kube-apiserver release the Makefile builds.
const Version = "v1.37.2"

// BinaryEnv names the variable holding the kube-apiserver binary's path;
// the Makefile exports it. Unset, the Makefile's default cache path is
// used.
const BinaryEnv = "VXDP_KUBE_APISERVER"

// Binary returns the kube-apiserver binary's path, or an error saying how
// to build it.
func Binary() (string, error) {
	p := os.Getenv(BinaryEnv)
	if p == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, ".cache", "vxdp", "kube-apiserver-"+Version)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kube-apiserver %s not built (make kube-apiserver builds it): %w", p, err)
	}
	return p, nil
}

// Options place the server.
type Options struct {
	Lab   *nstest.TestLab
	Netns *nstest.Netns // where etcd and the API server run
	// Addr is the server's address in Netns, which must hold it; agents
	// reach https://Addr:Port.
	Addr netip.Addr
	Port int // default 6443
}

// Server is a running API server and its etcd.
type Server struct {
	// URL is https://Addr:Port.
	URL string
	// Kubeconfig is a kubeconfig file for agents: the URL, the CA and
	// the token.
	Kubeconfig string
	// CAFile is the PEM file of the CA that signed the serving
	// certificate; Token the administrator's bearer token.
	CAFile string
	Token  string

	t      testing.TB
	opts   Options
	dir    string
	args   []string
	caPEM  []byte
	client *kubernetes.Clientset

	etcd *nstest.Proc
	api  *nstest.Proc
	runs int
}

// Start starts etcd and the API server in opts.Netns and waits until the
// server is ready. The lab stops both when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Port == 0 {
		opts.Port = 6443
	}
	dir := t.TempDir()
	s := &Server{t: t, opts: opts, dir: dir, URL: "https://" + net.JoinHostPort(opts.Addr.String(), strconv.Itoa(opts.Port))}
	s.startEtcd()
	s.Token = "vxdp-e2e-admin-token"
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, []byte(s.Token+`,admin,admin-uid,"system:masters"`+"\n"))
	caPEM, certPEM, keyPEM := servingCert(t, opts.Addr)
	s.caPEM = caPEM
	s.CAFile = filepath.Join(dir, "ca.crt")
	writeFile(t, s.CAFile, caPEM)
	writeFile(t, filepath.Join(dir, "apiserver.crt"), certPEM)
	writeFile(t, filepath.Join(dir, "apiserver.key"), keyPEM)
	saPub, saKey := keyPair(t)
	writeFile(t, filepath.Join(dir, "sa.pub"), saPub)
	writeFile(t, filepath.Join(dir, "sa.key"), saKey)
	s.args = []string{bin,
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=" + opts.Addr.String(),
		"--advertise-address=" + opts.Addr.String(),
		"--secure-port=" + strconv.Itoa(opts.Port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + filepath.Join(dir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "apiserver.key"),
		"--token-auth-file=" + tokens,
		"--authorization-mode=AlwaysAllow",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		"--profiling=false",
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	writeFile(t, s.Kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, s.URL, s.CAFile, s.Token)))
	client, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	s.client = client
	s.StartAPIServer()
	return s
}

// startEtcd runs etcd on the namespace's loopback, its data in the test's
// directory.
func (s *Server) startEtcd() {
	s.t.Helper()
	s.etcd = s.opts.Lab.Start(s.opts.Netns, "kube-etcd", "etcd", "--name", "kube", "--data-dir", filepath.Join(s.dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "kube=http://127.0.0.1:2380")
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := s.opts.Netns.Run("curl", "-s", "-m", "1", "http://127.0.0.1:2379/health"); err == nil && strings.Contains(out, `"health":"true"`) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("etcd did not start:\n%s", s.etcd.Output())
}

// StartAPIServer starts the API server (again, after StopAPIServer) and
// waits until /readyz answers ok.
func (s *Server) StartAPIServer() {
	s.t.Helper()
	s.runs++
	s.api = s.opts.Lab.Start(s.opts.Netns, fmt.Sprintf("kube-apiserver-%d", s.runs), s.args...)
	deadline := time.Now().Add(90 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if !s.api.Alive() {
			s.t.Fatalf("kube-apiserver exited:\n%s", s.api.Output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var body []byte
		body, err = s.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("kube-apiserver not ready: %v\n%s", err, s.api.Output())
}

// StopAPIServer stops the API server (etcd keeps running).
func (s *Server) StopAPIServer() {
	s.t.Helper()
	if err := s.api.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.api.Wait(15 * time.Second); err != nil {
		s.api.Signal(syscall.SIGKILL)
		s.api.Wait(5 * time.Second)
	}
}

// Client is a client for the test itself, with the administrator's
// token, dialling from inside the server's namespace.
func (s *Server) Client() *kubernetes.Clientset { return s.client }

// RESTConfig is the configuration behind Client.
func (s *Server) RESTConfig() *rest.Config {
	ns := s.opts.Netns
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     s.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.caPEM},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// servingCert makes a CA and a serving certificate for addr signed by it,
// PEM encoded.
func servingCert(t testing.TB, addr netip.Addr) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vxdp-e2e-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{addr.AsSlice(), net.IPv4(10, 96, 0, 1)},
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// keyPair makes the service-account signing key pair, PEM encoded.
func keyPair(t testing.TB) (pub, priv []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER})
}
