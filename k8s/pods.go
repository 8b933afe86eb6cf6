package k8s

import (
	"context"
	"maps"
	"sync"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Pod annotations that set a pod's endpoint policy.
const (
	// AnnotationIdentity is the pod's security identity, a number or a
	// reserved name; absent: the default workload identity, 256.
	AnnotationIdentity = AnnotationPrefix + "identity"
	// AnnotationAllowFrom lists the identities allowed in, comma
	// separated; absent: every source.
	AnnotationAllowFrom = AnnotationPrefix + "allow-from"
)

// Pods watches the pods scheduled to this node, for their annotations.
type Pods struct {
	c        *Cluster
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	once     sync.Once
}

// Pods returns the watcher of this node's pods (spec.nodeName); Run
// starts it.
func (c *Cluster) Pods() *Pods {
	c.podsOnce.Do(func() {
		f := informers.NewSharedInformerFactoryWithOptions(c.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.opts.NodeName).String()
		}))
		inf := f.Core().V1().Pods().Informer()
		// Keep only the vxdp.io/ annotations: a pod's spec and status
		// would cost memory for nothing, and changes of other
		// annotations are then no change at all.
		_ = inf.SetTransform(trimPod)
		c.pods = &Pods{c: c, factory: f, informer: inf}
	})
	return c.pods
}

func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown
	}
	out := &corev1.Pod{}
	out.Namespace, out.Name, out.UID, out.ResourceVersion = p.Namespace, p.Name, p.UID, p.ResourceVersion
	out.Annotations = ownAnnotations(p.Annotations)
	return out, nil
}

// Annotations returns a pod's vxdp.io/ annotations: from the watch when it has
// the pod, else from the API server (a pod the watch has not delivered
// yet: the runtime attaches it right after the kubelet learned of it).
// found is false when the server does not know the pod.
func (p *Pods) Annotations(ctx context.Context, namespace, name string) (map[string]string, bool, error) {
	if obj, ok, _ := p.informer.GetStore().GetByKey(namespace + "/" + name); ok {
		if pod, ok := obj.(*corev1.Pod); ok {
			return maps.Clone(pod.Annotations), true, nil
		}
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	pod, err := p.c.client.CoreV1().Pods(namespace).Get(rctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return ownAnnotations(pod.Annotations), true, nil
}

// Run starts the watch; changed is called with a pod's vxdp.io/
// annotations each time they change (not for other changes of the pod).
// Calls after the first do nothing; it returns at once.
func (p *Pods) Run(ctx context.Context, changed func(namespace, name string, annotations map[string]string)) {
	p.once.Do(func() {
		_, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, obj any) {
				o, ok1 := old.(*corev1.Pod)
				n, ok2 := obj.(*corev1.Pod)
				if !ok1 || !ok2 || maps.Equal(o.Annotations, n.Annotations) {
					return
				}
				changed(n.Namespace, n.Name, maps.Clone(n.Annotations))
			},
		})
		if err != nil {
			p.c.log.Error("pod informer handler", zap.Error(err))
		}
		p.factory.Start(ctx.Done())
		go func() {
			<-ctx.Done()
			p.factory.Shutdown()
		}()
	})
}
