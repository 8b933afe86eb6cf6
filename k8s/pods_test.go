package k8s

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A pod's annotations are found before the watch has it (from the
// server) and after; changes of its annotations are reported, other
// changes are not; an unknown pod is not found.
func TestPods(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web",
		Annotations: map[string]string{AnnotationIdentity: "3000"}}, Spec: corev1.PodSpec{NodeName: "self"}}
	client := fake.NewClientset(pod)
	c := newCluster(Options{NodeName: "self"}, nil, client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := c.Pods()
	ann, found, err := p.Annotations(ctx, "default", "web")
	if err != nil || !found || ann[AnnotationIdentity] != "3000" {
		t.Fatalf("before the watch: %v %v %v", ann, found, err)
	}
	if _, found, err := p.Annotations(ctx, "default", "nosuch"); found || err != nil {
		t.Fatalf("unknown pod: found %v, %v", found, err)
	}
	type change struct {
		ns, name string
		ann      map[string]string
	}
	changes := make(chan change, 10)
	p.Run(ctx, func(ns, name string, ann map[string]string) { changes <- change{ns, name, ann} })
	deadline := time.Now().Add(10 * time.Second)
	for !p.informer.HasSynced() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pods := client.CoreV1().Pods("default")
	cur, err := pods.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Labels = map[string]string{"app": "web"}
	if cur, err = pods.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cur.Annotations[AnnotationAllowFrom] = "1000,2000"
	if _, err := pods.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ch := <-changes:
		if ch.ns != "default" || ch.name != "web" || ch.ann[AnnotationAllowFrom] != "1000,2000" {
			t.Fatalf("change %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
	select {
	case ch := <-changes:
		t.Fatalf("a second change reported: %+v", ch)
	case <-time.After(200 * time.Millisecond):
	}
	if ann, found, _ := p.Annotations(ctx, "default", "web"); !found || ann[AnnotationAllowFrom] != "1000,2000" {
		t.Fatalf("from the watch: %v %v", ann, found)
	}
}
