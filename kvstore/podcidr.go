package kvstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrExhausted is returned by ClaimPodCIDR when every block is taken.
var ErrExhausted = errors.New("no free pod CIDR block")

// ClaimPodCIDR returns the block of the cluster CIDR, maskSize bits long,
// that node holds, claiming a free one if it holds none. A claim is a pair
// of keys written in one transaction, podcidr/<block> (the owner) and
// podcidr-owners/<node> (the block; podcidr6-owners/<node> for an IPv6
// cluster CIDR, so that a dual-stack node holds one block of each family),
// each created only if absent: two nodes can never get one block, and one
// node racing with itself can never get two of a family. Claims have no
// lease: a node keeps its blocks across restarts and outages, until
// ReleasePodCIDR.
func (s *Store) ClaimPodCIDR(ctx context.Context, node string, cluster netip.Prefix, maskSize int) (netip.Prefix, error) {
	if err := checkName(node); err != nil {
		return netip.Prefix{}, err
	}
	if !cluster.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%w cluster CIDR", ErrInvalid)
	}
	cluster = cluster.Masked()
	if maskSize < cluster.Bits() || maskSize > cluster.Addr().BitLen() {
		return netip.Prefix{}, fmt.Errorf("%w mask size %d for cluster CIDR %s", ErrInvalid, maskSize, cluster)
	}
	if s.ctx.Err() != nil {
		return netip.Prefix{}, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	blocksKey := s.opts.Prefix + podCIDRDir
	ownerKey := s.opts.Prefix + ownersDir(cluster) + node
	// A round ends without an answer only when this name's claim appeared
	// meanwhile, which the next round returns; the bound is a guard.
	for round := 0; round < 5; round++ {
		if err := ctx.Err(); err != nil {
			return netip.Prefix{}, err
		}
		// The node's own claim and everyone's, read in one transaction:
		// read apart, a claim this name made concurrently could fall
		// between the two and the cluster look full.
		rctx, rcancel := context.WithTimeout(ctx, s.opts.DialTimeout)
		tr, err := s.cli.Txn(rctx).Then(
			clientv3.OpGet(ownerKey),
			clientv3.OpGet(blocksKey, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		).Commit()
		rcancel()
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("kvstore: listing pod CIDR claims: %w", err)
		}
		own, claims := tr.Responses[0].GetResponseRange(), tr.Responses[1].GetResponseRange()
		if own == nil || claims == nil {
			return netip.Prefix{}, fmt.Errorf("kvstore: listing pod CIDR claims: unexpected response")
		}
		if len(own.Kvs) > 0 {
			held, err := s.confirmHeld(ctx, node, ownerKey, own.Kvs[0].Value)
			if err != nil {
				return netip.Prefix{}, err
			}
			if held.Bits() != maskSize || !cluster.Contains(held.Addr()) {
				return netip.Prefix{}, fmt.Errorf("kvstore: node %s already holds pod CIDR %s, which is not a /%d block of %s: release it first", node, held, maskSize, cluster)
			}
			return held, nil
		}

		taken := newTakenSet(cluster, maskSize)
		for _, kv := range claims.Kvs {
			p, err := parsePrefixKey(strings.TrimPrefix(string(kv.Key), blocksKey))
			if err != nil {
				s.log.Warn("ignoring unreadable pod CIDR claim", zap.String("key", string(kv.Key)), zap.Error(err))
				continue
			}
			taken.add(p)
		}

		retry := false
		for cand, ok := taken.firstFree(); ok; cand, ok = taken.nextFree(cand) {
			won, ownerExists, err := s.tryClaim(ctx, node, cand, ownerKey)
			if err != nil {
				return netip.Prefix{}, err
			}
			if won {
				s.log.Info("claimed pod CIDR", zap.String("node", node), zap.Stringer("cidr", cand))
				return cand, nil
			}
			if ownerExists {
				// This name claimed a block concurrently: that
				// claim is the answer.
				retry = true
				break
			}
			taken.add(cand)
		}
		if !retry {
			return netip.Prefix{}, fmt.Errorf("kvstore: %w: no /%d block of %s left for node %s (%d claimed)", ErrExhausted, maskSize, cluster, node, taken.exact)
		}
	}
	return netip.Prefix{}, fmt.Errorf("kvstore: claiming a pod CIDR for %s: too much contention", node)
}

// confirmHeld parses the node's claim and checks that the block's own key
// agrees. A missing block key (removed by hand) is written back; a block
// that names another owner is a corrupt store and is reported, not guessed
// at.
func (s *Store) confirmHeld(ctx context.Context, node, ownerKey string, val []byte) (netip.Prefix, error) {
	held, err := netip.ParsePrefix(string(val))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("kvstore: pod CIDR claim of %s (%s): %v", node, ownerKey, err)
	}
	blockKey := s.opts.Prefix + podCIDRDir + prefixKey(held)
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(blockKey), "=", 0)).
		Then(clientv3.OpPut(blockKey, node)).
		Else(clientv3.OpGet(blockKey)).
		Commit()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("kvstore: checking pod CIDR %s: %w", held, err)
	}
	if tr.Succeeded {
		s.log.Warn("pod CIDR block key was missing; restored it", zap.String("node", node), zap.Stringer("cidr", held))
		return held, nil
	}
	rr := tr.Responses[0].GetResponseRange()
	if rr != nil && len(rr.Kvs) > 0 && string(rr.Kvs[0].Value) != node {
		return netip.Prefix{}, fmt.Errorf("kvstore: pod CIDR %s is recorded as held by %s and by %s", held, node, rr.Kvs[0].Value)
	}
	return held, nil
}

// tryClaim creates both keys of a claim if neither exists. ownerExists
// reports that it failed because the node already has a claim.
func (s *Store) tryClaim(ctx context.Context, node string, block netip.Prefix, ownerKey string) (won, ownerExists bool, err error) {
	blockKey := s.opts.Prefix + podCIDRDir + prefixKey(block)
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(blockKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(ownerKey), "=", 0)).
		Then(clientv3.OpPut(blockKey, node), clientv3.OpPut(ownerKey, block.String())).
		Else(clientv3.OpGet(ownerKey, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return false, false, fmt.Errorf("kvstore: claiming pod CIDR %s: %w", block, err)
	}
	if tr.Succeeded {
		return true, false, nil
	}
	rr := tr.Responses[0].GetResponseRange()
	return false, rr != nil && rr.Count > 0, nil
}

// ownersDir is the sub-tree of the claims of cluster's family.
func ownersDir(cluster netip.Prefix) string {
	if cluster.Addr().Is6() {
		return podCIDR6OwnsDir
	}
	return podCIDROwnsDir
}

// ReleasePodCIDR gives up node's blocks, of both families, if it holds
// any, so that another node may claim them. Only for a node that is gone
// for good: a node that comes back after this gets blocks that may differ.
func (s *Store) ReleasePodCIDR(ctx context.Context, node string) error {
	if err := checkName(node); err != nil {
		return err
	}
	for _, dir := range []string{podCIDROwnsDir, podCIDR6OwnsDir} {
		if err := s.release(ctx, node, s.opts.Prefix+dir+node); err != nil {
			return err
		}
	}
	return nil
}

// release removes the claim under ownerKey and its block's key.
func (s *Store) release(ctx context.Context, node, ownerKey string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, ownerKey)
	if err != nil {
		return fmt.Errorf("kvstore: reading the pod CIDR claim of %s: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	ops := []clientv3.Op{clientv3.OpDelete(ownerKey)}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(ownerKey), "=", resp.Kvs[0].ModRevision)}
	if held, err := netip.ParsePrefix(string(resp.Kvs[0].Value)); err == nil {
		blockKey := s.opts.Prefix + podCIDRDir + prefixKey(held)
		// The block key goes only if it still names this node.
		tr, err := s.cli.Txn(ctx).If(append(cmps, clientv3.Compare(clientv3.Value(blockKey), "=", node))...).
			Then(append(ops, clientv3.OpDelete(blockKey))...).Commit()
		if err != nil {
			return fmt.Errorf("kvstore: releasing pod CIDR %s: %w", held, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	if _, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("kvstore: releasing the pod CIDR claim of %s: %w", node, err)
	}
	return nil
}

// takenSet is the claimed blocks as seen by one listing, and the walk over
// the free ones.
type takenSet struct {
	cluster  netip.Prefix
	maskSize int
	blocks   map[netip.Prefix]bool // claims of exactly this size in the cluster
	others   []netip.Prefix        // claims of other sizes that overlap it
	exact    int
}

func newTakenSet(cluster netip.Prefix, maskSize int) *takenSet {
	return &takenSet{cluster: cluster, maskSize: maskSize, blocks: map[netip.Prefix]bool{}}
}

func (t *takenSet) add(p netip.Prefix) {
	p = p.Masked()
	if !p.Overlaps(t.cluster) {
		return
	}
	if p.Bits() == t.maskSize {
		if !t.blocks[p] {
			t.blocks[p] = true
			t.exact++
		}
		return
	}
	// Left by a different mask size or cluster CIDR: the space is
	// still in use.
	t.others = append(t.others, p)
}

func (t *takenSet) firstFree() (netip.Prefix, bool) {
	return t.freeFrom(netip.PrefixFrom(t.cluster.Addr(), t.maskSize))
}

func (t *takenSet) nextFree(p netip.Prefix) (netip.Prefix, bool) {
	a, ok := prefixEnd(p)
	if !ok {
		return netip.Prefix{}, false
	}
	return t.freeFrom(netip.PrefixFrom(a, t.maskSize))
}

// freeFrom walks from cand to the first free block. Larger claims are
// jumped over whole, so the walk costs at most one step per claim however
// large the cluster is.
func (t *takenSet) freeFrom(cand netip.Prefix) (netip.Prefix, bool) {
	for t.cluster.Contains(cand.Addr()) {
		next := cand
		if !t.blocks[cand] {
			overlap := false
			for _, o := range t.others {
				if o.Overlaps(cand) {
					overlap = true
					if o.Bits() < cand.Bits() {
						next = o
					}
					break
				}
			}
			if !overlap {
				return cand, true
			}
		}
		a, ok := prefixEnd(next)
		if !ok {
			return netip.Prefix{}, false
		}
		cand = netip.PrefixFrom(a, t.maskSize)
	}
	return netip.Prefix{}, false
}

// prefixEnd returns the first address after p; ok is false if p runs to
// the end of the address space.
func prefixEnd(p netip.Prefix) (netip.Addr, bool) {
	b := p.Masked().Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	if host >= len(b)*8 {
		return netip.Addr{}, false
	}
	i := len(b) - 1 - host/8
	add := uint(1) << (host % 8)
	for ; i >= 0 && add > 0; i-- {
		sum := uint(b[i]) + add
		b[i] = byte(sum)
		add = sum >> 8
	}
	if add > 0 {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(b)
	return a, true
}
