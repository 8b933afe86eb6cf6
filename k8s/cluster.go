package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Cluster is one agent's connection to the API server. Open makes it
// without contacting the server; Run follows the cluster until its
// context ends.
//
// How it keeps going when the server does not answer: the informers'
// reflectors retry with backoff and, on their return, resume the watch
// or list again (a Node deleted meanwhile comes out of the list as a
// delete), so what the agent last knew stays in force in between. A
// probe of /readyz says whether the server answers, for Status.
type Cluster struct {
	opts   Options
	log    *zap.Logger
	client kubernetes.Interface

	factory informers.SharedInformerFactory
	nodes   cache.SharedIndexInformer

	// The pods of this node, made on first use (Pods).
	podsOnce   sync.Once
	pods       *Pods
	podFactory informers.SharedInformerFactory

	// publish wakes the publisher: this node's Node changed.
	publish chan struct{}
	// ready asks the server whether it is ready (/readyz).
	ready func(ctx context.Context) error

	mu        sync.Mutex // protects the fields below
	annots    map[string]string
	reachable bool
	probed    bool
	lastError string
	since     time.Time // when reachable last changed
}

// Open builds the client Options describe. It fails only on a
// configuration it cannot use (a missing kubeconfig, no in-cluster
// configuration); the server itself may be down.
func Open(opts Options, log *zap.Logger) (*Cluster, error) {
	if log == nil {
		log = zap.NewNop()
	}
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
	c := &Cluster{opts: opts, log: log, client: client, publish: make(chan struct{}, 1), since: time.Now(),
		ready: func(context.Context) error { return nil }}
	// No periodic resync: the watch delivers every change, and the
	// agent's handlers would only find nothing to do.
	c.factory = informers.NewSharedInformerFactory(client, 0)
	c.nodes = c.factory.Core().V1().Nodes().Informer()
	return c
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
	ch := make(chan Event)
	var mu sync.RWMutex // held to send; closed is set under the write lock
	closed := false
	send := func(ev Event) {
		mu.RLock()
		defer mu.RUnlock()
		if closed {
			return
		}
		select {
		case ch <- ev:
		case <-ctx.Done():
		}
	}
	put := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		if n.Name == c.opts.NodeName {
			c.wakePublisher()
			return
		}
		rn, err := Convert(n, underlay6)
		send(Event{Kind: EventPut, Node: rn, Err: err})
	}
	_, err := c.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
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
			send(Event{Kind: EventDelete, Node: Node{Name: name}})
		},
	})
	if err != nil {
		// Only after the informer has stopped, which it has not.
		c.log.Error("node informer handler", zap.Error(err))
	}
	_ = c.nodes.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		c.noteError(err)
	})
	c.factory.Start(ctx.Done())
	go c.probe(ctx)
	go c.publisher(ctx)
	go func() {
		<-ctx.Done()
		c.factory.Shutdown()
		mu.Lock()
		closed = true
		close(ch)
		mu.Unlock()
	}()
	return ch
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
	if obj, ok, _ := c.nodes.GetStore().GetByKey(c.opts.NodeName); ok {
		if n, ok := obj.(*corev1.Node); ok && hasAnnotations(n, want) {
			return nil
		}
	} else if !c.nodes.HasSynced() {
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
		c.noteProbe(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Cluster) noteProbe(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := err == nil
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
	return Status{Reachable: c.reachable, Probed: c.probed, Synced: c.nodes.HasSynced(), Nodes: len(c.nodes.GetStore().ListKeys()),
		LastError: c.lastError, Since: c.since}
}
