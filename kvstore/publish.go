package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// publisher keeps this node's record in etcd under a lease. One goroutine
// owns the lease; Publish only changes the wanted record and waits.
type publisher struct {
	mu      sync.Mutex
	rec     NodeRecord
	have    bool
	gen     uint64 // bumped by every Publish
	done    uint64 // the generation last written
	live    bool   // written, and the lease is being kept alive
	lease   clientv3.LeaseID
	lastErr error
	changed chan struct{} // closed and replaced when done or lastErr move

	kick    chan struct{} // cap 1: look again now
	running bool
	stopped bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (p *publisher) init() {
	p.changed = make(chan struct{})
	p.kick = make(chan struct{}, 1)
}

func (p *publisher) kickNow() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *publisher) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *publisher) fail(err error) {
	p.mu.Lock()
	p.lastErr, p.live = err, false
	p.notifyLocked()
	p.mu.Unlock()
}

func (p *publisher) published() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.have && p.live && p.done == p.gen
}

// Publish puts this node's record in etcd under a lease that the store
// keeps alive until Close. It returns once the record is written; if ctx
// ends first it returns an error, but the store goes on trying in the
// background, as it does whenever the lease is lost (etcd away for longer
// than the TTL, or the record deleted): then a new lease is taken and the
// record written again. Publishing again replaces the record (the name
// must stay the same).
func (s *Store) Publish(ctx context.Context, n NodeRecord) error {
	if err := n.check(); err != nil {
		return err
	}
	p := &s.pub
	p.mu.Lock()
	if p.stopped || s.ctx.Err() != nil {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.have && p.rec.Name != n.Name {
		p.mu.Unlock()
		return fmt.Errorf("%w: already publishing node %s, not %s", ErrInvalid, p.rec.Name, n.Name)
	}
	p.rec, p.have = n, true
	p.gen++
	gen := p.gen
	if p.running {
		// Wake the loop: it writes whenever the generation moved.
		p.kickNow()
	} else {
		p.running = true
		var pctx context.Context
		pctx, p.cancel = context.WithCancel(s.ctx)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			s.publishLoop(pctx)
		}()
	}
	p.mu.Unlock()

	for {
		p.mu.Lock()
		done, ch, lastErr := p.done, p.changed, p.lastErr
		p.mu.Unlock()
		if done >= gen {
			return nil
		}
		select {
		case <-ch:
		case <-s.ctx.Done():
			return ErrClosed
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("kvstore: node %s not published yet (still trying): %w; last error: %v", n.Name, ctx.Err(), lastErr)
			}
			return fmt.Errorf("kvstore: node %s not published yet (still trying): %w", n.Name, ctx.Err())
		}
	}
}

// selfWatch kicks the publisher when the node's own record changes under
// it in etcd (deleted by hand, expired, overwritten), so that it is put
// back without waiting for the keepalive to notice.
type selfWatch struct{ p *publisher }

func (w selfWatch) changed(chs []change[NodeRecord], _ map[string]NodeRecord) {
	w.p.mu.Lock()
	rec, have := w.p.rec, w.p.have
	w.p.mu.Unlock()
	if !have {
		return
	}
	for _, c := range chs {
		if c.name == rec.Name && (c.deleted || c.val != rec) {
			w.p.kickNow()
			return
		}
	}
}

func (s *Store) publishLoop(ctx context.Context) {
	p := &s.pub
	sw := selfWatch{p}
	s.nodes.subscribe(sw)
	defer s.nodes.unsubscribe(sw)

	var (
		ka       <-chan *clientv3.LeaseKeepAliveResponse
		kaCancel = func() {}
		putGen   uint64
		needPut  bool
		lastPut  time.Time
		bo       backoff
	)
	defer func() { kaCancel() }()
	for ctx.Err() == nil {
		if ka == nil {
			lease, err := s.ensureLease(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logRetry("cannot get a lease for this node's record; retrying", err)
				p.fail(err)
				bo.wait(ctx, p.kick)
				continue
			}
			kctx, cancel := context.WithCancel(ctx)
			ch, err := s.cli.KeepAlive(kctx, lease)
			if err != nil {
				cancel()
				p.fail(err)
				bo.wait(ctx, p.kick)
				continue
			}
			ka, kaCancel = ch, cancel
			needPut = true
		}

		p.mu.Lock()
		rec, gen, lease := p.rec, p.gen, p.lease
		p.mu.Unlock()
		if needPut || gen != putGen {
			// Two agents misconfigured with one name would overwrite
			// each other without end; spacing the writes keeps that
			// from hammering etcd while the logs say what is wrong.
			if wait := time.Until(lastPut.Add(500 * time.Millisecond)); wait > 0 && gen == putGen {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			if err := s.putRecord(ctx, rec, lease); err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, rpctypes.ErrLeaseNotFound) {
					// The lease ran out before the client noticed
					// (its keepalive deadline trails the server's
					// expiry): nothing to wait for, take a new one.
					s.log.Info("this node's lease expired; taking a new one", zap.String("node", rec.Name))
					kaCancel()
					ka = nil
					p.mu.Lock()
					p.lease, p.live = 0, false
					p.mu.Unlock()
					continue
				}
				s.logRetry("cannot write this node's record; retrying", err)
				p.fail(err)
				bo.wait(ctx, p.kick)
				continue
			}
			needPut, putGen, lastPut = false, gen, time.Now()
			bo.reset()
			p.mu.Lock()
			p.done, p.live, p.lastErr = gen, true, nil
			p.notifyLocked()
			p.mu.Unlock()
		}

		select {
		case _, ok := <-ka:
			// Responses are drained so the client's queue never fills;
			// a closed channel means the client gave the lease up
			// (expired, or no answer for a whole TTL).
			if !ok {
				kaCancel()
				ka = nil
				p.mu.Lock()
				p.live = false
				p.mu.Unlock()
				s.log.Warn("lease keepalive ended; renewing this node's record", zap.String("node", rec.Name))
			}
		case <-p.kick:
			// A reconnection or a change seen in etcd: check that the
			// record is there as it should be (a no-op write if so).
			needPut = true
		case <-ctx.Done():
		}
	}
}

// ensureLease returns a live lease: the one held before if etcd still has
// it (as after an etcd restart, which extends leases), else a new one. Going
// back to the old lease keeps the record's key untouched, so that other
// nodes see nothing at all of a short outage.
func (s *Store) ensureLease(ctx context.Context) (clientv3.LeaseID, error) {
	p := &s.pub
	p.mu.Lock()
	old := p.lease
	p.mu.Unlock()
	if old != 0 {
		cctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
		resp, err := s.cli.KeepAliveOnce(cctx, old)
		cancel()
		if err == nil && resp.TTL > 0 {
			return old, nil
		}
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	resp, err := s.cli.Grant(cctx, s.opts.ttlSeconds())
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.lease = resp.ID
	p.mu.Unlock()
	if old != 0 {
		s.log.Info("took a new lease for this node's record", zap.Int64("lease", int64(resp.ID)), zap.Int64("ttl", resp.TTL))
	}
	return resp.ID, nil
}

// putRecord writes the record unless it is already there, unchanged and on
// this lease: renewing after a reconnection then costs no revision and no
// event for the watchers.
func (s *Store) putRecord(ctx context.Context, rec NodeRecord, lease clientv3.LeaseID) error {
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := s.opts.Prefix + nodesDir + rec.Name
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	_, err = s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", string(val)),
			clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Else(clientv3.OpPut(key, string(val), clientv3.WithLease(lease))).
		Commit()
	return err
}

func (p *publisher) stop() {
	p.mu.Lock()
	p.stopped = true
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
}

// revoke drops the lease, and with it the record, so that the others see
// the node go now. With etcd away it is skipped: the lease then runs out
// by itself within the TTL.
func (p *publisher) revoke(s *Store) error {
	p.mu.Lock()
	lease := p.lease
	p.lease, p.live = 0, false
	p.mu.Unlock()
	if lease == 0 {
		return nil
	}
	if !s.ready.Load() {
		s.log.Info("etcd unreachable; leaving this node's lease to expire", zap.Int64("lease", int64(lease)))
		return nil
	}
	d := min(s.opts.DialTimeout, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("kvstore: revoking lease %x: %w", int64(lease), err)
	}
	return nil
}
