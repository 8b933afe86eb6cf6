package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
)

// The CNI error codes the agent answers with (CNI specification 1.1,
// "Error"); the plugin passes them on to the runtime.
const (
	cniErrUnknownContainer = 3   // the container or its attachment is not there
	cniErrIOFailure        = 5   // the lease could not be recorded
	cniErrInvalidConfig    = 7   // a request field the runtime or conflist got wrong
	cniErrInvalidNetns     = 8   // CNI_NETNS does not exist or is no namespace
	cniErrTryAgain         = 11  // a transient condition
	cniErrExhausted        = 100 // plugin-specific: the pod CIDR has no address left
	cniErrInternal         = 999 // anything else
)

// cniError is an error with the CNI code to report it under.
type cniError struct {
	code uint
	err  error
}

func (e *cniError) Error() string { return e.err.Error() }
func (e *cniError) Unwrap() error { return e.err }

func cniErr(code uint, format string, args ...any) error {
	return &cniError{code: code, err: fmt.Errorf(format, args...)}
}

// cniEndpointName is the endpoint name of an attachment: "cni-", the
// first 16 characters of the container ID, and the interface when it is
// not eth0. Container IDs are at least that unique in practice; two that
// share the prefix are told apart by the lease (the second ADD fails).
func cniEndpointName(containerID, ifname string) string {
	id := containerID
	if len(id) > 16 {
		id = id[:16]
	}
	name := "cni-" + id
	if ifname != config.DefaultIfname {
		name += "-" + ifname
	}
	return name
}

// checkContainerID applies the specification's rule: not empty, letters,
// digits, '_', '.' and '-', starting with a letter or digit.
func checkContainerID(id string) error {
	if id == "" {
		return errors.New("container ID empty")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return fmt.Errorf("container ID %q: only letters, digits, '_', '.' and '-', starting with a letter or digit", id)
		}
	}
	return nil
}

// openIPAM loads the leases of the state directory and brings back the
// endpoints of leases the engine does not have (a clean stop removed
// them; the containers are still there). A lease that conflicts with an
// endpoint of the file or the API is dropped with a warning.
func (a *Agent) openIPAM() error {
	path := ""
	if a.cfg.StateDir != "" {
		path = filepath.Join(a.cfg.StateDir, "ipam-"+a.cfg.NodeIP.String()+".json")
	}
	var reserved []netip.Addr
	for _, h := range []netip.Addr{a.eng.HostIP(), a.eng.HostIP6()} {
		if h.IsValid() {
			reserved = append(reserved, h)
		}
	}
	m, dropped, err := newIPAM(path, a.cfg.PodCIDR, a.cfg.PodCIDR6, reserved)
	if err != nil {
		return fmt.Errorf("state-dir %s: leases: %w", a.cfg.StateDir, err)
	}
	for _, l := range dropped {
		a.log.Warn("lease dropped: it no longer fits the node's pod CIDRs", zap.String("container", l.ContainerID),
			zap.String("ifname", l.Ifname), zap.Stringer("ip", l.IP), zap.Stringer("ip6", l.IP6))
	}
	a.ipam = m
	have := map[string]dataplane.Endpoint{}
	for _, ep := range a.eng.Endpoints() {
		have[ep.Name] = ep
	}
	for _, l := range m.list() {
		if ep, ok := have[l.Endpoint]; ok {
			if ep.IP == l.IP && ep.IP6 == l.IP6 {
				continue
			}
			a.log.Warn("lease dropped: its endpoint name holds other addresses", zap.String("container", l.ContainerID), zap.String("endpoint", l.Endpoint))
			m.release(l.ContainerID, l.Ifname)
			continue
		}
		if _, err := os.Stat(l.Netns); err != nil {
			// The container is gone (its runtime removes the namespace
			// after DEL; a reboot empties /run): the lease is released
			// here, whether or not a DEL reached an agent.
			if err := m.release(l.ContainerID, l.Ifname); noSpace(err) {
				// Kept until a start or a DEL finds room to write.
				a.log.Warn("lease of a gone container kept: no space to record its release", zap.String("container", l.ContainerID), zap.Error(err))
				continue
			} else if err != nil {
				return fmt.Errorf("state-dir %s: leases: %w", a.cfg.StateDir, err)
			}
			a.log.Info("lease released: the container's namespace is gone", zap.String("container", l.ContainerID),
				zap.String("netns", l.Netns), zap.Stringer("ip", l.IP), zap.Stringer("ip6", l.IP6))
			continue
		}
		if err := a.eng.AddEndpoint(l.spec()); err != nil {
			a.log.Warn("endpoint of a lease not restored", zap.String("container", l.ContainerID), zap.Error(err))
			continue
		}
		a.log.Info("endpoint of a lease restored", zap.String("container", l.ContainerID), zap.String("endpoint", l.Endpoint))
	}
	return nil
}

func (l lease) spec() dataplane.EndpointSpec {
	return dataplane.EndpointSpec{Name: l.Endpoint, IP: l.IP, IP6: l.IP6, Netns: l.Netns, Ifname: l.Ifname,
		Identity: l.Identity, AllowFrom: l.AllowFrom}
}

// attachLocks serialises the verbs of one attachment: a DEL the runtime
// sends after killing a slow plugin must wait for the ADD the agent is
// still carrying out, or it would find nothing to delete and the ADD
// would then leave an endpoint without a lease.
type attachLocks struct {
	mu    sync.Mutex
	locks map[attachment]*attachLock
}

type attachLock struct {
	sync.Mutex
	users int
}

func (l *attachLocks) lock(containerID, ifname string) func() {
	k := attachment{containerID, ifname}
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[attachment]*attachLock{}
	}
	m := l.locks[k]
	if m == nil {
		m = &attachLock{}
		l.locks[k] = m
	}
	m.users++
	l.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		l.mu.Lock()
		if m.users--; m.users == 0 {
			delete(l.locks, k)
		}
		l.mu.Unlock()
	}
}

// cniAdd creates the endpoint of an attachment with addresses from IPAM.
func (a *Agent) cniAdd(req api.CNIRequest) (api.CNIResult, error) {
	// The namespace first (two ADDs into one namespace must not both pass
	// the one-attachment check), then the attachment; DEL takes only the
	// latter, so the order never crosses.
	defer a.attachLocks.lock("netns:"+req.Netns, "")()
	defer a.attachLocks.lock(req.ContainerID, ifnameOr(req.Ifname))()
	if err := checkContainerID(req.ContainerID); err != nil {
		return api.CNIResult{}, &cniError{cniErrInvalidConfig, err}
	}
	if req.Netns == "" {
		return api.CNIResult{}, cniErr(cniErrInvalidNetns, "CNI_NETNS is empty")
	}
	if fi, err := os.Stat(req.Netns); err != nil || fi.IsDir() {
		return api.CNIResult{}, cniErr(cniErrInvalidNetns, "network namespace %s: not there (the container is gone?)", req.Netns)
	}
	ifname := ifnameOr(req.Ifname)
	name := cniEndpointName(req.ContainerID, ifname)
	var want []netip.Addr
	for _, s := range req.IPs {
		// The ips capability passes CIDR notation; the prefix length is
		// the pod CIDR's business, not the request's.
		if p, err := netip.ParsePrefix(s); err == nil {
			s = p.Addr().String()
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return api.CNIResult{}, cniErr(cniErrInvalidConfig, "ips: %q is not an address", s)
		}
		want = append(want, ip)
	}
	if err := a.podPolicy(&req); err != nil {
		return api.CNIResult{}, err
	}
	// The same checks as an endpoint of the API, on a stand-in address
	// (IPAM picks the real ones).
	spec, err := a.endpointRequest(api.EndpointRequest{Name: name, IP: a.standIn(), Netns: req.Netns, Ifname: ifname,
		Identity: req.Identity, AllowFrom: req.AllowFrom})
	if err != nil {
		return api.CNIResult{}, &cniError{cniErrInvalidConfig, err}
	}
	if l, ok := a.ipam.get(req.ContainerID, ifname); ok {
		// A second ADD of one attachment (a runtime retrying after a
		// plugin that died): the same answer while it is the same.
		if l.Netns == req.Netns && a.hasEndpoint(l) {
			return a.cniResult(l), nil
		}
		return api.CNIResult{}, cniErr(cniErrInvalidConfig, "container %s already has %s on this network; delete it first", req.ContainerID, ifname)
	}
	for _, other := range a.ipam.list() {
		if other.Netns == req.Netns && (other.ContainerID != req.ContainerID || other.Ifname != ifname) {
			return api.CNIResult{}, cniErr(cniErrInvalidConfig, "namespace %s already has %s on this network (container %s); one attachment per container",
				req.Netns, other.Ifname, other.ContainerID)
		}
	}
	t0 := time.Now()
	tmpl := lease{ContainerID: req.ContainerID, Ifname: ifname, Endpoint: name, Network: req.Network,
		Netns: req.Netns, Identity: spec.Identity, AllowFrom: spec.AllowFrom}
	if a.podSource != nil && !req.ExplicitPolicy {
		tmpl.PodNamespace, tmpl.PodName = req.PodNamespace, req.PodName
	}
	l, err := a.ipam.allocate(tmpl, want, a.endpointAddrs())
	switch {
	case errors.Is(err, errExhausted):
		return api.CNIResult{}, &cniError{cniErrExhausted, err}
	case errors.Is(err, errRecord):
		return api.CNIResult{}, &cniError{cniErrIOFailure, err}
	case err != nil:
		return api.CNIResult{}, &cniError{cniErrInvalidConfig, err}
	}
	spec.IP, spec.IP6 = l.IP, l.IP6
	t1 := time.Now()
	if err := a.eng.AddEndpoint(spec); err != nil {
		if rerr := a.ipam.release(l.ContainerID, l.Ifname); rerr != nil {
			a.log.Warn("lease of a failed ADD kept", zap.String("container", l.ContainerID), zap.Error(rerr))
		}
		return api.CNIResult{}, cniErr(cniErrInternal, "endpoint %s: %w", name, err)
	}
	t2 := time.Now()
	a.saveState()
	a.log.Info("container attached", zap.String("container", l.ContainerID), zap.String("endpoint", name),
		zap.Stringer("ip", l.IP), zap.Stringer("ip6", l.IP6), zap.Duration("lease", t1.Sub(t0)),
		zap.Duration("device", t2.Sub(t1)), zap.Duration("state", time.Since(t2)))
	return a.cniResult(l), nil
}

// standIn is an address of the node's pod CIDR that passes the endpoint
// checks, for validating a request before IPAM chose its addresses.
func (a *Agent) standIn() string {
	p, host := a.cfg.PodCIDR, a.cfg.HostAddr()
	if !p.IsValid() {
		p, host = a.cfg.PodCIDR6, a.cfg.HostAddr6()
	}
	s := p.Masked().Addr().Next()
	if s == host {
		s = s.Next()
	}
	return s.String()
}

func (a *Agent) hasEndpoint(l lease) bool {
	for _, ep := range a.eng.Endpoints() {
		if ep.Name == l.Endpoint {
			return !ep.DeviceGone
		}
	}
	return false
}

// endpointAddrs are the addresses every endpoint holds, for IPAM to skip.
func (a *Agent) endpointAddrs() map[netip.Addr]bool {
	busy := map[netip.Addr]bool{}
	for _, ep := range a.eng.Endpoints() {
		busy[ep.IP] = true
		busy[ep.IP6] = true
	}
	delete(busy, netip.Addr{})
	return busy
}

func (a *Agent) cniResult(l lease) api.CNIResult {
	r := api.CNIResult{Endpoint: l.Endpoint, Ifname: l.Ifname, Netns: l.Netns, MTU: a.eng.RouteMTU(),
		IPs: []api.CNIAddress{}, Routes: []api.CNIRoute{}}
	if l.IP.IsValid() {
		r.IPs = append(r.IPs, api.CNIAddress{Address: netip.PrefixFrom(l.IP, 32)})
		r.Routes = append(r.Routes, api.CNIRoute{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)})
	}
	if l.IP6.IsValid() {
		r.IPs = append(r.IPs, api.CNIAddress{Address: netip.PrefixFrom(l.IP6, 128)})
		r.Routes = append(r.Routes, api.CNIRoute{Dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0)})
	}
	return r
}

// cniDel removes an attachment: its endpoint, then its lease. An
// attachment the agent does not know, or whose namespace is gone, is no
// error: DEL is idempotent.
func (a *Agent) cniDel(req api.CNIRequest) error {
	ifname := ifnameOr(req.Ifname)
	defer a.attachLocks.lock(req.ContainerID, ifname)()
	name := cniEndpointName(req.ContainerID, ifname)
	if l, ok := a.ipam.get(req.ContainerID, ifname); ok {
		name = l.Endpoint
	}
	if err := a.eng.DelEndpoint(name); err != nil && !errors.Is(err, dataplane.ErrNotFound) {
		return cniErr(cniErrInternal, "endpoint %s: %w", name, err)
	}
	if err := a.ipam.release(req.ContainerID, ifname); err != nil {
		return &cniError{cniErrIOFailure, err}
	}
	a.saveState()
	a.log.Info("container detached", zap.String("container", req.ContainerID), zap.String("endpoint", name))
	return nil
}

// cniCheck verifies an attachment: the lease, its endpoint, and in the
// container's namespace the interface with its addresses and routes.
func (a *Agent) cniCheck(req api.CNIRequest) (api.CNIResult, error) {
	ifname := ifnameOr(req.Ifname)
	defer a.attachLocks.lock(req.ContainerID, ifname)()
	l, ok := a.ipam.get(req.ContainerID, ifname)
	if !ok {
		return api.CNIResult{}, cniErr(cniErrUnknownContainer, "container %s has no %s on this network", req.ContainerID, ifname)
	}
	if req.Netns != "" && req.Netns != l.Netns {
		return api.CNIResult{}, cniErr(cniErrInvalidNetns, "container %s was attached in %s, not %s", req.ContainerID, l.Netns, req.Netns)
	}
	var ep *dataplane.Endpoint
	for _, e := range a.eng.Endpoints() {
		if e.Name == l.Endpoint {
			ep = &e
		}
	}
	if ep == nil {
		return api.CNIResult{}, cniErr(cniErrUnknownContainer, "container %s: endpoint %s is not running (leased %s)", req.ContainerID, l.Endpoint, joinAddrs(l.IP, l.IP6))
	}
	if ep.DeviceGone {
		return api.CNIResult{}, cniErr(cniErrUnknownContainer, "container %s: its interface %s is gone", req.ContainerID, ifname)
	}
	res := a.cniResult(l)
	if err := checkPodInterface(l.Netns, ifname, res); err != nil {
		return api.CNIResult{}, cniErr(cniErrUnknownContainer, "container %s: %w", req.ContainerID, err)
	}
	return res, nil
}

// cniGC removes every attachment not in the valid list.
func (a *Agent) cniGC(req api.CNIGCRequest) (api.CNIGCResult, error) {
	valid := map[api.CNIAttachment]bool{}
	for _, v := range req.ValidAttachments {
		v.Ifname = ifnameOr(v.Ifname)
		valid[v] = true
	}
	res := api.CNIGCResult{Removed: []api.CNIAttachment{}}
	var errs []error
	for _, l := range a.ipam.list() {
		at := api.CNIAttachment{ContainerID: l.ContainerID, Ifname: l.Ifname}
		if valid[at] || l.Network != req.Network {
			continue
		}
		if err := a.cniDel(api.CNIRequest{CNIAttachment: at}); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Removed = append(res.Removed, at)
	}
	return res, errors.Join(errs...)
}

func joinAddrs(as ...netip.Addr) string {
	var s []string
	for _, a := range as {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return strings.Join(s, ",")
}

// cniStatus answers STATUS: whether the agent can add containers now.
func (a *Agent) cniStatus() error {
	if p := a.eng.Problems(); len(p) > 0 {
		return cniErr(50, "the node is not forwarding: %s", strings.Join(p, "; "))
	}
	return nil
}

// The HTTP side: /v1/cni/{add,del,check,gc,status}. A failure answers
// with the CNI code in api.Error.
func (a *Agent) handleCNI(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/cni/add", func(w http.ResponseWriter, r *http.Request) {
		var req api.CNIRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := a.cniAdd(req)
		writeCNI(w, err, res)
	})
	mux.HandleFunc("POST /v1/cni/del", func(w http.ResponseWriter, r *http.Request) {
		var req api.CNIRequest
		if !readJSON(w, r, &req) {
			return
		}
		writeCNI(w, a.cniDel(req), struct{}{})
	})
	mux.HandleFunc("POST /v1/cni/check", func(w http.ResponseWriter, r *http.Request) {
		var req api.CNIRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := a.cniCheck(req)
		writeCNI(w, err, res)
	})
	mux.HandleFunc("POST /v1/cni/gc", func(w http.ResponseWriter, r *http.Request) {
		var req api.CNIGCRequest
		if !readJSONLimit(w, r, &req, maxNodeListBody) {
			return
		}
		res, err := a.cniGC(req)
		writeCNI(w, err, res)
	})
	mux.HandleFunc("GET /v1/cni/status", func(w http.ResponseWriter, r *http.Request) {
		writeCNI(w, a.cniStatus(), struct{}{})
	})
}

func writeCNI(w http.ResponseWriter, err error, v any) {
	if err == nil {
		writeJSON(w, v)
		return
	}
	code := uint(cniErrInternal)
	var ce *cniError
	if errors.As(err, &ce) {
		code = ce.code
	}
	status := http.StatusInternalServerError
	switch code {
	case cniErrInvalidConfig, cniErrInvalidNetns:
		status = http.StatusBadRequest
	case cniErrUnknownContainer:
		status = http.StatusNotFound
	case cniErrExhausted:
		status = http.StatusConflict
	case 50:
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.Error{Error: err.Error(), CNICode: code})
}
