// Package kvstore is vxdp's cluster membership in etcd: every agent
// publishes its node record under a lease it keeps alive, watches everyone
// else's, claims pod CIDR blocks, and shares the VTEP configuration.
//
// Layout under the prefix (default /vxdp/v1/):
//
//	nodes/<name>             NodeRecord as JSON, attached to the node's lease
//	podcidr/<10.1.2.0-24>    the node name holding the block (no lease)
//	podcidr-owners/<name>    the block that node holds (no lease)
//	vteps/<10.2.0.0-16>      VTEPRecord as JSON (no lease)
package kvstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// ErrClosed is returned by a Store's methods after Close.
var ErrClosed = errors.New("kvstore: store closed")

// Store is one agent's connection to the cluster's etcd.
type Store struct {
	opts Options
	log  *zap.Logger
	cli  *clientv3.Client

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	nodes *mirror[NodeRecord]
	vteps *mirror[VTEPRecord]
	pub   publisher

	// readyGen counts the transport's returns to the ready state; each
	// one asks for a fresh list, and Connected waits for it.
	readyGen atomic.Uint64
	ready    atomic.Bool

	statusMu      sync.Mutex
	since         time.Time // when ready last changed
	lastError     string
	lastErrorTime time.Time

	closeOnce sync.Once
	closeErr  error
}

// Status is a snapshot of the store's health, for the agent's status
// output.
type Status struct {
	// Connected: etcd answers and the local copy has been brought up to
	// date since it last did.
	Connected bool
	Since     time.Time // when the connection last came or went
	Endpoints []string
	Nodes     int
	VTEPs     int
	// Published: this node's record is in etcd under a live lease.
	Published bool
	// LastError is the most recent failure of a request to etcd, kept
	// after recovery so that a flapping connection leaves a trace.
	LastError     string
	LastErrorTime time.Time
}

// Open connects to etcd and reads the node and VTEP sets, so that Nodes
// is complete when it returns. It fails if etcd does not answer within the
// dial timeout (or ctx): an agent that starts without its cluster's member
// list has nothing to forward with.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("kvstore: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("kvstore: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		TLS:         tlsCfg,
		// Half-open connections (a partitioned network sends no RST)
		// are found by gRPC pings. etcd refuses pings more often than
		// every 5 s by default, hence not shorter.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// The client logs every retry while etcd is away; the store
		// reports the outage itself, once.
		Logger:      log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(connectParams(o))},
	})
	if err != nil {
		return nil, fmt.Errorf("kvstore: etcd client for %s: %w", strings.Join(o.Endpoints, ","), err)
	}

	s := &Store{opts: o, log: log, cli: cli, since: time.Now()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.nodes = newMirror(s, "node", nodesDir, decodeNode)
	s.vteps = newMirror(s, "VTEP", vtepsDir, decodeVTEP)
	s.pub.init()
	s.readyGen.Store(1)

	octx, ocancel := context.WithTimeout(ctx, o.DialTimeout)
	defer ocancel()
	nrev, err := s.nodes.list(octx)
	var vrev int64
	if err == nil {
		vrev, err = s.vteps.list(octx)
	}
	if err != nil {
		cli.Close()
		s.cancel()
		return nil, s.openError(err, tlsCfg)
	}
	s.ready.Store(true)
	log.Info("connected to etcd", zap.Strings("endpoints", o.Endpoints), zap.String("prefix", o.Prefix),
		zap.Int("nodes", len(s.nodes.state)), zap.Int("vteps", len(s.vteps.state)))

	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.monitor() }()
	go func() { defer s.wg.Done(); s.nodes.run(s.ctx, nrev) }()
	go func() { defer s.wg.Done(); s.vteps.run(s.ctx, vrev) }()
	return s, nil
}

// connectParams bounds how long gRPC waits between reconnection attempts.
// Its default grows to two minutes, and etcd, when it restarts, extends
// the leases by only about one TTL: a client still waiting to reconnect by
// then would see its node dropped and re-added across the whole cluster.
func connectParams(o Options) grpc.ConnectParams {
	maxDelay := min(max(o.LeaseTTL/4, 250*time.Millisecond), 3*time.Second)
	return grpc.ConnectParams{
		Backoff: grpcbackoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   maxDelay,
		},
		MinConnectTimeout: o.DialTimeout,
	}
}

// openError explains a failed first contact. The client only says that
// its deadline passed, so each endpoint is dialled once more by hand to
// find out what actually went wrong (refused, TLS rejected, ...).
func (s *Store) openError(err error, tlsCfg *tls.Config) error {
	var why []string
	for _, ep := range s.opts.Endpoints {
		if d := probeEndpoint(ep, tlsCfg); d != "" {
			why = append(why, d)
		}
	}
	msg := fmt.Sprintf("kvstore: etcd at %s did not answer within %s: %v",
		strings.Join(s.opts.Endpoints, ","), s.opts.DialTimeout, err)
	if len(why) > 0 {
		msg += " (" + strings.Join(why, "; ") + ")"
	}
	if tlsCfg != nil && s.opts.CertFile == "" {
		msg += " [no client certificate configured: if etcd runs with --client-cert-auth, set cert-file and key-file]"
	}
	return errors.New(msg)
}

func probeEndpoint(ep string, tlsCfg *tls.Config) string {
	u, err := url.Parse(ep)
	if err != nil {
		return ""
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return fmt.Sprintf("%s: %v", u.Host, err)
	}
	defer c.Close()
	if tlsCfg == nil {
		return ""
	}
	cfg := tlsCfg.Clone()
	cfg.NextProtos = []string{"h2"}
	if h, _, err := net.SplitHostPort(u.Host); err == nil {
		cfg.ServerName = h
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
	if err := tc.Handshake(); err != nil {
		return fmt.Sprintf("%s: TLS: %v", u.Host, err)
	}
	// With TLS 1.3 a server that rejects the client's certificate says so
	// only after the client thinks the handshake is over: a read brings
	// the alert in. A server that accepted us simply sends nothing.
	_ = tc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
		return fmt.Sprintf("%s: TLS: %v", u.Host, err)
	}
	return ""
}

// monitor follows the gRPC connection's state. It is what Connected
// reports, and its return to ready is what triggers the resynchronisation
// of the mirrors and a prompt renewal of this node's lease.
func (s *Store) monitor() {
	conn := s.cli.ActiveConnection()
	st := conn.GetState()
	for {
		ready := st == connectivity.Ready
		if ready != s.ready.Load() {
			s.statusMu.Lock()
			s.since = time.Now()
			s.statusMu.Unlock()
			if ready {
				s.readyGen.Add(1)
				s.ready.Store(true)
				s.log.Info("etcd connection restored; resynchronising")
				s.nodes.requestResync()
				s.vteps.requestResync()
				s.pub.kickNow()
			} else {
				s.ready.Store(false)
				s.log.Warn("etcd connection lost; keeping the last known nodes", zap.String("state", st.String()))
			}
		}
		if st == connectivity.Idle {
			// Nothing would reconnect an idle channel before the next
			// request; the watches and keepalives need it up.
			conn.Connect()
		}
		if !conn.WaitForStateChange(s.ctx, st) {
			return
		}
		st = conn.GetState()
	}
}

// logRetry logs a failed attempt that will be retried: loudly while etcd
// seems reachable, quietly while the outage has already been reported.
func (s *Store) logRetry(msg string, err error) {
	if s.ready.Load() {
		s.log.Warn(msg, zap.Error(err))
	} else {
		s.log.Debug(msg, zap.Error(err))
	}
	s.noteError(err)
}

func (s *Store) noteError(err error) {
	s.statusMu.Lock()
	s.lastError, s.lastErrorTime = err.Error(), time.Now()
	s.statusMu.Unlock()
}

// Connected reports whether etcd is reachable and the local copies of the
// node and VTEP sets have been brought up to date since it last came back.
// While it is false, Nodes and the watchers hold the last known state.
func (s *Store) Connected() bool {
	if !s.ready.Load() || s.ctx.Err() != nil {
		return false
	}
	gen := s.readyGen.Load()
	return s.nodes.syncedGen.Load() >= gen && s.vteps.syncedGen.Load() >= gen
}

// Status reports the store's health.
func (s *Store) Status() Status {
	s.statusMu.Lock()
	st := Status{Since: s.since, LastError: s.lastError, LastErrorTime: s.lastErrorTime}
	s.statusMu.Unlock()
	st.Connected = s.Connected()
	st.Endpoints = append([]string(nil), s.opts.Endpoints...)
	st.Nodes = len(s.nodes.snapshot())
	st.VTEPs = len(s.vteps.snapshot())
	st.Published = s.pub.published()
	return st
}

// Options returns the options in force, defaults filled in.
func (s *Store) Options() Options { return s.opts }

// Nodes returns the last known node set, this node's own record included,
// sorted by name.
func (s *Store) Nodes() []NodeRecord { return s.nodes.snapshot() }

// Watch reports the node set: first every known node as an EventPut, then
// each change as it happens, this node's own record included. The copy
// behind it survives reconnections: a dropped connection produces no event;
// what changed meanwhile (nodes gone, added or changed) is reported once
// etcd answers again. Changes a slow reader has not yet taken are merged
// per node, so only the latest state of each node is delivered. The channel
// is closed when ctx ends or the store is closed.
func (s *Store) Watch(ctx context.Context) <-chan Event {
	out := make(chan Event)
	q := newNodeQueue()
	s.nodes.subscribe(q)
	go func() {
		defer s.nodes.unsubscribe(q)
		pump(ctx, s.ctx, q.wake, q.pop, out)
	}()
	return out
}

// pump hands what take yields to out, waiting on wake while take has
// nothing, until ctx or the store's context ends; then it closes out.
func pump[T any](ctx, store context.Context, wake <-chan struct{}, take func() (T, bool), out chan<- T) {
	defer close(out)
	for {
		v, ok := take()
		if !ok {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return
			case <-store.Done():
				return
			}
		}
		select {
		case out <- v:
		case <-ctx.Done():
			return
		case <-store.Done():
			return
		}
	}
}

// Close stops the store. It revokes this node's lease first, so that every
// other node drops it at once rather than after the TTL.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(true) })
	return s.closeErr
}

// shutdown ends everything; revoke=false leaves the lease to expire, as a
// crashed agent would.
func (s *Store) shutdown(revoke bool) error {
	s.pub.stop()
	var err error
	if revoke {
		err = s.pub.revoke(s)
	}
	s.cancel()
	s.wg.Wait()
	if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) && err == nil {
		err = cerr
	}
	return err
}

// backoff spaces out retries against an etcd that is not answering:
// 100 ms doubling to 2 s, with jitter so that a cluster's agents do not
// return in lockstep.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 100 * time.Millisecond
	} else if b.d *= 2; b.d > 2*time.Second {
		b.d = 2 * time.Second
	}
	return b.d/2 + rand.N(b.d/2+1)
}

func (b *backoff) reset() { b.d = 0 }

// wait sleeps for the next delay, or until kick or ctx. It reports
// whether ctx is still live.
func (b *backoff) wait(ctx context.Context, kick <-chan struct{}) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-t.C:
	case <-kick:
	case <-ctx.Done():
		return false
	}
	return true
}
