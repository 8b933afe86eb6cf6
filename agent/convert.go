package agent

import (
	"fmt"
	"strings"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// The engine's views turned into the API's rows. The engine speaks in
// types (route kinds, endpoint and node names, addresses); the words the
// API and the CLI show are chosen here.

// convert maps in through f, keeping nil as nil and empty as empty: the
// JSON of a list tells null from [].
// orEmpty is v, or an empty list for nil: a list the API answers with is
// [] when empty, never null.
func orEmpty[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func convert[S, D any](in []S, f func(S) D) []D {
	if in == nil {
		return nil
	}
	out := make([]D, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func apiEndpoint(ep dataplane.Endpoint) api.Endpoint {
	return api.Endpoint{Name: ep.Name, IP: ep.IP, IP6: ep.IP6, Netns: ep.Netns, Ifname: ep.Ifname, Identity: ep.Identity,
		AllowFrom: ep.AllowFrom, Device: ep.Device, MTU: ep.MTU, DeviceGone: ep.DeviceGone}
}

func apiFIBEntry(f dataplane.FIBEntry) api.FIBEntry {
	return api.FIBEntry{Prefix: f.Prefix, Kind: f.Kind.String(), Target: fibTarget(f)}
}

// fibTarget says in words where a FIB prefix leads, as `vxdp fib list`
// shows it.
func fibTarget(f dataplane.FIBEntry) string {
	switch {
	case f.Endpoint != "":
		return "endpoint " + f.Endpoint
	case f.Node != "":
		return "node " + f.Node + " " + f.NodeIP.String()
	case f.VTEP.IsValid():
		return "vtep " + f.VTEP.String() + " " + f.VTEPMAC.String()
	case f.Kind == dataplane.RouteHost:
		return HostDevice
	}
	return ""
}

func apiVTEP(v dataplane.VTEPSpec) api.VTEP {
	return api.VTEP{CIDR: v.CIDR, Endpoint: v.Endpoint, MAC: v.MAC.String()}
}

// vtepSpec is the engine's form of a VTEP row (as the state file keeps
// them).
func vtepSpec(v api.VTEP) (dataplane.VTEPSpec, error) {
	var mac encap.MAC
	if err := mac.UnmarshalText([]byte(v.MAC)); err != nil {
		return dataplane.VTEPSpec{}, fmt.Errorf("vtep %s: %w", v.CIDR, err)
	}
	return dataplane.VTEPSpec{CIDR: v.CIDR, Endpoint: v.Endpoint, MAC: mac}, nil
}

func apiEvent(ev dataplane.Event) api.Event {
	return api.Event{Time: ev.Time, Type: ev.Type, Reason: ev.Reason, Device: ev.Device, Source: ev.Source,
		Protocol: ev.Protocol, Src: ev.Src, Dst: ev.Dst, Identity: ev.Identity,
		OuterSrc: ev.OuterSrc, OuterDst: ev.OuterDst, Bytes: ev.Bytes}
}

func apiStats(s dataplane.Stats) api.Stats {
	return api.Stats{
		Devices: convert(s.Devices, func(d dataplane.DeviceCounters) api.DeviceCounters {
			c := api.DeviceCounters{Device: d.Device, Kind: d.Kind, RxBatches: d.RxBatches,
				RxPackets: d.RxPackets, RxBytes: d.RxBytes, TxPackets: d.TxPackets, TxBytes: d.TxBytes,
				TxErrors: d.TxErrors, DriverRxDropped: d.DriverRxDropped, DriverTxErrors: d.DriverTxErrors,
				KernelDropped: d.KernelDropped, KernelDropError: d.KernelDropErr,
				Offloads: convert(d.Offloads, func(o packetio.Offload) api.Offload {
					return api.Offload{Name: o.Name, Active: o.Active, Reason: o.Reason, Count: o.Count, Largest: o.Largest}
				})}
			if sp := d.SourcePorts; sp != nil {
				c.SourcePorts = &api.SourcePorts{Count: sp.Count, Min: sp.Min, Max: sp.Max}
			}
			return c
		}),
		Drops: s.Drops, ICMPErrors: s.ICMPErrors, ARPReplies: s.ARPReplies, TotalDrops: s.TotalDrops,
		RouteMTU: s.RouteMTU, UnderlayMTU: s.UnderlayMTU, MonitorEventsLost: s.MonitorEventsLost,
		ICMPErrorsLimited: s.ICMPErrorsLimited, ECNAnomalies: s.ECNAnomalies,
	}
}

// parseCapturePoint reads the CLI's names for capture points: underlay,
// host or pod:NAME.
func parseCapturePoint(s string) (dataplane.CapturePoint, error) {
	switch {
	case s == "underlay":
		return dataplane.CapturePoint{Kind: dataplane.CaptureUnderlay}, nil
	case s == "host":
		return dataplane.CapturePoint{Kind: dataplane.CaptureHost}, nil
	case strings.HasPrefix(s, "pod:") && len(s) > len("pod:"):
		return dataplane.CapturePoint{Kind: dataplane.CaptureEndpoint, Endpoint: s[len("pod:"):]}, nil
	}
	return dataplane.CapturePoint{}, fmt.Errorf("capture point %q: want underlay, host or pod:NAME: %w", s, dataplane.ErrInvalid)
}
