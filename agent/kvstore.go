package agent

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/kvstore"
)

// openKVStore connects to etcd when kvstore is configured and, for
// pod-cidr: auto, claims this node's block (keeping the one it had) and
// validates the configuration again with it.
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
	if cfg.PodCIDRAuto && !cfg.PodCIDR.IsValid() {
		p, err := s.ClaimPodCIDR(ctx, cfg.NodeName, cfg.ClusterCIDR, cfg.PodCIDRMaskSize)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("pod-cidr auto: %w", err)
		}
		cfg.PodCIDR = p
		if err := cfg.Validate(); err != nil {
			s.Close()
			return nil, err
		}
		log.Info("pod cidr claimed in etcd", zap.Stringer("pod-cidr", p))
	}
	return s, nil
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
	cur, origin, known := a.nodes.lookup(a.eng, n.Name)
	switch ev.Kind {
	case kvstore.EventDelete:
		if known && origin == fromEtcd {
			if err := a.nodes.del(a.eng, n.Name); err != nil {
				a.log.Warn("remove etcd node", zap.String("node", n.Name), zap.Error(err))
			}
		}
	case kvstore.EventPut:
		if known && origin != fromEtcd {
			if cur.IP != n.IP || cur.PodCIDR != n.PodCIDR || cur.PodCIDR6 != n.PodCIDR6 {
				a.log.Warn("etcd node conflicts with a configured one; the configured one stays",
					zap.String("node", n.Name), zap.Stringer("etcd-ip", n.IP), zap.Stringer("ip", cur.IP))
			}
			return
		}
		if known && cur.IP == n.IP && cur.PodCIDR == n.PodCIDR && cur.PodCIDR6 == n.PodCIDR6 {
			return
		}
		spec := dataplane.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6}
		if err := a.checkNode(spec); err != nil {
			a.log.Warn("etcd node refused", zap.String("node", n.Name), zap.Error(err))
			return
		}
		if known {
			a.nodes.del(a.eng, n.Name)
		}
		if n.Protocol != "" && (n.Protocol != a.cfg.TunnelProtocol || (n.Port != 0 && n.Port != a.cfg.TunnelPort)) {
			a.log.Warn("etcd node speaks another tunnel protocol or port; the cluster must agree",
				zap.String("node", n.Name), zap.String("protocol", n.Protocol), zap.Uint16("port", n.Port))
		}
		if err := a.nodes.add(a.eng, []dataplane.NodeSpec{spec}, fromEtcd); err != nil {
			a.log.Warn("etcd node not added", zap.String("node", n.Name), zap.Error(err))
		}
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
