package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
)

// PutVTEP adds or replaces the VTEP for rec.CIDR. VTEP records carry no
// lease: they are cluster configuration, not the presence of a node.
func (s *Store) PutVTEP(ctx context.Context, rec VTEPRecord) error {
	if err := rec.normalize(); err != nil {
		return err
	}
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	if _, err := s.cli.Put(ctx, s.vtepKey(rec.CIDR), string(val)); err != nil {
		return fmt.Errorf("kvstore: writing VTEP %s: %w", rec.CIDR, err)
	}
	return nil
}

// DeleteVTEP removes the VTEP for cidr; removing one that does not exist is
// not an error.
func (s *Store) DeleteVTEP(ctx context.Context, cidr netip.Prefix) error {
	if !cidr.IsValid() {
		return fmt.Errorf("%w VTEP CIDR", ErrInvalid)
	}
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	if _, err := s.cli.Delete(ctx, s.vtepKey(cidr.Masked())); err != nil {
		return fmt.Errorf("kvstore: deleting VTEP %s: %w", cidr, err)
	}
	return nil
}

func (s *Store) vtepKey(cidr netip.Prefix) string {
	return s.opts.Prefix + vtepsDir + prefixKey(cidr)
}

// VTEPs returns the last known VTEP set, sorted by CIDR.
func (s *Store) VTEPs() []VTEPRecord {
	set := s.vteps.snapshot()
	sortVTEPs(set)
	return set
}

// WatchVTEPs sends the whole VTEP set now (possibly empty) and again after
// every change; a reader that falls behind gets only the latest set. Like
// Watch it holds the last known set while etcd is away. The channel is
// closed when ctx ends or the store is closed.
func (s *Store) WatchVTEPs(ctx context.Context) <-chan []VTEPRecord {
	out := make(chan []VTEPRecord)
	q := &vtepQueue{wake: make(chan struct{}, 1)}
	// subscribe hands over the current set at once, even an empty one,
	// so that the first send tells the reader where it starts from.
	s.vteps.subscribe(q)
	go func() {
		defer s.vteps.unsubscribe(q)
		pump(ctx, s.ctx, q.wake, q.take, out)
	}()
	return out
}
