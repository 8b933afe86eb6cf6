package agent

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

const linkUp = unix.IFF_UP | unix.IFF_LOWER_UP

// With `mtu: 0` a new MTU of the underlay device is followed: the engine,
// the pods' devices and the host device take it, it is logged once, status
// shows it and stays healthy. An MTU vxdp cannot work with is a problem
// until the device is back to one it can.
func TestFollowUnderlayMTU(t *testing.T) {
	cfg := loadConfig(t, baseConfig+`endpoints:
  - {name: pa, ip: 10.1.1.10, netns: /run/netns/pa}
`)
	ta := newTestAgent(t, cfg, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	ta.log = zap.New(core)

	ta.underlayChanged(false, linkUp, 1500)
	if ta.mtuChange() != "" || logs.Len() != 0 {
		t.Fatalf("the same MTU changed something: note %q, %d log lines", ta.mtuChange(), logs.Len())
	}
	ta.underlayChanged(false, linkUp, 1400)
	ta.underlayChanged(false, linkUp, 1400) // a message about something else
	st := ta.Status()
	if !st.Healthy || st.UnderlayMTU != 1400 || st.RouteMTU != 1350 || !strings.HasPrefix(st.MTUChange, "changed from 1500 at ") {
		t.Fatalf("status after 1500 -> 1400: %+v", st)
	}
	if got := ta.pod(t, "pa").MTU(); got != 1350 {
		t.Fatalf("pod device mtu %d, want 1350", got)
	}
	if got := ta.host.MTU(); got != 1400 {
		t.Fatalf("host device mtu %d, want 1400", got)
	}
	msgs := logs.FilterMessage("underlay MTU changed from 1500 to 1400; pods and routes now use 1350").All()
	if len(msgs) != 1 || msgs[0].Level != zapcore.InfoLevel {
		t.Fatalf("log: %v", logs.All())
	}

	ta.underlayChanged(false, linkUp, 500)
	st = ta.Status()
	if st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "from 1400 to 500, below the 576 vxdp needs; pods and routes keep 1350") ||
		st.UnderlayMTU != 1400 {
		t.Fatalf("status after 1400 -> 500: %+v", st)
	}
	ta.underlayChanged(false, linkUp, 1500)
	if st = ta.Status(); !st.Healthy || st.UnderlayMTU != 1500 || st.RouteMTU != 1450 || ta.pod(t, "pa").MTU() != 1450 {
		t.Fatalf("status after 500 -> 1500: %+v", st)
	}
}

// An MTU set in the configuration stays whatever the device does; a
// device MTU below it is a problem, with the reason, until it is back.
func TestConfiguredMTUStays(t *testing.T) {
	cfg := loadConfig(t, baseConfig+"mtu: 1500\n")
	ta := newTestAgent(t, cfg, nil)
	ta.underlayChanged(false, linkUp, 1400)
	st := ta.Status()
	if st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "has MTU 1400, below the configured mtu 1500") ||
		st.UnderlayMTU != 1500 || st.RouteMTU != 1450 || st.MTUChange != "" {
		t.Fatalf("status with the device below the configured mtu: %+v", st)
	}
	ta.underlayChanged(false, linkUp, 9000)
	if st = ta.Status(); !st.Healthy || st.UnderlayMTU != 1500 || ta.host.MTU() != 0 {
		t.Fatalf("status with the device above the configured mtu: %+v (host device mtu %d)", st, ta.host.MTU())
	}
}
