package agent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/k8s"
)

// PodPolicy is what a pod's annotations say of its endpoint.
type PodPolicy struct {
	Identity  string   // "" for the default
	AllowFrom []string // nil allows every source
}

// PodSource reads pods from the cluster.
type PodSource interface {
	// PodPolicy returns the policy of a pod; found is false when the
	// cluster has no such pod.
	PodPolicy(ctx context.Context, namespace, name string) (p PodPolicy, found bool, err error)
}

// podLookupTimeout bounds the wait for the API server during a CNI ADD.
const podLookupTimeout = 10 * time.Second

// podPolicy fills in the identity and allow-list of a CNI ADD from its
// pod's annotations, unless CNI_ARGS or the runtime config set them. A
// pod the API server does not know keeps the network's defaults; an API
// server that does not answer fails the ADD as one to try again, rather
// than attaching the pod with a policy it does not have.
func (a *Agent) podPolicy(req *api.CNIRequest) error {
	if a.podSource == nil || req.PodName == "" || req.ExplicitPolicy {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), podLookupTimeout)
	defer cancel()
	p, found, err := a.podSource.PodPolicy(ctx, req.PodNamespace, req.PodName)
	if err != nil {
		return cniErr(cniErrTryAgain, "pod %s/%s: %w", req.PodNamespace, req.PodName, err)
	}
	if found {
		req.Identity, req.AllowFrom = p.Identity, p.AllowFrom
	}
	return nil
}

// PodChanged applies a pod's annotations to its running endpoints: the
// identity its packets carry and the sources it lets in change from the
// next packet, the device stays. An annotation that does not parse is
// logged and leaves the policy as it was. Endpoints whose ADD set the
// policy explicitly are not the pod's to change.
func (a *Agent) PodChanged(namespace, name string, p PodPolicy) {
	if a.ipam == nil {
		return
	}
	for _, l := range a.ipam.list() {
		if l.PodName != name || l.PodNamespace != namespace {
			continue
		}
		if err := a.applyPodPolicy(l, p); err != nil {
			a.log.Warn("pod annotations not applied", zap.String("pod", namespace+"/"+name), zap.String("endpoint", l.Endpoint), zap.Error(err))
		}
	}
}

func (a *Agent) applyPodPolicy(l lease, p PodPolicy) error {
	id := identity.DefaultWorkload
	if p.Identity != "" {
		v, err := identity.Parse(p.Identity)
		if err != nil {
			return fmt.Errorf("%s %q: %w", k8s.AnnotationIdentity, p.Identity, err)
		}
		id = v
	}
	allow, err := parseAllowFrom(p.AllowFrom)
	if err != nil {
		return fmt.Errorf("%s %q: %w", k8s.AnnotationAllowFrom, p.AllowFrom, err)
	}
	if id == l.Identity && slices.Equal(allow, l.AllowFrom) {
		return nil
	}
	if err := a.eng.SetIdentity(l.Endpoint, id); err != nil {
		return err
	}
	if err := a.eng.SetPolicy(l.Endpoint, allow); err != nil {
		return err
	}
	if err := a.ipam.setPolicy(l.ContainerID, l.Ifname, id, allow); err != nil {
		a.log.Warn("pod policy applied but not recorded", zap.String("endpoint", l.Endpoint), zap.Error(err))
	}
	a.saveState()
	a.log.Info("pod policy changed", zap.String("pod", l.PodNamespace+"/"+l.PodName), zap.String("endpoint", l.Endpoint),
		zap.Uint32("identity", uint32(id)), zap.Any("allow-from", allow))
	return nil
}
