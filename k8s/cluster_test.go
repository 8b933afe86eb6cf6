package k8s

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// next returns the next event, failing after a while.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

// TestClusterEvents: the other Nodes come out as events (this node's
// does not), changes and deletes follow, and this node's annotations are
// published on its Node, leaving the others alone.
func TestClusterEvents(t *testing.T) {
	self := node("self", []string{"10.1.1.0/24"}, map[string]string{"keep.io/me": "yes"}, internal("192.0.2.1"))
	peer := node("peer", []string{"10.1.2.0/24"}, nil, internal("192.0.2.2"))
	client := fake.NewClientset(self, peer)
	c := newCluster(Options{NodeName: "self"}, nil, client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Run(ctx, map[string]string{AnnotationTunnelProtocol: "vxlan", AnnotationTunnelPort: "8472"}, false)

	ev := next(t, ch)
	if ev.Kind != EventPut || ev.Err != nil || ev.Node.Name != "peer" || ev.Node.PodCIDR.String() != "10.1.2.0/24" {
		t.Fatalf("first event %+v", ev)
	}
	nodes := client.CoreV1().Nodes()
	peer.Spec.PodCIDRs = nil
	if _, err := nodes.Update(ctx, peer, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != EventPut || ev.Err == nil {
		t.Fatalf("a Node without pod CIDRs: %+v", ev)
	}
	if err := nodes.Delete(ctx, "peer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != EventDelete || ev.Node.Name != "peer" {
		t.Fatalf("delete: %+v", ev)
	}

	deadline := time.Now().Add(10 * time.Second)
	var got *corev1.Node
	for time.Now().Before(deadline) {
		n, err := nodes.Get(ctx, "self", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got = n
		if n.Annotations[AnnotationTunnelProtocol] == "vxlan" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got.Annotations[AnnotationTunnelProtocol] != "vxlan" || got.Annotations[AnnotationTunnelPort] != "8472" || got.Annotations["keep.io/me"] != "yes" {
		t.Fatalf("self annotations %v", got.Annotations)
	}
	if st := c.Status(); !st.Synced || st.Nodes != 1 {
		t.Errorf("status %+v", st)
	}
	v4, v6, err := c.OwnPodCIDRs(ctx)
	if err != nil || v4.String() != "10.1.1.0/24" || v6.IsValid() {
		t.Errorf("OwnPodCIDRs = %v %v %v", v4, v6, err)
	}
	cancel()
	for range ch {
	}
}

// TestTrimNode: the informer keeps what Convert reads, and Convert gives
// the same node from the trimmed copy.
func TestTrimNode(t *testing.T) {
	n := node("n1", []string{"10.1.2.0/24", "fd00:1:2::/64"},
		map[string]string{AnnotationTunnelPort: "8472", "other.io/big": "x"}, internal("192.0.2.2"))
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.example/huge:1"}, SizeBytes: 1 << 30}}
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	obj, err := trimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	tn := obj.(*corev1.Node)
	if len(tn.Status.Images) != 0 || len(tn.ManagedFields) != 0 || tn.Annotations["other.io/big"] != "" {
		t.Errorf("trimmed node keeps too much: %+v", tn)
	}
	a, errA := Convert(n, false)
	b, errB := Convert(tn, false)
	if a != b || errA != nil || errB != nil {
		t.Errorf("Convert before %+v %v, after trimming %+v %v", a, errA, b, errB)
	}
}

// TestFreshInformerReconciles: the informer Run starts when the server
// returns lists the Nodes again, and a Node sent before that it does not
// list (deleted while nobody watched) comes out as deleted.
func TestFreshInformerReconciles(t *testing.T) {
	client := fake.NewClientset(node("peer", []string{"10.1.2.0/24"}, nil, internal("192.0.2.2")))
	c := newCluster(Options{NodeName: "self"}, nil, client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watch{c: c, ctx: ctx, ch: make(chan Event), known: map[string]bool{"peer": true, "gone": true}, gen: 2}
	stop := c.startInformer(w, 2)
	defer stop()
	got := map[string]EventKind{}
	for len(got) < 2 {
		ev := next(t, w.ch)
		got[ev.Node.Name] = ev.Kind
	}
	if got["peer"] != EventPut || got["gone"] != EventDelete {
		t.Fatalf("events %v", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.known["peer"] || w.known["gone"] {
		t.Errorf("known %v", w.known)
	}
}
