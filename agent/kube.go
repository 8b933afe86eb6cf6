package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/k8s"
)

// kubePodCIDRWait bounds how long a start with ipam: kubernetes waits for
// its Node object to have pod CIDRs (the node controller allocates them
// once the kubelet has registered the Node).
var kubePodCIDRWait = 2 * time.Minute

// openKube makes the Kubernetes client when the configuration turns the
// source on and, for ipam: kubernetes, reads this node's pod CIDRs from
// its Node object and validates the configuration again with them.
func openKube(ctx context.Context, cfg *config.Config, log *zap.Logger) (*k8s.Cluster, error) {
	if !cfg.K8sEnabled() {
		return nil, nil
	}
	c, err := k8s.Open(k8s.Options{Kubeconfig: cfg.K8sKubeconfig, APIServer: cfg.K8sAPIServer, NodeName: cfg.NodeName,
		UserAgent: "vxdp/" + Version + " (" + cfg.NodeName + ")"}, log)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	if cfg.IPAM != config.IPAMKubernetes || cfg.PodCIDR.IsValid() || cfg.PodCIDR6.IsValid() {
		return c, nil
	}
	wctx, cancel := context.WithTimeout(ctx, kubePodCIDRWait)
	defer cancel()
	v4, v6, err := c.OwnPodCIDRs(wctx)
	if err != nil {
		return nil, fmt.Errorf("ipam kubernetes: %w", err)
	}
	want4, want6 := cfg.KubeFamilies()
	if want4 {
		cfg.PodCIDR = v4
	}
	if want6 {
		cfg.PodCIDR6 = v6
	}
	if !cfg.PodCIDR.IsValid() && !cfg.PodCIDR6.IsValid() {
		return nil, &config.Error{Key: "ipam", Value: config.IPAMKubernetes,
			Reason: fmt.Sprintf("Node %s has no pod CIDR of an enabled family (spec.podCIDRs %s %s)", cfg.NodeName, v4, v6)}
	}
	log.Info("pod cidrs from the Node object", zap.Stringer("pod-cidr", cfg.PodCIDR), zap.Stringer("pod-cidr6", cfg.PodCIDR6))
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// runKube publishes this node's tunnel data as annotations of its Node
// and applies the other Nodes' comings and goings to the engine until ctx
// ends.
func (a *Agent) runKube(ctx context.Context) {
	if a.kube == nil {
		return
	}
	annotations := map[string]string{
		k8s.AnnotationNodeIP:         a.cfg.NodeIP.String(),
		k8s.AnnotationTunnelProtocol: a.cfg.TunnelProtocol,
		k8s.AnnotationTunnelPort:     strconv.Itoa(int(a.cfg.TunnelPort)),
	}
	a.kube.Pods().Run(ctx, func(namespace, name string, annotations map[string]string) {
		a.PodChanged(namespace, name, podPolicyOf(annotations))
	})
	for ev := range a.kube.Run(ctx, annotations, a.cfg.NodeIP.Is6()) {
		a.kubeNodeEvent(ev)
	}
}

// kubeNodeEvent applies one change of another Node. A Node that cannot
// be a remote node (no pod CIDR yet, no address) is no node of ours: if
// it was one, it leaves.
func (a *Agent) kubeNodeEvent(ev k8s.Event) {
	n := ev.Node
	if n.Name == a.cfg.NodeName {
		return
	}
	switch {
	case ev.Kind == k8s.EventDelete:
		a.sourceNodeDel(fromK8s, n.Name)
	case ev.Err != nil:
		lvl := a.log.Warn
		if errors.Is(ev.Err, k8s.ErrNoPodCIDR) || errors.Is(ev.Err, k8s.ErrNoAddress) {
			lvl = a.log.Debug // not yet: the node controller or kubelet will fill it in
		}
		lvl("kubernetes node not usable", zap.String("node", n.Name), zap.Error(ev.Err))
		a.sourceNodeDel(fromK8s, n.Name)
	default:
		a.sourceNodePut(fromK8s, dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6}, n.Protocol, n.Port)
	}
}

// kubeStatus says how the connection to the API server is doing, for
// vxdp status.
func (a *Agent) kubeStatus() string {
	if a.kube == nil {
		return ""
	}
	st := a.kube.Status()
	switch {
	case st.Reachable && st.Synced:
		return fmt.Sprintf("kubernetes connected (%d nodes)", st.Nodes)
	case st.Reachable:
		return "kubernetes connected, listing nodes"
	case !st.Probed:
		return "kubernetes connecting"
	}
	msg := "kubernetes unreachable: forwarding with the last known state"
	if st.LastError != "" {
		msg += " (" + st.LastError + ")"
	}
	return msg
}

// kubePods is the PodSource of a Kubernetes cluster: the annotations of
// the API server's pods.
type kubePods struct{ pods *k8s.Pods }

func (k kubePods) PodPolicy(ctx context.Context, namespace, name string) (PodPolicy, bool, error) {
	ann, found, err := k.pods.Annotations(ctx, namespace, name)
	if err != nil || !found {
		return PodPolicy{}, found, err
	}
	return podPolicyOf(ann), true, nil
}

// podPolicyOf reads the policy annotations. Only an absent allow-from
// allows all: an empty one is refused when parsed, as an empty member of
// any allow-list is.
func podPolicyOf(ann map[string]string) PodPolicy {
	p := PodPolicy{Identity: strings.TrimSpace(ann[k8s.AnnotationIdentity])}
	if v, ok := ann[k8s.AnnotationAllowFrom]; ok {
		p.AllowFrom = strings.Split(v, ",")
	}
	return p
}
