package kvstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The tests run a real etcd: the Debian package etcd-server.
const etcdBin = "/usr/bin/etcd"

// testPKI is a CA with a server and a client certificate, as files.
type testPKI struct {
	dir                 string
	caFile              string
	serverCert, srvKey  string
	clientCert, cliKey  string
	otherCert, otherKey string // a client certificate from another CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir}
	ca, caKey := makeCA(t, "vxdp test CA")
	p.caFile = writePEM(t, dir, "ca.crt", "CERTIFICATE", ca.Raw)
	p.serverCert, p.srvKey = makeLeaf(t, dir, "server", ca, caKey, true)
	p.clientCert, p.cliKey = makeLeaf(t, dir, "client", ca, caKey, false)
	other, otherKey := makeCA(t, "some other CA")
	p.otherCert, p.otherKey = makeLeaf(t, dir, "other", other, otherKey, false)
	return p
}

func makeCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func makeLeaf(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "vxdp-" + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".crt", "CERTIFICATE", der), writePEM(t, dir, name+".key", "EC PRIVATE KEY", kb)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// etcdServer is one etcd process listening on loopback only.
type etcdServer struct {
	t         *testing.T
	dataDir   string
	logPath   string
	clientURL string
	peerURL   string
	pki       *testPKI // nil: plain http

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startEtcd starts an etcd for one test and returns its client URL, a
// function that kills it (as a crash would: leases are not touched) and
// one that starts it again on the same ports and data. It is killed and
// its data removed when the test ends, however it ends.
func startEtcd(t *testing.T, useTLS bool) (endpoints string, stop func(), restart func()) {
	e := newEtcd(t, useTLS)
	return e.clientURL, e.stop, e.restart
}

func newEtcd(t *testing.T, useTLS bool) *etcdServer {
	t.Helper()
	if _, err := os.Stat(etcdBin); err != nil {
		if os.Getenv("VXDP_REQUIRE_ETCD") != "" {
			t.Fatalf("%s missing (apt-get install etcd-server)", etcdBin)
		}
		t.Skipf("%s missing (apt-get install etcd-server)", etcdBin)
	}
	// TempDir is created before the kill is registered, so cleanups (run
	// last-in first-out) kill etcd before its directory is removed.
	base := t.TempDir()
	e := &etcdServer{t: t, dataDir: filepath.Join(base, "data"), logPath: filepath.Join(base, "etcd.log")}
	if useTLS {
		e.pki = newTestPKI(t)
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			if b, err := os.ReadFile(e.logPath); err == nil {
				t.Logf("etcd log (last 3000 bytes):\n%s", tail(b, 3000))
			}
		}
	})
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		scheme := "http"
		if useTLS {
			scheme = "https"
		}
		e.clientURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
		e.peerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		if err = e.start(); err == nil {
			return e
		}
		// Most likely a port taken between freePort and etcd's bind.
		t.Logf("etcd start attempt %d: %v", attempt+1, err)
		os.RemoveAll(e.dataDir)
	}
	t.Fatalf("etcd did not start: %v", err)
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (e *etcdServer) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return fmt.Errorf("already running")
	}
	args := []string{
		"--name", "default",
		"--data-dir", e.dataDir,
		"--listen-client-urls", e.clientURL,
		"--advertise-client-urls", e.clientURL,
		"--listen-peer-urls", e.peerURL,
		"--initial-advertise-peer-urls", e.peerURL,
		"--initial-cluster", "default=" + e.peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-level", "warn",
	}
	if e.pki != nil {
		args = append(args,
			"--cert-file", e.pki.serverCert,
			"--key-file", e.pki.srvKey,
			"--trusted-ca-file", e.pki.caFile,
			"--client-cert-auth")
	}
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(etcdBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no ETCD_* from the environment
	// Should the test binary die without running its cleanups, the
	// kernel kills etcd too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	e.cmd, e.exited = cmd, exited

	if err := e.waitHealthy(15 * time.Second); err != nil {
		cmd.Process.Kill()
		<-exited
		e.cmd = nil
		return err
	}
	return nil
}

// waitHealthy polls /health until etcd has a leader, the process exits, or
// the time is up.
func (e *etcdServer) waitHealthy(limit time.Duration) error {
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	if e.pki != nil {
		cfg, err := (&Options{Endpoints: []string{e.clientURL}, CAFile: e.pki.caFile, CertFile: e.pki.clientCert, KeyFile: e.pki.cliKey}).tlsConfig()
		if err != nil {
			return err
		}
		hc.Transport = &http.Transport{TLSClientConfig: cfg}
		defer hc.CloseIdleConnections()
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-e.exited:
			return fmt.Errorf("etcd exited during start")
		default:
		}
		resp, err := hc.Get(e.clientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), `"true"`) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy after %s", limit)
}

// stop kills etcd without a chance to clean up, keeping its data.
func (e *etcdServer) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		e.t.Errorf("etcd pid %d did not exit after SIGKILL", e.cmd.Process.Pid)
	}
	e.cmd = nil
}

func (e *etcdServer) restart() {
	e.t.Helper()
	if err := e.start(); err != nil {
		e.t.Fatalf("etcd restart: %v", err)
	}
}

// tcpProxy stands between one store and etcd so that a test can cut that
// store off while the others stay connected.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(c net.Conn) {
	defer p.wg.Done()
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		u.Close()
		p.drop(c)
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	p.drop(c)
	p.drop(u)
	<-done
}

func (p *tcpProxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// setCut(true) closes every connection and refuses new ones (accepted and
// closed at once, as a reset would look to the client).
func (p *tcpProxy) setCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	var open []net.Conn
	if cut {
		for c := range p.conns {
			open = append(open, c)
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// testLogger is quiet unless VXDP_TEST_LOG is set: the stores log from
// their own goroutines, which must not reach a finished test's t.Log.
func testLogger(t *testing.T, name string) *zap.Logger {
	if os.Getenv("VXDP_TEST_LOG") == "" {
		return zap.NewNop()
	}
	l, err := zap.NewDevelopment()
	if err != nil {
		t.Fatal(err)
	}
	return l.Named(name)
}

// testOptions gives a long lease TTL: a store whose lease is not what the
// test is about must not lose it when a loaded machine stalls the test for
// a second or two. Tests of expiry shorten it for the store concerned.
func testOptions(t *testing.T, endpoint string) Options {
	return Options{
		Endpoints:   []string{endpoint},
		Prefix:      "/test/" + t.Name() + "/",
		LeaseTTL:    10 * time.Second,
		DialTimeout: 5 * time.Second,
	}
}

// shortTTL is the lease TTL of the stores whose expiry a test watches.
const shortTTL = 2 * time.Second

// openStore opens a store that is closed when the test ends.
func openStore(t *testing.T, o Options, name string) *Store {
	t.Helper()
	o.Logger = testLogger(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// collector records what a Watch channel delivers.
type collector struct {
	mu     sync.Mutex
	events []Event
	nodes  map[string]NodeRecord
	closed bool
}

func collect(ch <-chan Event) *collector {
	c := &collector{nodes: map[string]NodeRecord{}}
	go func() {
		for ev := range ch {
			c.mu.Lock()
			c.events = append(c.events, ev)
			if ev.Kind == EventPut {
				c.nodes[ev.Node.Name] = ev.Node
			} else {
				delete(c.nodes, ev.Node.Name)
			}
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	}()
	return c
}

func (c *collector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.nodes {
		out = append(out, n)
	}
	return sortedStrings(out)
}

// since returns the events after the first n.
func (c *collector) since(n int) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events[min(n, len(c.events)):]...)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

func (c *collector) deletes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, ev := range c.events {
		if ev.Kind == EventDelete {
			out = append(out, ev.Node.Name)
		}
	}
	return out
}

// waitNames waits until the collector holds exactly want.
func (c *collector) waitNames(t *testing.T, limit time.Duration, want ...string) time.Duration {
	t.Helper()
	want = sortedStrings(want)
	start := time.Now()
	for {
		got := c.names()
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("after %s the watcher holds %v, want %v", limit, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond every 10 ms for up to limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not %s after %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func sortedStrings(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
