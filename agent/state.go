package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/dataplane"
)

// state is what a restarted agent needs to take over from one that died:
// which pod devices it made (so it re-adopts exactly those, never someone
// else's), and what the API changed that the configuration file does not
// say. It is written after every change and removed on a clean stop. Its
// JSON is read by the next agent, maybe of another version: keep the field
// names. Endpoints, nodes and VTEPs are kept as the API shows them.
type state struct {
	Endpoints []stateEndpoint `json:"endpoints"`
	Nodes     []api.Node      `json:"nodes"`           // added through the API
	VTEPs     *[]api.VTEP     `json:"vteps,omitempty"` // set through the API
}

type stateEndpoint struct {
	api.Endpoint
	FromAPI bool `json:"from_api,omitempty"`
}

func (s stateEndpoint) spec() dataplane.EndpointSpec {
	return dataplane.EndpointSpec{Name: s.Name, IP: s.IP, IP6: s.IP6, Netns: s.Netns, Ifname: s.Ifname, Identity: s.Identity, AllowFrom: s.AllowFrom}
}

func (a *Agent) statePath() string { return stateFile(a.cfg.StateDir, a.cfg.NodeIP) }

func stateFile(dir string, nodeIP netip.Addr) string {
	return filepath.Join(dir, "state-"+nodeIP.String()+".json")
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &state{}, nil
	}
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// saveState records the current endpoints, API nodes and VTEPs. A failure
// is logged and shown in status until a save succeeds again, not
// returned: the dataplane works without it, only a restart after a crash
// would not see the latest changes (a full disk, say, must not stop the
// change that was asked for).
func (a *Agent) saveState() {
	if err := a.writeState(); err != nil {
		a.reportSaveFailure(err)
		return
	}
	if a.stateProblem.Swap(nil) != nil {
		a.log.Info("state saved again", zap.String("path", a.statePath()))
	}
}

// reportSaveFailure logs a failed save and shows it in status until a
// save succeeds.
func (a *Agent) reportSaveFailure(err error) {
	msg := fmt.Sprintf("the last save of %s failed at %s: %v; a restart would not see the changes since; free space or fix permissions under state-dir",
		a.statePath(), time.Now().UTC().Format(time.RFC3339), err)
	a.stateProblem.Store(&msg)
	a.log.Warn("save state", zap.String("path", a.statePath()), zap.Error(err))
}

// stateSave says why the last state save failed, "" when it succeeded.
func (a *Agent) stateSave() string {
	if p := a.stateProblem.Load(); p != nil {
		return *p
	}
	return ""
}

func (a *Agent) writeState() error {
	// Every change of endpoints, API nodes or VTEPs ends here.
	a.memTrim.changed()
	if a.cfg.StateDir == "" {
		return nil
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	var s state
	eps, nodes := a.eng.Endpoints(), a.nodes.from(a.eng, fromAPI)
	if len(eps) > 0 {
		s.Endpoints = make([]stateEndpoint, 0, len(eps))
	}
	for _, ep := range eps {
		s.Endpoints = append(s.Endpoints, stateEndpoint{Endpoint: apiEndpoint(ep), FromAPI: !a.configEndpoints[ep.Name]})
	}
	if len(nodes) > 0 {
		s.Nodes = make([]api.Node, 0, len(nodes))
	}
	for _, n := range nodes {
		s.Nodes = append(s.Nodes, api.Node{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR, PodCIDR6: n.PodCIDR6, Source: fromAPI})
	}
	if a.vtepsFromAPI {
		v := convert(a.eng.VTEPs(), apiVTEP)
		s.VTEPs = &v
	}
	if err := os.MkdirAll(a.cfg.StateDir, 0o750); err != nil {
		return err
	}
	tmp := a.statePath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// Encoded straight into the file: with thousands of nodes the state
	// is hundreds of KiB, and a copy of it for each change would be
	// garbage.
	err = json.NewEncoder(f).Encode(&s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A partly written file would hold space a full disk needs.
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, a.statePath())
}

// noSpace reports whether err is a file system out of space or quota:
// a condition of the moment, reported and waited out, where other state
// errors (permissions, a read-only mount) are a setup to fix.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
