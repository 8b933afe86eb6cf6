package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/identity"
)

// fakePods is a PodSource over a map.
type fakePods struct {
	mu   sync.Mutex
	pods map[string]PodPolicy
	err  error
}

func (f *fakePods) PodPolicy(_ context.Context, ns, name string) (PodPolicy, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return PodPolicy{}, false, f.err
	}
	p, ok := f.pods[ns+"/"+name]
	return p, ok, nil
}

func endpointOf(t *testing.T, ta *testAgent, name string) dataplane.Endpoint {
	t.Helper()
	for _, ep := range ta.eng.Endpoints() {
		if ep.Name == name {
			return ep
		}
	}
	t.Fatalf("no endpoint %s", name)
	return dataplane.Endpoint{}
}

// A CNI ADD of a Kubernetes pod takes its identity and allow-list from
// the pod's annotations; an annotation change applies to the running
// endpoint; CNI_ARGS still win; an API server that fails makes the ADD
// one to try again.
func TestPodAnnotations(t *testing.T) {
	ta := newTestAgent(t, loadConfig(t, baseConfig), nil)
	ta.cfg.StateDir = t.TempDir()
	must(t, ta.openIPAM())
	pods := &fakePods{pods: map[string]PodPolicy{
		"default/web":  {Identity: "3000", AllowFrom: []string{"4000"}},
		"default/bare": {},
	}}
	ta.podSource = pods
	netns := filepath.Join(t.TempDir(), "netns")
	must(t, os.WriteFile(netns, nil, 0o600))
	add := func(id string, req api.CNIRequest) (api.CNIResult, error) {
		req.ContainerID, req.Ifname, req.Network = id, "eth0", "vxdp"
		req.Netns = netns + "-" + id
		must(t, os.WriteFile(req.Netns, nil, 0o600))
		return ta.cniAdd(req)
	}
	res, err := add("c1", api.CNIRequest{Identity: "256", PodNamespace: "default", PodName: "web"})
	must(t, err)
	ep := endpointOf(t, ta, res.Endpoint)
	if ep.Identity != 3000 || !slices.Equal(ep.AllowFrom, []identity.ID{4000}) {
		t.Fatalf("endpoint of an annotated pod: identity %d allow %v", ep.Identity, ep.AllowFrom)
	}
	res2, err := add("c2", api.CNIRequest{Identity: "256", PodNamespace: "default", PodName: "bare"})
	must(t, err)
	if ep := endpointOf(t, ta, res2.Endpoint); ep.Identity != identity.DefaultWorkload || ep.AllowFrom != nil {
		t.Fatalf("endpoint of a pod without annotations: identity %d allow %v", ep.Identity, ep.AllowFrom)
	}
	res3, err := add("c3", api.CNIRequest{Identity: "5000", ExplicitPolicy: true, PodNamespace: "default", PodName: "web"})
	must(t, err)
	if ep := endpointOf(t, ta, res3.Endpoint); ep.Identity != 5000 {
		t.Fatalf("CNI_ARGS identity lost to the annotation: %d", ep.Identity)
	}

	ta.PodChanged("default", "web", PodPolicy{Identity: "3001"})
	if ep := endpointOf(t, ta, res.Endpoint); ep.Identity != 3001 || ep.AllowFrom != nil {
		t.Fatalf("after the annotation changed: identity %d allow %v", ep.Identity, ep.AllowFrom)
	}
	if ep := endpointOf(t, ta, res3.Endpoint); ep.Identity != 5000 {
		t.Fatalf("an explicit identity followed the pod's annotation: %d", ep.Identity)
	}
	if l, _ := ta.ipam.get("c1", "eth0"); l.Identity != 3001 {
		t.Fatalf("lease identity %d after the change", l.Identity)
	}
	ta.PodChanged("default", "web", PodPolicy{Identity: "not a number", AllowFrom: []string{"7"}})
	if ep := endpointOf(t, ta, res.Endpoint); ep.Identity != 3001 || ep.AllowFrom != nil {
		t.Fatalf("a bad annotation changed the policy: identity %d allow %v", ep.Identity, ep.AllowFrom)
	}

	pods.mu.Lock()
	pods.err = errors.New("connection refused")
	pods.mu.Unlock()
	_, err = add("c4", api.CNIRequest{PodNamespace: "default", PodName: "web"})
	var ce *cniError
	if !errors.As(err, &ce) || ce.code != cniErrTryAgain {
		t.Fatalf("ADD with the API server down: %v, want code %d", err, cniErrTryAgain)
	}
	if _, ok := ta.ipam.get("c4", "eth0"); ok {
		t.Fatal("a failed ADD kept a lease")
	}
}
