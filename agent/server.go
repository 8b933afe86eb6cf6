package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/identity"
)

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.getStatus)
	a.handleCNI(mux)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, apiStats(a.eng.Stats())) })
	mux.HandleFunc("GET /v1/tunnels", a.getTunnels)
	mux.HandleFunc("GET /v1/monitor", a.getMonitor)
	mux.HandleFunc("GET /v1/capture", a.getCapture)
	mux.HandleFunc("GET /v1/fib", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, orEmpty(convert(a.eng.FIB(), apiFIBEntry)))
	})
	mux.HandleFunc("GET /v1/identities", a.getIdentities)
	mux.HandleFunc("GET /v1/vteps", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, orEmpty(convert(a.eng.VTEPs(), apiVTEP)))
	})
	mux.HandleFunc("PUT /v1/vteps", a.putVTEPs)
	mux.HandleFunc("POST /v1/vteps", a.postVTEP)
	mux.HandleFunc("DELETE /v1/vteps/{addr}/{bits}", func(w http.ResponseWriter, r *http.Request) {
		p, err := netip.ParsePrefix(r.PathValue("addr") + "/" + r.PathValue("bits"))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("vtep cidr %q: not a CIDR", r.PathValue("addr")+"/"+r.PathValue("bits")))
			return
		}
		writeResult(w, a.vtepsChanged(a.eng.DelVTEP(p)), nil)
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, orEmpty(a.nodes.list(a.eng))) })
	mux.HandleFunc("POST /v1/nodes", a.postNode)
	mux.HandleFunc("DELETE /v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeResult(w, a.changed(a.nodes.del(a.eng, r.PathValue("name"))), nil)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		eps := convert(a.eng.Endpoints(), apiEndpoint)
		for i := range eps {
			if l, ok := a.ipam.byEndpoint(eps[i].Name); ok {
				eps[i].ContainerID = l.ContainerID
			}
		}
		writeJSON(w, orEmpty(eps))
	})
	mux.HandleFunc("POST /v1/endpoints", a.postEndpoint)
	mux.HandleFunc("PUT /v1/endpoints/{name}/policy", a.putPolicy)
	mux.HandleFunc("DELETE /v1/endpoints/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		err := a.eng.DelEndpoint(name)
		if err == nil {
			a.stateMu.Lock()
			delete(a.configEndpoints, name)
			a.stateMu.Unlock()
		}
		writeResult(w, a.changed(err), nil)
	})
	return jsonErrors(mux)
}

// jsonErrors answers what mux has no route for (404, or 405 with its
// Allow header) as JSON, like every other error of the API.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusOnly{header: http.Header{}}
		h.ServeHTTP(rec, r)
		code := rec.code
		if code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			mux.ServeHTTP(w, r) // a redirect to the canonical path, say
			return
		}
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, code, fmt.Errorf("%s %s: %s", r.Method, r.URL.Path, strings.ToLower(http.StatusText(code))))
	})
}

// statusOnly keeps the status and headers a handler answers with and
// drops its body.
type statusOnly struct {
	header http.Header
	code   int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.code = code }

// Status reports the agent's state.
func (a *Agent) Status() api.Status {
	n := a.eng.Counts()
	st := api.Status{
		Healthy:        true,
		NodeName:       a.cfg.NodeName,
		NodeIP:         a.cfg.NodeIP,
		PodCIDR:        a.cfg.PodCIDR,
		HostIP:         a.eng.HostIP(),
		PodCIDR6:       a.cfg.PodCIDR6,
		HostIP6:        a.eng.HostIP6(),
		RoutingMode:    a.cfg.RoutingMode,
		TunnelProtocol: a.cfg.TunnelProtocol,
		TunnelPort:     a.cfg.TunnelPort,
		Underlay:       a.under.kind,
		UnderlayReason: a.under.reason,
		Device:         a.under.device,
		UnderlayMTU:    a.eng.UnderlayMTU(),
		RouteMTU:       a.eng.RouteMTU(),
		MTUChange:      a.mtuChange(),
		TunnelMAC:      a.eng.TunnelMAC().String(),
		Endpoints:      n.Endpoints,
		Nodes:          n.Nodes,
		VTEPs:          n.VTEPs,
		FIBEntries:     n.FIBEntries,
		UptimeSeconds:  time.Since(a.started).Seconds(),
		Version:        Version,
		ForwardingWas:  a.forwardingWas.v4,
		Forwarding6Was: a.forwardingWas.v6,
		KVStore:        a.kvStatus(),
		Kubernetes:     a.kubeStatus(),
		StateSave:      a.stateSave(),
		Routes:         a.routeSummary(n.VTEPs),
	}
	p := a.eng.Problems()
	if u := a.underlayProblem(); u != "" {
		p = append(p, u)
	}
	if len(p) > 0 {
		st.Healthy = false
		st.Problems = p
	}
	return st
}

// routeSummary says in words where each kind of destination goes.
func (a *Agent) routeSummary(vteps int) []string {
	var out []string
	out = append(out, fmt.Sprintf("local pods (%s): straight into their devices", joinValid(a.cfg.PodCIDR, a.cfg.PodCIDR6)))
	if a.cfg.RoutingMode == "native" {
		how := "the network's own routing"
		if a.cfg.AutoDirectNodeRoutes {
			how = "podCIDR via nodeIP routes"
		}
		out = append(out, fmt.Sprintf("remote pods: to the kernel (native routing, %s)", how))
	} else {
		out = append(out, fmt.Sprintf("remote pods: %s to the node", strings.ToUpper(a.cfg.TunnelProtocol)))
	}
	if vteps > 0 {
		out = append(out, fmt.Sprintf("vtep cidrs (%d): VXLAN VNI 2 to the VTEP", vteps))
	}
	out = append(out, "everything else: to the kernel through "+HostDevice)
	return out
}

func (a *Agent) getStatus(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Status()) }

func (a *Agent) getTunnels(w http.ResponseWriter, r *http.Request) {
	nodes := a.eng.Nodes()
	out := make([]api.Tunnel, 0, len(nodes))
	for _, n := range nodes {
		for _, p := range []netip.Prefix{n.PodCIDR, n.PodCIDR6} {
			if p.IsValid() {
				out = append(out, api.Tunnel{Prefix: p, Endpoint: n.IP, Node: n.Name})
			}
		}
	}
	// IPv4 first (Addr.Less orders by family), each family by address.
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.Addr().Less(out[j].Prefix.Addr()) })
	writeJSON(w, out)
}

func (a *Agent) getIdentities(w http.ResponseWriter, r *http.Request) {
	var out []api.Identity
	for _, id := range identity.Reserved() {
		vni, _ := identity.ToVNI(id)
		out = append(out, api.Identity{ID: uint32(id), Name: id.String(), VNI: vni})
	}
	seen := map[identity.ID]bool{}
	for _, ep := range a.eng.Endpoints() {
		if !seen[ep.Identity] {
			seen[ep.Identity] = true
			out = append(out, api.Identity{ID: uint32(ep.Identity), Name: "workload", VNI: uint32(ep.Identity)})
		}
	}
	writeJSON(w, out)
}

// postNode adds one node (a JSON object) or many at once (a JSON array):
// a list is taken whole or refused whole, with one table rebuild and one
// state save, which is what makes a thousand nodes quick to add.
func (a *Agent) postNode(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if !readJSONLimit(w, r, &raw, maxNodeListBody) {
		return
	}
	var reqs []api.NodeRequest
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		if !decodeStrict(w, raw, &reqs) {
			return
		}
	} else {
		var req api.NodeRequest
		if !decodeStrict(w, raw, &req) {
			return
		}
		reqs = []api.NodeRequest{req}
	}
	specs := make([]dataplane.NodeSpec, 0, len(reqs))
	for _, req := range reqs {
		n, err := a.nodeRequest(req)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		specs = append(specs, n)
	}
	writeResult(w, a.changed(a.nodes.add(a.eng, specs, fromAPI)), nil)
}

func (a *Agent) postEndpoint(w http.ResponseWriter, r *http.Request) {
	var req api.EndpointRequest
	if !readJSON(w, r, &req) {
		return
	}
	spec, err := a.endpointRequest(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	for _, ip := range []netip.Addr{spec.IP, spec.IP6} {
		if ip.IsValid() && a.ipam.leased(ip) {
			writeError(w, http.StatusConflict, fmt.Errorf("endpoint %s: ip %s is leased to a container attached through CNI", spec.Name, ip))
			return
		}
	}
	err = a.eng.AddEndpoint(spec)
	writeResult(w, a.changed(err), nil)
}

func (a *Agent) putPolicy(w http.ResponseWriter, r *http.Request) {
	var req api.PolicyRequest
	if !readJSON(w, r, &req) {
		return
	}
	allow, err := parseAllowFrom(req.AllowFrom)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("endpoint %s: allow_from: %w", r.PathValue("name"), err))
		return
	}
	if req.AllowAll {
		if len(allow) > 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("endpoint %s: allow_all and allow_from together", r.PathValue("name")))
			return
		}
		allow = nil
	} else if allow == nil {
		allow = []identity.ID{} // nothing allowed
	}
	writeResult(w, a.changed(a.eng.SetPolicy(r.PathValue("name"), allow)), nil)
}

func (a *Agent) postVTEP(w http.ResponseWriter, r *http.Request) {
	var req api.VTEPRequest
	if !readJSON(w, r, &req) {
		return
	}
	s, err := a.vtepRequest(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeResult(w, a.vtepsChanged(a.eng.AddVTEP(s)), nil)
}

// putVTEPs replaces the whole VTEP table (a reload).
func (a *Agent) putVTEPs(w http.ResponseWriter, r *http.Request) {
	var req []api.VTEPRequest
	if !readJSONLimit(w, r, &req, maxVTEPListBody) {
		return
	}
	specs := make([]dataplane.VTEPSpec, 0, len(req))
	for _, v := range req {
		s, err := a.vtepRequest(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		specs = append(specs, s)
	}
	writeResult(w, a.vtepsChanged(a.eng.SetVTEPs(specs)), nil)
}

// getMonitor streams events as JSON lines until the client goes away.
func (a *Agent) getMonitor(w http.ResponseWriter, r *http.Request) {
	typ := r.URL.Query().Get("type")
	if typ != "" && typ != "drop" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("monitor type %q: only drop events exist", typ))
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming not supported"))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	for ev := range a.eng.Subscribe(r.Context()) {
		if err := enc.Encode(apiEvent(ev)); err != nil {
			return
		}
		fl.Flush()
	}
}

// getCapture streams the packets at a capture point as a pcap file (raw
// IPv4 link type: pod, host and underlay devices all carry IP packets).
func (a *Agent) getCapture(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("point")
	point, err := parseCapturePoint(name)
	if err != nil {
		writeResult(w, err, nil)
		return
	}
	count := 0
	if c := r.URL.Query().Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("count %q: not a number", c))
			return
		}
		count = n
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	pkts, err := a.eng.Capture(ctx, point)
	if point.Kind == dataplane.CaptureEndpoint && errors.Is(err, dataplane.ErrNotFound) {
		err = dataplane.ErrNotFound // "pod:NAME" already names the endpoint
	}
	if err != nil {
		writeResult(w, fmt.Errorf("capture point %s: %w", name, err), nil)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.WriteHeader(http.StatusOK)
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeRaw); err != nil {
		return
	}
	if fl != nil {
		fl.Flush()
	}
	for n := 0; count == 0 || n < count; n++ {
		var p dataplane.CapturedPacket
		select {
		case <-ctx.Done():
			return
		case p = <-pkts:
		}
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)}
		if err := pw.WritePacket(ci, p.Data); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// changed records the state after a successful change through the API.
func (a *Agent) changed(err error) error {
	if err == nil {
		a.saveState()
	}
	return err
}

func (a *Agent) vtepsChanged(err error) error {
	if err == nil {
		a.stateMu.Lock()
		a.vtepsFromAPI = true
		a.stateMu.Unlock()
	}
	return a.changed(err)
}

// Request body bounds, by what a request can need: one object (an
// endpoint, a policy, a VTEP) fits in 64 KiB; a VTEP table of thousands
// of entries in 4 MiB; a list of 100,000 nodes in 16 MiB.
const (
	maxObjectBody   = 64 << 10
	maxVTEPListBody = 4 << 20
	maxNodeListBody = 16 << 20
)

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return readJSONLimit(w, r, v, maxObjectBody)
}

// readJSONLimit decodes a request body of at most limit bytes into v (see
// decodeRequest).
func readJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		err = decodeRequest(raw, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

// decodeStrict decodes raw into v (see decodeRequest).
func decodeStrict(w http.ResponseWriter, raw []byte, v any) bool {
	if err := decodeRequest(raw, v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

// decodeRequest decodes the one JSON value of a request body into v. It
// refuses unknown fields, a null where a value is expected (it would leave
// v empty and read as a request for nothing), and anything after the
// value.
func decodeRequest(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var first json.RawMessage
	if err := dec.Decode(&first); err != nil {
		return err
	}
	if string(bytes.TrimSpace(first)) == "null" {
		return errors.New("null where a value is expected")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	strict := json.NewDecoder(bytes.NewReader(first))
	strict.DisallowUnknownFields()
	return strict.Decode(v)
}

func writeResult(w http.ResponseWriter, err error, v any) {
	switch {
	case err == nil:
		if v == nil {
			v = struct{}{}
		}
		writeJSON(w, v)
	case errors.Is(err, dataplane.ErrInvalid):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, dataplane.ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, dataplane.ErrExists):
		writeError(w, http.StatusConflict, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.Error{Error: err.Error()})
}

// joinValid writes the valid ones of ps, comma separated.
func joinValid(ps ...netip.Prefix) string {
	var out []string
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.String())
		}
	}
	return strings.Join(out, ",")
}
