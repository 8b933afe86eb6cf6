package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane"
)

// state is what a restarted agent needs to take over from one that died:
// which pod devices it made (so it re-adopts exactly those, never someone
// else's), and what the API changed that the configuration file does not
// say. It is written after every change and removed on a clean stop.
type state struct {
	Endpoints []stateEndpoint       `json:"endpoints"`
	Nodes     []dataplane.NodeSpec  `json:"nodes"`           // added through the API
	VTEPs     *[]dataplane.VTEPSpec `json:"vteps,omitempty"` // set through the API
}

type stateEndpoint struct {
	dataplane.EndpointSpec
	FromAPI bool `json:"from_api,omitempty"`
}

func (a *Agent) statePath() string {
	return filepath.Join(a.cfg.StateDir, "state-"+a.cfg.NodeIP.String()+".json")
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
// is logged, not returned: the dataplane works without it, only a restart
// after a crash would be less smooth.
func (a *Agent) saveState() {
	if a.eng == nil || a.cfg.StateDir == "" {
		return
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	var s state
	for _, ep := range a.eng.Endpoints() {
		s.Endpoints = append(s.Endpoints, stateEndpoint{EndpointSpec: ep.EndpointSpec, FromAPI: !a.configEndpoints[ep.Name]})
	}
	for _, n := range a.eng.Nodes() {
		if n.Source == "api" {
			s.Nodes = append(s.Nodes, n)
		}
	}
	if a.vtepsFromAPI {
		v := a.eng.VTEPs()
		s.VTEPs = &v
	}
	b, err := json.Marshal(&s)
	if err == nil {
		err = os.MkdirAll(a.cfg.StateDir, 0o750)
	}
	if err == nil {
		tmp := a.statePath() + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, a.statePath())
		}
	}
	if err != nil {
		a.log.Warn("save state", zap.String("path", a.statePath()), zap.Error(err))
	}
}
