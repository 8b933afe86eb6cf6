package agent

import (
	"context"
	"fmt"
	"net/netip"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/kvstore"
)

// openKVStore connects to etcd when kvstore is configured and, for
// pod-cidr: auto, claims this node's blocks, one of each family whose pool
// is set (keeping the ones it had), and validates the configuration again
// with them.
func openKVStore(ctx context.Context, cfg *config.Config, log *zap.Logger) (*kvstore.Store, error) {
	if cfg.KVStore == "" {
		return nil, nil
	}
	opts, err := kvstore.ParseOptions(cfg.KVStoreOpt)
	if err != nil {
		return nil, &config.Error{Key: "kvstore-opt", Reason: err.Error()}
	}
	opts.Logger = log
	s, err := kvstore.Open(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("kvstore etcd: %w", err)
	}
	if err := claimPodCIDRs(ctx, s, cfg, log); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// claimPodCIDRs fills in the pod CIDRs pod-cidr: auto leaves open.
func claimPodCIDRs(ctx context.Context, s *kvstore.Store, cfg *config.Config, log *zap.Logger) error {
	v4, v6 := cfg.AutoFamilies()
	claimed := false
	for _, f := range []struct {
		want    bool
		pod     *netip.Prefix
		cluster netip.Prefix
		mask    int
		key     string
	}{
		{v4, &cfg.PodCIDR, cfg.ClusterCIDR, cfg.PodCIDRMaskSize, "cluster-pool-ipv4-cidr"},
		{v6, &cfg.PodCIDR6, cfg.ClusterCIDR6, cfg.PodCIDRMaskSize6, "cluster-pool-ipv6-cidr"},
	} {
		if !f.want || f.pod.IsValid() {
			continue
		}
		p, err := s.ClaimPodCIDR(ctx, cfg.NodeName, f.cluster, f.mask)
		if err != nil {
			return fmt.Errorf("pod-cidr auto (%s %s): %w", f.key, f.cluster, err)
		}
		*f.pod = p
		claimed = true
		log.Info("pod cidr claimed in etcd", zap.Stringer("pod-cidr", p))
	}
	if !claimed {
		return nil
	}
	return cfg.Validate()
}

// runKVStore publishes this node and applies the others' comings and
// goings (and the VTEP records) to the engine until ctx ends. Entries from
// the file or the API win over etcd's; a conflict is logged and skipped.
func (a *Agent) runKVStore(ctx context.Context) {
	if a.kv == nil {
		return
	}
	self := kvstore.NodeRecord{Name: a.cfg.NodeName, IP: a.cfg.NodeIP, PodCIDR: a.cfg.PodCIDR, PodCIDR6: a.cfg.PodCIDR6,
		Protocol: a.cfg.TunnelProtocol, Port: a.cfg.TunnelPort}
	if err := a.kv.Publish(ctx, self); err != nil {
		a.log.Error("publish node record", zap.Error(err))
	}
	go a.watchVTEPRecords(ctx)
	for ev := range a.kv.Watch(ctx) {
		a.etcdNodeEvent(ev)
	}
}

// etcdNodeEvent applies one change of a node record. A record that the
// checks refuse is logged and leaves what was known of the node as it was.
func (a *Agent) etcdNodeEvent(ev kvstore.Event) {
	n := ev.Node
	if n.Name == a.cfg.NodeName {
		return
	}
	switch ev.Kind {
	case kvstore.EventDelete:
		a.sourceNodeDel(fromEtcd, n.Name)
	case kvstore.EventPut:
		a.sourceNodePut(fromEtcd, dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6}, n.Protocol, n.Port)
	}
}

// watchVTEPRecords keeps the engine's VTEP table at the configured VTEPs
// plus etcd's.
func (a *Agent) watchVTEPRecords(ctx context.Context) {
	for recs := range a.kv.WatchVTEPs(ctx) {
		if err := a.eng.SetVTEPs(a.vtepsWith(recs)); err != nil {
			a.log.Warn("vteps from etcd not applied", zap.Error(err))
		}
	}
}

// vtepsWith is the VTEP table of the configuration plus the records that
// pass the checks; a refused record is logged and left out.
func (a *Agent) vtepsWith(recs []kvstore.VTEPRecord) []dataplane.VTEPSpec {
	var vs []dataplane.VTEPSpec
	if a.cfg.EnableVTEP {
		cv, err := vtepSpecs(a.cfg.VTEPs)
		if err == nil {
			vs = cv
		}
	}
	for _, r := range recs {
		var mac encap.MAC
		err := mac.UnmarshalText([]byte(r.MAC))
		v := dataplane.VTEPSpec{CIDR: r.CIDR, Endpoint: r.Endpoint, MAC: mac}
		if err == nil {
			err = a.checkVTEP(v)
		}
		if err != nil {
			a.log.Warn("etcd vtep record refused", zap.Stringer("cidr", r.CIDR), zap.Error(err))
			continue
		}
		vs = append(vs, v)
	}
	return vs
}

// kvStatus says how the kvstore is doing, for vxdp status.
func (a *Agent) kvStatus() string {
	if a.kv == nil {
		return ""
	}
	st := a.kv.Status()
	if st.Connected {
		return fmt.Sprintf("etcd connected (%d nodes, %d vteps)", st.Nodes, st.VTEPs)
	}
	msg := "etcd unreachable: forwarding with the last known state"
	if st.LastError != "" {
		msg += " (" + st.LastError + ")"
	}
	return msg
}
