package kvstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// change is one difference a mirror applied.
type change[T any] struct {
	name    string
	val     T // the new value, or for a deletion the last one
	deleted bool
}

// subscriber receives a mirror's changes. It is called with the mirror
// locked, so it must only queue, never block.
type subscriber[T any] interface {
	changed(chs []change[T], state map[string]T)
}

// mirror keeps a local copy of one key range (nodes/ or vteps/) in step with
// etcd: a list, then a watch from the list's revision, and a fresh list
// whenever the watch cannot be trusted to have seen everything (compaction,
// a failed watch, a reconnection). Losing the connection changes nothing in
// the copy: the dataplane keeps forwarding with the last known state, and
// the differences are worked out by the list once etcd answers again.
type mirror[T comparable] struct {
	s      *Store
	kind   string // "node" or "VTEP", for logs
	prefix string
	decode func(name string, v []byte) (T, error)
	resync chan struct{} // cap 1: relist now

	// syncedGen is the reconnection generation (Store.readyGen) of the
	// last successful list; 0 after a failure.
	syncedGen atomic.Uint64

	mu    sync.Mutex
	state map[string]T
	subs  map[subscriber[T]]struct{}
}

func newMirror[T comparable](s *Store, kind, dir string, decode func(string, []byte) (T, error)) *mirror[T] {
	return &mirror[T]{
		s:      s,
		kind:   kind,
		prefix: s.opts.Prefix + dir,
		decode: decode,
		resync: make(chan struct{}, 1),
		state:  map[string]T{},
		subs:   map[subscriber[T]]struct{}{},
	}
}

func (m *mirror[T]) requestResync() {
	select {
	case m.resync <- struct{}{}:
	default:
	}
}

// list reads the whole range and applies the differences to the local copy.
// It returns the revision to watch from.
func (m *mirror[T]) list(ctx context.Context) (int64, error) {
	gen := m.s.readyGen.Load()
	ctx, cancel := context.WithTimeout(ctx, m.s.opts.DialTimeout)
	defer cancel()
	resp, err := m.s.cli.Get(ctx, m.prefix, clientv3.WithPrefix())
	if err != nil {
		m.syncedGen.Store(0)
		return 0, err
	}
	fresh := make(map[string]T, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), m.prefix)
		v, err := m.decode(name, kv.Value)
		if err != nil {
			m.s.log.Warn("ignoring unreadable "+m.kind+" record", zap.String("key", string(kv.Key)), zap.Error(err))
			continue
		}
		fresh[name] = v
	}

	m.mu.Lock()
	var chs []change[T]
	for name, old := range m.state {
		if _, ok := fresh[name]; !ok {
			chs = append(chs, change[T]{name: name, val: old, deleted: true})
		}
	}
	for name, v := range fresh {
		if old, ok := m.state[name]; !ok || old != v {
			chs = append(chs, change[T]{name: name, val: v})
		}
	}
	// Sorted so that consumers see a reproducible order.
	sort.Slice(chs, func(i, j int) bool { return chs[i].name < chs[j].name })
	m.applyLocked(chs)
	m.mu.Unlock()

	m.syncedGen.Store(gen)
	if len(chs) > 0 {
		m.s.log.Info("resynchronised "+m.kind+"s from a full list",
			zap.Int("changes", len(chs)), zap.Int("total", len(fresh)), zap.Int64("revision", resp.Header.Revision))
	}
	return resp.Header.Revision, nil
}

// applyLocked updates the copy and tells the subscribers; m.mu is held.
func (m *mirror[T]) applyLocked(chs []change[T]) {
	if len(chs) == 0 {
		return
	}
	for _, c := range chs {
		if c.deleted {
			delete(m.state, c.name)
		} else {
			m.state[c.name] = c.val
		}
	}
	for sub := range m.subs {
		sub.changed(chs, m.state)
	}
}

// applyEvents turns one watch response into changes. Events that do not
// change the copy (a record written again with the same content, as a node
// does when it renews its lease after a reconnection) are dropped here.
func (m *mirror[T]) applyEvents(evs []*clientv3.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var chs []change[T]
	// Track the state as it evolves within the batch, since one response
	// may hold several events for the same key.
	cur := func(name string) (T, bool) {
		for i := len(chs) - 1; i >= 0; i-- {
			if chs[i].name == name {
				return chs[i].val, !chs[i].deleted
			}
		}
		v, ok := m.state[name]
		return v, ok
	}
	for _, ev := range evs {
		name := strings.TrimPrefix(string(ev.Kv.Key), m.prefix)
		old, had := cur(name)
		if ev.Type == clientv3.EventTypePut {
			v, err := m.decode(name, ev.Kv.Value)
			if err == nil {
				if !had || old != v {
					chs = append(chs, change[T]{name: name, val: v})
				}
				continue
			}
			// A record nobody can read says nothing trustworthy about
			// the node: drop what we had rather than keep stale data
			// under a key that now means something else.
			m.s.log.Warn("ignoring unreadable "+m.kind+" record", zap.String("key", string(ev.Kv.Key)), zap.Error(err))
		}
		if had {
			chs = append(chs, change[T]{name: name, val: old, deleted: true})
		}
	}
	m.applyLocked(chs)
}

// run keeps the copy in step until ctx ends. rev is the revision of the list
// Open made (0: list first).
func (m *mirror[T]) run(ctx context.Context, rev int64) {
	var bo backoff
	for ctx.Err() == nil {
		if rev == 0 {
			var err error
			if rev, err = m.list(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				m.s.logRetry("listing "+m.kind+"s failed; keeping the last known set", err)
				bo.wait(ctx, m.resync)
				continue
			}
		}
		next, err := m.watch(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.syncedGen.Store(0)
			m.s.logRetry("watching "+m.kind+"s stopped; listing again", err)
			bo.wait(ctx, m.resync)
		} else {
			bo.reset()
		}
		rev = next
	}
}

// watch follows the range from rev+1. It returns 0 when the copy must be
// rebuilt from a list, and an error when that is because something failed.
func (m *mirror[T]) watch(ctx context.Context, rev int64) (int64, error) {
	// WithRequireLeader: a member cut off from its cluster would keep the
	// watch open and silent; this makes it fail so that we move on.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := m.s.cli.Watch(wctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		select {
		case <-ctx.Done():
			return 0, nil
		case <-m.resync:
			// Reconnected: the watch would resume by itself, but a list
			// is the one answer that cannot have missed anything.
			return 0, nil
		case resp, ok := <-wch:
			if !ok {
				return 0, fmt.Errorf("watch channel closed")
			}
			if resp.CompactRevision != 0 {
				m.s.log.Info("watch revision compacted; listing again",
					zap.String("kind", m.kind), zap.Int64("from", rev+1), zap.Int64("compacted", resp.CompactRevision))
				return 0, nil
			}
			if err := resp.Err(); err != nil {
				return 0, err
			}
			if resp.Canceled {
				return 0, fmt.Errorf("watch canceled by the server")
			}
			if len(resp.Events) > 0 {
				m.applyEvents(resp.Events)
			}
			if resp.Header.Revision > rev {
				rev = resp.Header.Revision
			}
		}
	}
}

func (m *mirror[T]) subscribe(sub subscriber[T]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[sub] = struct{}{}
	// The current set first, as if it had just appeared.
	chs := make([]change[T], 0, len(m.state))
	for name, v := range m.state {
		chs = append(chs, change[T]{name: name, val: v})
	}
	sort.Slice(chs, func(i, j int) bool { return chs[i].name < chs[j].name })
	sub.changed(chs, m.state)
}

func (m *mirror[T]) unsubscribe(sub subscriber[T]) {
	m.mu.Lock()
	delete(m.subs, sub)
	m.mu.Unlock()
}

func (m *mirror[T]) snapshot() []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.state))
	for name := range m.state {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]T, len(names))
	for i, name := range names {
		out[i] = m.state[name]
	}
	return out
}

// nodeQueue is one Watch caller's queue. It holds at most one pending event
// per node, the latest, so a consumer that falls behind costs memory in
// proportion to the cluster, not to the churn, and never holds back the
// mirror.
type nodeQueue struct {
	mu      sync.Mutex
	order   []string // names in arrival order; may hold names no longer pending
	pending map[string]Event
	seen    map[string]bool // nodes the consumer was last told exist
	wake    chan struct{}
}

func newNodeQueue() *nodeQueue {
	return &nodeQueue{pending: map[string]Event{}, seen: map[string]bool{}, wake: make(chan struct{}, 1)}
}

func (q *nodeQueue) changed(chs []change[NodeRecord], _ map[string]NodeRecord) {
	q.mu.Lock()
	for _, c := range chs {
		ev := Event{Kind: EventPut, Node: c.val}
		if c.deleted {
			ev.Kind = EventDelete
		}
		if _, ok := q.pending[c.name]; ok {
			if ev.Kind == EventDelete && !q.seen[c.name] {
				// Came and went before the consumer looked: it
				// never needs to hear of it.
				delete(q.pending, c.name)
				continue
			}
		} else {
			q.order = append(q.order, c.name)
		}
		q.pending[c.name] = ev
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *nodeQueue) pop() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) > 0 {
		name := q.order[0]
		q.order = q.order[1:]
		ev, ok := q.pending[name]
		if !ok {
			continue
		}
		delete(q.pending, name)
		if ev.Kind == EventPut {
			q.seen[name] = true
		} else {
			delete(q.seen, name)
		}
		return ev, true
	}
	q.order = nil // let the backing array go
	return Event{}, false
}

// vtepQueue is one WatchVTEPs caller's queue: only the latest set matters.
type vtepQueue struct {
	mu    sync.Mutex
	set   []VTEPRecord
	dirty bool
	wake  chan struct{}
}

func (q *vtepQueue) changed(_ []change[VTEPRecord], state map[string]VTEPRecord) {
	set := make([]VTEPRecord, 0, len(state))
	for _, v := range state {
		set = append(set, v)
	}
	sortVTEPs(set)
	q.mu.Lock()
	q.set, q.dirty = set, true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *vtepQueue) take() ([]VTEPRecord, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.dirty {
		return nil, false
	}
	q.dirty = false
	return q.set, true
}

func sortVTEPs(set []VTEPRecord) {
	sort.Slice(set, func(i, j int) bool {
		a, b := set[i].CIDR, set[j].CIDR
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
}
