// Package cni is the CNI plugin of vxdp (the vxdp-cni command): a
// container runtime runs it to attach a container to the node's pod
// network. It is thin: every verb is passed to the node's agent over its
// API socket, which creates the container's interface, allocates its
// addresses and answers with what the runtime is to be told. See the
// README, "Containers".
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxdp/vxdp/api"
)

const (
	// defaultSocket is the agent's default API socket.
	defaultSocket = "/run/vxdp/vxdp.sock"
	// noMAC is the hardware address reported for the TUN device.
	noMAC = "00:00:00:00:00:00"
)

// netConf is the network configuration the runtime passes on stdin.
type netConf struct {
	types.PluginConf
	// Socket is the agent's API socket.
	Socket string `json:"socket,omitempty"`
	// Identity and AllowFrom apply to every container of this network
	// unless CNI_ARGS or the runtime config say otherwise.
	Identity  string   `json:"identity,omitempty"`
	AllowFrom []string `json:"allow_from,omitempty"`
	// RuntimeConfig carries the capabilities the runtime fills in.
	RuntimeConfig struct {
		IPs       []string `json:"ips,omitempty"`
		Identity  string   `json:"identity,omitempty"`
		AllowFrom []string `json:"allowFrom,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	// Args is the conventional "args" key: args.cni.ips asks for
	// addresses as the runtime's ips capability does.
	Args struct {
		CNI struct {
			IPs []string `json:"ips,omitempty"`
		} `json:"cni,omitempty"`
	} `json:"args,omitempty"`
}

// cniArgs are the CNI_ARGS keys the plugin reads; others are ignored.
type cniArgs struct {
	types.CommonArgs
	IP                         types.UnmarshallableString
	VXDP_IDENTITY              types.UnmarshallableString //nolint:revive // CNI_ARGS key
	VXDP_ALLOW_FROM            types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_UID                types.UnmarshallableString //nolint:revive // CNI_ARGS key
}

// Funcs are the plugin's verbs, for skel.PluginMainFuncs (and tests).
var Funcs = skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}

// Versions are the specification versions the plugin answers: all.
var Versions = version.All

// About is what the plugin prints when run without CNI_COMMAND.
const About = "vxdp-cni: attaches containers to a vxdp node's pod network"

func loadConf(data []byte) (*netConf, error) {
	var c netConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "network configuration: "+err.Error(), "")
	}
	if c.Socket == "" {
		c.Socket = defaultSocket
	}
	return &c, nil
}

// request builds the agent request of a verb from the runtime's input:
// identity and allow-list from CNI_ARGS first, then the runtime config,
// then the network configuration.
func request(args *skel.CmdArgs, c *netConf) (api.CNIRequest, error) {
	req := api.CNIRequest{CNIAttachment: api.CNIAttachment{ContainerID: args.ContainerID, Ifname: args.IfName},
		Network: c.Name, Netns: args.Netns, Identity: c.Identity, AllowFrom: c.AllowFrom}
	var ca cniArgs
	if err := types.LoadArgs(args.Args, &ca); err != nil {
		return req, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: "+err.Error(), "")
	}
	if c.RuntimeConfig.Identity != "" {
		req.Identity, req.ExplicitPolicy = c.RuntimeConfig.Identity, true
	}
	if len(c.RuntimeConfig.AllowFrom) > 0 {
		req.AllowFrom, req.ExplicitPolicy = c.RuntimeConfig.AllowFrom, true
	}
	if ca.VXDP_IDENTITY != "" {
		req.Identity, req.ExplicitPolicy = string(ca.VXDP_IDENTITY), true
	}
	if ca.VXDP_ALLOW_FROM != "" {
		req.AllowFrom, req.ExplicitPolicy = strings.Split(string(ca.VXDP_ALLOW_FROM), ","), true
	}
	req.PodNamespace, req.PodName = string(ca.K8S_POD_NAMESPACE), string(ca.K8S_POD_NAME)
	switch {
	case len(c.RuntimeConfig.IPs) > 0:
		req.IPs = c.RuntimeConfig.IPs
	case len(c.Args.CNI.IPs) > 0:
		req.IPs = c.Args.CNI.IPs
	case ca.IP != "":
		req.IPs = strings.Split(string(ca.IP), ",")
	}
	return req, nil
}

// call sends one request to the agent and turns a failure into a CNI
// error a person can act on.
func call(c *netConf, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := api.NewClient(c.Socket).Do(ctx, method, path, in, out)
	if err == nil {
		return nil
	}
	var se *api.StatusError
	if errors.As(err, &se) {
		code := se.CNICode
		if code == 0 {
			code = types.ErrInternal
		}
		return types.NewError(code, se.Message, "")
	}
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("the vxdp agent is not running (no answer on %s); start it (systemctl start vxdp) or set \"socket\" in the network configuration", c.Socket), err.Error())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("the vxdp agent on %s did not answer in time", c.Socket), err.Error())
	}
	return types.NewError(types.ErrIOFailure, fmt.Sprintf("the vxdp agent on %s: %v", c.Socket, err), "")
}

func cmdAdd(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	req, err := request(args, c)
	if err != nil {
		return err
	}
	var res api.CNIResult
	if err := call(c, "POST", "/v1/cni/add", req, &res); err != nil {
		return err
	}
	return types.PrintResult(result(res), c.CNIVersion)
}

// result turns the agent's answer into the specification's result.
func result(res api.CNIResult) *current.Result {
	// A TUN device has no hardware address. The specification lets the
	// field be left out, but podman 4 parses it for every interface in a
	// sandbox and refuses the result when it is empty; the all-zero
	// address says "none" in a form every parser takes.
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: res.Ifname, Mac: noMAC, Mtu: res.MTU, Sandbox: res.Netns}}}
	for _, a := range res.IPs {
		ipc := &current.IPConfig{Interface: current.Int(0),
			Address: net.IPNet{IP: a.Address.Addr().AsSlice(), Mask: net.CIDRMask(a.Address.Bits(), a.Address.Addr().BitLen())}}
		if a.Gateway.IsValid() {
			ipc.Gateway = a.Gateway.AsSlice()
		}
		r.IPs = append(r.IPs, ipc)
	}
	for _, rt := range res.Routes {
		route := &types.Route{Dst: net.IPNet{IP: rt.Dst.Addr().AsSlice(), Mask: net.CIDRMask(rt.Dst.Bits(), rt.Dst.Addr().BitLen())}}
		if rt.GW.IsValid() {
			route.GW = rt.GW.AsSlice()
		}
		r.Routes = append(r.Routes, route)
	}
	return r
}

func cmdDel(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	req := api.CNIRequest{CNIAttachment: api.CNIAttachment{ContainerID: args.ContainerID, Ifname: args.IfName},
		Network: c.Name, Netns: args.Netns}
	err = call(c, "POST", "/v1/cni/del", req, nil)
	var te *types.Error
	if errors.As(err, &te) && te.Code == types.ErrTryAgainLater && !socketExists(c.Socket) {
		// No agent runs here: nothing of the container is being
		// forwarded, and the next agent releases, as it starts, every
		// lease whose namespace is gone. Failing would only keep the
		// runtime from removing the container.
		return nil
	}
	return err
}

// socketExists reports whether the agent's socket is there: an agent
// runs, or is being restarted.
func socketExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func cmdCheck(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	req := api.CNIRequest{CNIAttachment: api.CNIAttachment{ContainerID: args.ContainerID, Ifname: args.IfName},
		Network: c.Name, Netns: args.Netns}
	var res api.CNIResult
	if err := call(c, "POST", "/v1/cni/check", req, &res); err != nil {
		return err
	}
	// What the agent has must be what the runtime was told.
	if c.PrevResult != nil {
		prev, err := current.GetResult(c.PrevResult)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
		}
		have := result(res)
		for _, ip := range prev.IPs {
			found := false
			for _, h := range have.IPs {
				if h.Address.String() == ip.Address.String() {
					found = true
				}
			}
			if !found {
				return types.NewError(types.ErrInternal, fmt.Sprintf("address %s of the previous result is not on %s", ip.Address.String(), args.IfName), "")
			}
		}
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	req := api.CNIGCRequest{Network: c.Name, ValidAttachments: []api.CNIAttachment{}}
	for _, v := range c.ValidAttachments {
		req.ValidAttachments = append(req.ValidAttachments, api.CNIAttachment{ContainerID: v.ContainerID, Ifname: v.IfName})
	}
	return call(c, "POST", "/v1/cni/gc", req, nil)
}

func cmdStatus(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := call(c, "GET", "/v1/cni/status", nil, nil); err != nil {
		var te *types.Error
		if errors.As(err, &te) {
			return types.NewError(types.ErrPluginNotAvailable, te.Msg, te.Details)
		}
		return err
	}
	return nil
}
