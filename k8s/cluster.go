package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Cluster is one agent's connection to the API server. Open makes it
// without contacting the server; Run follows the cluster until its
// context ends.
//
// How it keeps going when the server does not answer: what the agent
// last knew stays in force, and a probe of /readyz every probeEvery says
// whether the server answers (Status). When it answers again, Run starts
// a fresh informer rather than wait for the old one's backoff, and once
// that one has listed, every Node sent before that it did not list is
// sent as deleted.
type Cluster struct {
	opts   Options
	log    *zap.Logger
	client kubernetes.Interface

	// The pods of this node, made on first use (Pods).
	podsOnce sync.Once
	pods     *Pods

	// publish wakes the publisher: this node's Node changed.
	publish chan struct{}
	// restart asks Run for a fresh informer: the server is back.
	restart chan struct{}
	// ready asks the server whether it is ready (/readyz).
	ready func(ctx context.Context) error

	mu        sync.Mutex                // protects the fields below
	nodes     cache.SharedIndexInformer // the current one; nil before Run
	annots    map[string]string
	reachable bool
	probed    bool
	lastError string
	since     time.Time // when reachable last changed
}

// Open builds the client Options describe. It fails only on a
// configuration it cannot use (a missing kubeconfig, no in-cluster
// configuration); the server itself may be down.
//
// client-go logs through klog, which has one logger per process: Open
// points it at log, so that the reflectors' complaints while the server
// is away come out like the agent's other lines.
func Open(opts Options, log *zap.Logger) (*Cluster, error) {
	if log == nil {
		log = zap.NewNop()
	}
	klog.SetLogger(zapr.NewLogger(log.Named("client-go")))
	cfg, err := restConfig(opts)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c := newCluster(opts, log, client)
	c.ready = func(ctx context.Context) error {
		return client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	}
	return c, nil
}

// newCluster wraps a client (a fake one in tests, whose server is always
// ready).
func newCluster(opts Options, log *zap.Logger, client kubernetes.Interface) *Cluster {
	if log == nil {
		log = zap.NewNop()
	}
	return &Cluster{opts: opts, log: log, client: client, publish: make(chan struct{}, 1), restart: make(chan struct{}, 1),
		since: time.Now(), ready: func(context.Context) error { return nil }}
}

// Client returns the client, for what else of the cluster the agent
// reads.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// OwnPodCIDRs reads this node's pod CIDRs from its Node object, one of
// each family at most (for ipam: kubernetes). It waits, asking again
// every second, while the Node is missing, has no pod CIDR yet (the node
// controller allocates them after the kubelet registers) or the server
// does not answer, until ctx ends.
func (c *Cluster) OwnPodCIDRs(ctx context.Context) (v4, v6 netip.Prefix, err error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		n, gerr := c.client.CoreV1().Nodes().Get(rctx, c.opts.NodeName, metav1.GetOptions{})
		cancel()
		if gerr == nil {
			v4, v6, err = PodCIDRs(n)
			if err == nil {
				return v4, v6, nil
			}
		} else {
			err = gerr
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("pod CIDRs of Node %s: %w", c.opts.NodeName, err)
		case <-t.C:
		}
	}
}

// EventKind says what happened to a Node.
type EventKind uint8

const (
	// EventPut: a Node was added or changed. Err is set when the Node
	// cannot be used as a remote node (Convert's error).
	EventPut EventKind = iota
	// EventDelete: a Node is gone; only Node.Name is set.
	EventDelete
)

// Event is one change of a Node other than this node's own.
type Event struct {
	Kind EventKind
	Node Node
	Err  error
}

// Run starts the node informer, the publisher of this node's annotations
// and the probe, and returns the other Nodes' events, starting with all
// of them once listed. It must be called once; the channel is closed
// after ctx ends. underlay6 is the family of the underlay (Convert).
func (c *Cluster) Run(ctx context.Context, annotations map[string]string, underlay6 bool) <-chan Event {
	c.mu.Lock()
	c.annots = annotations
	c.mu.Unlock()
	w := &watch{c: c, ctx: ctx, underlay6: underlay6, ch: make(chan Event), known: map[string]bool{}, gen: 1}
	stop := c.startInformer(w, 1)
	go c.probe(ctx)
	go c.publisher(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				stop()
				w.close()
				return
			case <-c.restart:
				// The server is back. The reflector would retry in its
				// own time, up to a minute away after an outage of some
				// seconds; a fresh informer lists now. Its handlers
				// carry the next generation: the old one's late events
				// are dropped.
				w.mu.Lock()
				w.gen++
				g := w.gen
				w.mu.Unlock()
				stop()
				stop = c.startInformer(w, g)
				c.log.Info("kubernetes api server back; listing nodes again")
			}
		}
	}()
	return w.ch
}

// watch is the state of Run: the channel of events and what was sent on
// it.
type watch struct {
	c         *Cluster
	ctx       context.Context
	underlay6 bool
	ch        chan Event

	mu     sync.Mutex // held while sending; protects the fields below
	known  map[string]bool
	gen    int // the informer whose events count
	closed bool
}

// send passes an event of informer generation g on, keeping known: the
// Nodes last sent as usable remote nodes.
func (w *watch) send(g int, ev Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || g != w.gen {
		return
	}
	if ev.Kind == EventPut && ev.Err == nil {
		w.known[ev.Node.Name] = true
	} else {
		delete(w.known, ev.Node.Name)
	}
	select {
	case w.ch <- ev:
	case <-w.ctx.Done():
	}
}

// reconcile sends a delete for every Node sent before that the fresh
// informer of generation g did not list: those deleted while it was
// not watching.
func (w *watch) reconcile(g int, inf cache.SharedIndexInformer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || g != w.gen {
		return
	}
	for name := range w.known {
		if _, ok, _ := inf.GetStore().GetByKey(name); ok {
			continue
		}
		delete(w.known, name)
		select {
		case w.ch <- Event{Kind: EventDelete, Node: Node{Name: name}}:
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *watch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	close(w.ch)
}

// startInformer starts a node informer whose events go to w as
// generation g, makes it the current one, and returns the function that
// stops it. A generation after the first reconciles once it has listed.
func (c *Cluster) startInformer(w *watch, g int) (stop func()) {
	// No periodic resync: the watch delivers every change, and the
	// agent's handlers would only find nothing to do.
	factory := informers.NewSharedInformerFactory(c.client, 0)
	inf := factory.Core().V1().Nodes().Informer()
	// Keep only what Convert and the publisher read: a Node's status
	// carries image lists and conditions that would cost memory in
	// every agent of a large cluster for nothing.
	_ = inf.SetTransform(trimNode)
	put := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		if n.Name == c.opts.NodeName {
			c.wakePublisher()
			return
		}
		rn, err := Convert(n, w.underlay6)
		w.send(g, Event{Kind: EventPut, Node: rn, Err: err})
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    put,
		UpdateFunc: func(_, obj any) { put(obj) },
		DeleteFunc: func(obj any) {
			name := ""
			switch o := obj.(type) {
			case *corev1.Node:
				name = o.Name
			case cache.DeletedFinalStateUnknown:
				// Deleted while the watch was down; the key of a
				// cluster-scoped object is its name.
				name = o.Key
			}
			if name == "" || name == c.opts.NodeName {
				c.wakePublisher()
				return
			}
			w.send(g, Event{Kind: EventDelete, Node: Node{Name: name}})
		},
	})
	if err != nil {
		// Only after the informer has stopped, which it has not.
		c.log.Error("node informer handler", zap.Error(err))
	}
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		c.noteError(err)
	})
	c.mu.Lock()
	c.nodes = inf
	c.mu.Unlock()
	ictx, cancel := context.WithCancel(w.ctx)
	factory.Start(ictx.Done())
	if g > 1 {
		go func() {
			if cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
				w.reconcile(g, inf)
			}
		}()
	}
	return func() {
		cancel()
		factory.Shutdown()
	}
}

// informer returns the current node informer.
func (c *Cluster) informer() cache.SharedIndexInformer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes
}

func (c *Cluster) wakePublisher() {
	select {
	case c.publish <- struct{}{}:
	default:
	}
}

// publisher keeps this node's annotations on its Node object: after the
// start, whenever the Node changes (someone removed them, or the Node
// was made again), and every republishEvery in case a change was missed.
// It patches only its own keys, with a merge patch that leaves every other
// annotation and field as it is.
func (c *Cluster) publisher(ctx context.Context) {
	const republishEvery = time.Minute
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.publish:
		case <-retry.C:
		}
		err := c.publishOnce(ctx)
		next := republishEvery
		if err != nil {
			c.log.Debug("publish node annotations", zap.Error(err))
			next = 2 * time.Second
		}
		if !retry.Stop() {
			select {
			case <-retry.C:
			default:
			}
		}
		retry.Reset(next)
	}
}

// publishOnce patches this node's annotations when its Node, as the
// informer last saw it, lacks them or has other values.
func (c *Cluster) publishOnce(ctx context.Context) error {
	c.mu.Lock()
	want := c.annots
	c.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	inf := c.informer()
	if obj, ok, _ := inf.GetStore().GetByKey(c.opts.NodeName); ok {
		if n, ok := obj.(*corev1.Node); ok && hasAnnotations(n, want) {
			return nil
		}
	} else if !inf.HasSynced() {
		return fmt.Errorf("nodes not listed yet")
	} else {
		return fmt.Errorf("no Node %s", c.opts.NodeName)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err = c.client.CoreV1().Nodes().Patch(rctx, c.opts.NodeName, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no Node %s", c.opts.NodeName)
	}
	if err == nil {
		c.log.Info("node annotations published", zap.String("node", c.opts.NodeName), zap.Any("annotations", want))
	}
	return err
}

// trimNode reduces a Node to its name, resource version, vxdp.io/
// annotations, pod CIDRs and addresses.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown: its key is what counts
	}
	out := &corev1.Node{}
	out.Name, out.UID, out.ResourceVersion = n.Name, n.UID, n.ResourceVersion
	out.Annotations = ownAnnotations(n.Annotations)
	out.Spec.PodCIDR, out.Spec.PodCIDRs = n.Spec.PodCIDR, n.Spec.PodCIDRs
	out.Status.Addresses = n.Status.Addresses
	return out, nil
}

// ownAnnotations returns the vxdp.io/ annotations of in, nil for none.
func ownAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, AnnotationPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func hasAnnotations(n *corev1.Node, want map[string]string) bool {
	for k, v := range want {
		if n.Annotations[k] != v {
			return false
		}
	}
	return true
}

// probeEvery is how often the probe asks the server whether it is ready.
const probeEvery = 2 * time.Second

// probe asks /readyz every probeEvery, for Status.
func (c *Cluster) probe(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, probeEvery)
		err := c.ready(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if c.noteProbe(err) {
			select {
			case c.restart <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// noteProbe records a probe's outcome and reports whether the server is
// back after a probe that failed.
func (c *Cluster) noteProbe(err error) (back bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := err == nil
	back = ok && c.probed && !c.reachable
	if ok != c.reachable || !c.probed {
		c.since = time.Now()
		if ok {
			c.log.Info("kubernetes api server reachable")
		} else {
			c.log.Warn("kubernetes api server unreachable; forwarding with the last known nodes", zap.Error(err))
		}
	}
	c.reachable, c.probed = ok, true
	if err != nil {
		c.lastError = err.Error()
	}
	return back
}

func (c *Cluster) noteError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastError = err.Error()
}

// Status is how the connection is doing.
type Status struct {
	// Reachable: the last probe of /readyz succeeded.
	Reachable bool
	// Probed: the probe has run at least once; Reachable means
	// nothing before.
	Probed bool
	// Synced: the Nodes have been listed at least once.
	Synced bool
	// Nodes is the number of Node objects known, this node's included.
	Nodes     int
	LastError string
	Since     time.Time // when Reachable last changed
}

// Status says whether the server answers and how many Nodes are known.
func (c *Cluster) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Reachable: c.reachable, Probed: c.probed, LastError: c.lastError, Since: c.since}
	if c.nodes != nil {
		st.Synced, st.Nodes = c.nodes.HasSynced(), len(c.nodes.GetStore().ListKeys())
	}
	return st
}
