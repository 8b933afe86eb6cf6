package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// notify tells systemd (Type=notify) about the agent's state. Outside
// systemd NOTIFY_SOCKET is unset and every call is a no-op.
func (a *Agent) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		a.log.Warn("sd_notify", zap.String("state", state), zap.Error(err))
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}

// stuckLimit is how long one batch may take before its worker counts as
// stuck. Batches take microseconds; a second is a hang.
const stuckLimit = time.Second

// watchdog pings systemd at half its WatchdogSec while the packet path is
// alive: no worker stuck in a batch, the underlay and host workers
// running. When a worker hangs the pings stop and systemd restarts the
// service.
func (a *Agent) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stuck := a.eng.Stuck(stuckLimit)
		problems := a.eng.Problems()
		if len(stuck) == 0 && len(problems) == 0 {
			a.notify(daemon.SdNotifyWatchdog)
			warned = false
			continue
		}
		if !warned {
			a.log.Error("packet path not alive: watchdog pings stopped",
				zap.Strings("stuck", stuck), zap.Strings("problems", problems))
			warned = true
		}
	}
}

func reloadingState() string {
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec())
}
