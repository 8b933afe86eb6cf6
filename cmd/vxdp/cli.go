package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/config"
)

// Exit codes are part of the contract.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors that are the caller's: bad flags, bad values,
// invalid configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type globals struct {
	socket string
	output string
	stdout io.Writer
}

func (g *globals) client() *api.Client { return api.NewClient(g.socket) }

func (g *globals) json() bool { return g.output == "json" }

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var exit exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	for _, line := range messageLines(err) {
		fmt.Fprintf(stderr, "vxdp: %s\n", line)
	}
	var ue usageError
	if errors.As(err, &ue) || api.IsBadRequest(err) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// exitError ends the command with a code and no further message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// messageLines is what stderr shows for err: one line, or one line a
// problem when a configuration source had several.
func messageLines(err error) []string {
	var ces config.Errors
	if !errors.As(err, &ces) {
		return []string{oneLine(err.Error())}
	}
	lines := make([]string, len(ces))
	for i, e := range ces {
		lines[i] = oneLine(e.Error())
	}
	return lines
}

// isCobraUsage recognises cobra's own argument and flag errors, which it
// returns as plain errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "required flag", "bad flag syntax"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "vxdp",
		Short:         "vxdp: a userspace VXLAN overlay dataplane",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "" && g.output != "json" && g.output != "table" {
				return usagef("-o %q: want json or table", g.output)
			}
			return nil
		},
	}
	socket := os.Getenv(api.SocketEnv)
	if socket == "" {
		socket = api.DefaultSocket
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", socket, "agent API socket (env "+api.SocketEnv+")")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(newAgentCmd(g), newEndpointCmd(g), newNodeCmd(g), newTunnelCmd(g), newVTEPCmd(g),
		newListCmd(g, "fib", "/v1/fib", printFIB), newListCmd(g, "identity", "/v1/identities", printIdentities),
		newStatsCmd(g), newStatusCmd(g), newMonitorCmd(g), newCaptureCmd(g), newInstallCNICmd(g))
	return root
}

func ctx() context.Context { return context.Background() }

// show prints raw JSON with -o json, or decodes it into v and calls table.
func show[T any](g *globals, path string, table func(w io.Writer, v T)) error {
	var raw json.RawMessage
	if err := g.client().Do(ctx(), "GET", path, nil, &raw); err != nil {
		return err
	}
	if g.json() {
		_, err := g.stdout.Write(raw)
		return err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
	table(tw, v)
	return tw.Flush()
}

func newListCmd[T any](g *globals, name, path string, table func(io.Writer, T)) *cobra.Command {
	c := &cobra.Command{Use: name, Short: "list " + name + " entries"}
	c.AddCommand(listCmd(g, "list "+name+" entries", path, table))
	return c
}

// listCmd is `list`: GET path, shown by table.
func listCmd[T any](g *globals, short, path string, table func(io.Writer, T)) *cobra.Command {
	return &cobra.Command{
		Use: "list", Args: cobra.NoArgs, Short: short,
		RunE: func(cmd *cobra.Command, args []string) error { return show(g, path, table) },
	}
}

// delCmd is `del ARG`: DELETE path/ARG, once check (if any) accepts ARG.
func delCmd(g *globals, use, short, path string, check func(arg string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Args: cobra.ExactArgs(1), Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if check != nil {
				if err := check(args[0]); err != nil {
					return err
				}
			}
			return g.client().Do(ctx(), "DELETE", path+"/"+args[0], nil, nil)
		},
	}
}

func newTunnelCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "tunnel", Short: "the tunnel map"}
	c.AddCommand(listCmd(g, "remote pod CIDRs and their nodes, in Cilium's format", "/v1/tunnels", func(w io.Writer, ts []api.Tunnel) {
		// Cilium's `cilium bpf tunnel list` layout: fixed columns, no
		// tabwriter, so scripts written for it keep working.
		fmt.Fprintf(g.stdout, "%-12s %s\n", "TUNNEL", "VALUE")
		for _, t := range ts {
			// An IPv6 address goes in brackets before its port.
			fmt.Fprintf(g.stdout, "%-12s %s\n", netip.AddrPortFrom(t.Prefix.Addr(), 0), netip.AddrPortFrom(t.Endpoint, 0))
		}
	}))
	return c
}

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "node", Short: "remote nodes"}
	var req api.NodeRequest
	var file string
	var podCIDRs []string
	add := &cobra.Command{
		Use: "add NAME --ip IP --pod-cidr CIDR | add --file FILE", Args: cobra.MaximumNArgs(1), Short: "add a remote node, or a list of them at once",
		Long: "Adds one node, or with --file every node of a YAML or JSON list in the form of the\n" +
			"configuration's nodes: key ([{name: n1, ip: 10.0.0.1, pod-cidr: 10.1.1.0/24}, ...]).\n" +
			"A list is taken whole or refused whole, in one request.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				if len(args) != 0 || req.IP != "" || len(podCIDRs) != 0 {
					return usagef("node add: --file goes alone")
				}
				reqs, err := readNodeList(file)
				if err != nil {
					return usagef("node add --file %s: %v", file, err)
				}
				return g.client().Do(ctx(), "POST", "/v1/nodes", reqs, nil)
			}
			if len(args) != 1 {
				return usagef("node add: NAME, or --file")
			}
			req.Name = args[0]
			req.PodCIDR = strings.Join(podCIDRs, ",")
			if req.IP == "" || req.PodCIDR == "" {
				return usagef("node add %s: --ip and --pod-cidr are required", req.Name)
			}
			return g.client().Do(ctx(), "POST", "/v1/nodes", req, nil)
		},
	}
	add.Flags().StringVar(&req.IP, "ip", "", "the node's underlay address")
	add.Flags().StringArrayVar(&podCIDRs, "pod-cidr", nil, "the node's pod CIDR; one of each family, comma separated or the flag twice")
	add.Flags().StringVarP(&file, "file", "f", "", "a YAML or JSON list of nodes to add at once")
	del := delCmd(g, "del NAME", "remove a remote node", "/v1/nodes", nil)
	list := listCmd(g, "list remote nodes", "/v1/nodes", func(w io.Writer, ns []api.Node) {
		fmt.Fprintln(w, "NAME\tIP\tPOD-CIDR\tSOURCE")
		for _, n := range ns {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n.Name, n.IP, pair(n.PodCIDR, n.PodCIDR6), n.Source)
		}
	})
	c.AddCommand(add, del, list)
	return c
}

func newEndpointCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "endpoint", Short: "pod endpoints"}
	var req api.EndpointRequest
	var allow string
	var ips []string
	add := &cobra.Command{
		Use: "add NAME --ip IP --netns PATH", Args: cobra.ExactArgs(1), Short: "create a pod endpoint: a TUN device in the pod's namespace",
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			req.IP = strings.Join(ips, ",")
			if req.IP == "" || req.Netns == "" {
				return usagef("endpoint add %s: --ip and --netns are required", req.Name)
			}
			if allow != "" {
				req.AllowFrom = strings.Split(allow, ",")
			}
			return g.client().Do(ctx(), "POST", "/v1/endpoints", req, nil)
		},
	}
	add.Flags().StringArrayVar(&ips, "ip", nil, "the pod's address; one of each family, comma separated or the flag twice")
	add.Flags().StringVar(&req.Netns, "netns", "", "the pod's network namespace (a path such as /run/netns/pod1)")
	add.Flags().StringVar(&req.Ifname, "ifname", "eth0", "interface name inside the pod")
	add.Flags().StringVar(&req.Identity, "identity", "", "security identity (>= 256; default 256)")
	add.Flags().StringVar(&allow, "allow-from", "", "identities allowed to reach the pod, comma separated (default all)")
	del := delCmd(g, "del NAME", "remove a pod endpoint and its device", "/v1/endpoints", nil)
	list := listCmd(g, "list pod endpoints", "/v1/endpoints", func(w io.Writer, eps []api.Endpoint) {
		fmt.Fprintln(w, "NAME\tIP\tIDENTITY\tNETNS\tIFNAME\tMTU\tALLOW-FROM\tCONTAINER")
		for _, e := range eps {
			allow := "all"
			if e.AllowFrom != nil {
				var names []string
				for _, id := range e.AllowFrom {
					names = append(names, id.String())
				}
				allow = strings.Join(names, ",")
				if allow == "" {
					allow = "none"
				}
			}
			ifname := e.Ifname
			if e.DeviceGone {
				ifname += " (gone: namespace deleted)"
			}
			container := e.ContainerID
			if container == "" {
				container = "-" // an endpoint of the file or the API
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", e.Name, pair(e.IP, e.IP6), e.Identity, e.Netns, ifname, e.MTU, allow, container)
		}
	})
	var pol api.PolicyRequest
	var polFrom string
	policy := &cobra.Command{
		Use: "policy NAME (--allow-from ID,... | --allow-all)", Args: cobra.ExactArgs(1),
		Short: "replace an endpoint's ingress allow-list at runtime",
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("allow-from") == pol.AllowAll {
				return usagef("endpoint policy %s: give exactly one of --allow-from and --allow-all", args[0])
			}
			pol.AllowFrom = nil
			if polFrom != "" {
				pol.AllowFrom = strings.Split(polFrom, ",")
			}
			return g.client().Do(ctx(), "PUT", "/v1/endpoints/"+args[0]+"/policy", pol, nil)
		},
	}
	policy.Flags().StringVar(&polFrom, "allow-from", "", "identities allowed in, comma separated (numbers or names: world, remote-node, host, ...); empty denies all")
	policy.Flags().BoolVar(&pol.AllowAll, "allow-all", false, "allow every identity (the default)")
	c.AddCommand(add, del, list, policy)
	return c
}

func newVTEPCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "vtep", Short: "third-party VXLAN tunnel endpoints"}
	var req api.VTEPRequest
	add := &cobra.Command{
		Use: "add CIDR --endpoint IP --mac MAC", Args: cobra.ExactArgs(1), Short: "add a VTEP CIDR",
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CIDR = args[0]
			if req.Endpoint == "" || req.MAC == "" {
				return usagef("vtep add %s: --endpoint and --mac are required", req.CIDR)
			}
			return g.client().Do(ctx(), "POST", "/v1/vteps", req, nil)
		},
	}
	add.Flags().StringVar(&req.Endpoint, "endpoint", "", "the VTEP's underlay address")
	add.Flags().StringVar(&req.MAC, "mac", "", "the MAC the VTEP's inner frames are addressed to")
	del := delCmd(g, "del CIDR", "remove a VTEP CIDR", "/v1/vteps", func(arg string) error {
		if _, err := netip.ParsePrefix(arg); err != nil {
			return usagef("vtep del %q: not a CIDR", arg)
		}
		return nil
	})
	list := listCmd(g, "list VTEP CIDRs", "/v1/vteps", printVTEPs)
	c.AddCommand(add, del, list)
	return c
}

func printVTEPs(w io.Writer, vs []api.VTEP) {
	fmt.Fprintln(w, "CIDR\tENDPOINT\tMAC")
	for _, v := range vs {
		fmt.Fprintf(w, "%s\t%s\t%s\n", v.CIDR, v.Endpoint, v.MAC)
	}
}

func printFIB(w io.Writer, es []api.FIBEntry) {
	fmt.Fprintln(w, "PREFIX\tKIND\tTARGET")
	for _, e := range es {
		fmt.Fprintf(w, "%s\t%s\t%s\n", e.Prefix, e.Kind, e.Target)
	}
}

func printIdentities(w io.Writer, ids []api.Identity) {
	fmt.Fprintln(w, "ID\tNAME\tVNI")
	for _, id := range ids {
		vni := "-"
		if id.VNI != 0 {
			vni = fmt.Sprint(id.VNI)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\n", id.ID, id.Name, vni)
	}
}

func newMonitorCmd(g *globals) *cobra.Command {
	var typ string
	var count int
	c := &cobra.Command{
		Use: "monitor [--type drop]", Args: cobra.NoArgs,
		Short: "stream dataplane events (drops, with reason, device, addresses and identity); rate-limited per worker",
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != "" && typ != "drop" {
				return usagef("monitor --type %q: only drop events exist", typ)
			}
			c, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			seen := 0
			errDone := errors.New("done")
			err := g.client().Stream(c, "/v1/monitor?type=drop", func(line []byte) error {
				if g.json() {
					fmt.Fprintf(g.stdout, "%s\n", line)
				} else {
					var ev api.Event
					if err := json.Unmarshal(line, &ev); err != nil {
						return err
					}
					fmt.Fprintln(g.stdout, formatEvent(ev))
				}
				seen++
				if count > 0 && seen >= count {
					return errDone
				}
				return nil
			})
			if errors.Is(err, errDone) || c.Err() != nil {
				return nil
			}
			return err
		},
	}
	c.Flags().StringVar(&typ, "type", "drop", "event type (drop)")
	c.Flags().IntVar(&count, "count", 0, "exit after this many events (0: until interrupted)")
	return c
}

func newCaptureCmd(g *globals) *cobra.Command {
	var point, file string
	var count int
	c := &cobra.Command{
		Use: "capture --point pod:NAME|underlay|host [--count N] -w FILE.pcap", Args: cobra.NoArgs,
		Short: "write the packets crossing a point of the pipeline to a pcap file (raw IP)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if point == "" || file == "" {
				return usagef("capture: --point and -w are required")
			}
			if count < 0 {
				return usagef("capture: --count %d: want 0 (until interrupted) or more", count)
			}
			out := io.Writer(g.stdout)
			if file != "-" {
				// The file is made when the first bytes arrive: a capture
				// the agent refuses leaves an existing file as it was.
				lf := &lazyFile{path: file}
				defer lf.Close()
				out = lf
			}
			ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			path := "/v1/capture?point=" + url.QueryEscape(point)
			if count > 0 {
				path += "&count=" + strconv.Itoa(count)
			}
			return g.client().Raw(ctx, path, out)
		},
	}
	c.Flags().StringVar(&point, "point", "", "where to capture: underlay, host or pod:NAME")
	c.Flags().StringVarP(&file, "write", "w", "", "pcap file to write (- for standard output)")
	c.Flags().IntVar(&count, "count", 0, "stop after this many packets (0: until interrupted)")
	return c
}

// lazyFile creates (truncating) its file at the first Write.
type lazyFile struct {
	path string
	f    *os.File
}

func (l *lazyFile) Write(b []byte) (int, error) {
	if l.f == nil {
		f, err := os.Create(l.path)
		if err != nil {
			return 0, err
		}
		l.f = f
	}
	return l.f.Write(b)
}

func (l *lazyFile) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

func formatEvent(ev api.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s dev %s (%s)", ev.Time.Format("15:04:05.000"), ev.Type, ev.Reason, ev.Device, ev.Source)
	if ev.OuterSrc != "" {
		fmt.Fprintf(&b, " outer %s -> %s", ev.OuterSrc, ev.OuterDst)
	}
	if ev.Src != "" {
		fmt.Fprintf(&b, " %s %s -> %s", ev.Protocol, ev.Src, ev.Dst)
	} else if ev.Protocol != "" {
		fmt.Fprintf(&b, " %s", ev.Protocol)
	}
	if ev.Identity != 0 {
		fmt.Fprintf(&b, " identity %d", ev.Identity)
	}
	fmt.Fprintf(&b, " %d bytes", ev.Bytes)
	return b.String()
}

func newStatsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "stats", Args: cobra.NoArgs, Short: "packet counters per device and drops by reason",
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, "/v1/stats", func(w io.Writer, s api.Stats) {
				fmt.Fprintln(w, "DEVICE\tKIND\tRX-PACKETS\tRX-BYTES\tTX-PACKETS\tTX-BYTES\tTX-ERRORS\tDRV-RX-DROP\tDRV-TX-ERR\tKERNEL-DROP")
				for _, d := range s.Devices {
					// KERNEL-DROP: what the kernel dropped before vxdp
					// read it; "-" when the counter could not be read.
					kd := strconv.FormatUint(d.KernelDropped, 10)
					if d.KernelDropError != "" {
						kd = "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", d.Device, d.Kind, d.RxPackets, d.RxBytes, d.TxPackets, d.TxBytes, d.TxErrors, d.DriverRxDropped, d.DriverTxErrors, kd)
				}
				fmt.Fprintln(w)
				fmt.Fprintln(w, "DEVICE\tOFFLOAD\tSTATE\tCOUNT\tLARGEST-BYTES")
				for _, d := range s.Devices {
					for _, o := range d.Offloads {
						state := "on"
						if !o.Active {
							state = "off: " + o.Reason
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\n", d.Device, o.Name, state, o.Count, o.Largest)
					}
				}
				fmt.Fprintln(w)
				fmt.Fprintln(w, "DEVICE\tOUTER SOURCE PORTS")
				for _, d := range s.Devices {
					if sp := d.SourcePorts; sp != nil {
						fmt.Fprintf(w, "%s\t%d in %d-%d, one per flow\n", d.Device, sp.Count, sp.Min, sp.Max)
					}
				}
				fmt.Fprintln(w)
				fmt.Fprintln(w, "DROP REASON\tPACKETS")
				for _, r := range dropOrder() {
					fmt.Fprintf(w, "%s\t%d\n", r, s.Drops[r])
				}
				fmt.Fprintf(w, "total\t%d\n", s.TotalDrops)
				fmt.Fprintf(w, "\nICMP errors sent\t%d\n", s.ICMPErrors)
				fmt.Fprintf(w, "ICMP errors rate-limited\t%d\n", s.ICMPErrorsLimited)
				fmt.Fprintf(w, "ARP replies sent\t%d\n", s.ARPReplies)
				fmt.Fprintf(w, "ECN anomalies\t%d\n", s.ECNAnomalies)
				fmt.Fprintf(w, "monitor events lost\t%d\n", s.MonitorEventsLost)
			})
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "status", Args: cobra.NoArgs, Short: "agent state; exits 1 when unhealthy",
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.Status
			err := show(g, "/v1/status", func(w io.Writer, s api.Status) {
				st = s
				health := "ok"
				if !s.Healthy {
					health = "UNHEALTHY: " + strings.Join(s.Problems, "; ")
				}
				mtu := fmt.Sprintf("underlay %d, pods %d", s.UnderlayMTU, s.RouteMTU)
				if s.MTUChange != "" {
					mtu += " (" + s.MTUChange + ")"
				}
				rows := [][2]string{
					{"Health", health},
					{"Node", fmt.Sprintf("%s %s", s.NodeName, s.NodeIP)},
					{"Pod CIDR", podCIDRLine(s)},
					{"Mode", s.RoutingMode},
					{"Protocol", fmt.Sprintf("%s port %d", s.TunnelProtocol, s.TunnelPort)},
					{"Underlay", fmt.Sprintf("%s on %s (%s)", s.Underlay, s.Device, s.UnderlayReason)},
					{"MTU", mtu},
					{"Tunnel MAC", s.TunnelMAC},
					{"Endpoints", fmt.Sprint(s.Endpoints)},
					{"Nodes", fmt.Sprint(s.Nodes)},
					{"VTEPs", fmt.Sprint(s.VTEPs)},
					{"FIB entries", fmt.Sprint(s.FIBEntries)},
					{"Uptime", fmt.Sprintf("%.0fs", s.UptimeSeconds)},
					{"Version", s.Version},
				}
				if s.KVStore != "" {
					rows = append(rows, [2]string{"KVStore", s.KVStore})
				}
				if s.Kubernetes != "" {
					rows = append(rows, [2]string{"Kubernetes", s.Kubernetes})
				}
				if s.StateSave != "" {
					rows = append(rows, [2]string{"State", "NOT SAVED: " + s.StateSave})
				}
				if s.ForwardingWas != "" {
					rows = append(rows, [2]string{"IP forwarding", "on (was " + s.ForwardingWas + ")"})
				}
				if s.Forwarding6Was != "" {
					rows = append(rows, [2]string{"IPv6 forwarding", "on (was " + s.Forwarding6Was + ")"})
				}
				for i, r := range s.Routes {
					k := ""
					if i == 0 {
						k = "Routes"
					}
					rows = append(rows, [2]string{k, r})
				}
				for _, r := range rows {
					if r[0] == "" {
						fmt.Fprintf(w, "\t%s\n", r[1])
						continue
					}
					fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
				}
			})
			if err != nil {
				return err
			}
			if g.json() {
				// The table callback did not run; decode to learn health.
				var raw json.RawMessage
				if err := g.client().Do(ctx(), "GET", "/v1/status", nil, &raw); err == nil {
					_ = json.Unmarshal(raw, &st)
				}
			}
			if !st.Healthy {
				return exitError{exitFailure}
			}
			return nil
		},
	}
}

// readNodeList reads a list of nodes in the configuration's nodes: form.
func readNodeList(path string) ([]api.NodeRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []struct {
		Name    string `yaml:"name"`
		IP      string `yaml:"ip"`
		PodCIDR string `yaml:"pod-cidr"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil {
		return nil, err
	}
	reqs := make([]api.NodeRequest, 0, len(list))
	for i, n := range list {
		if n.Name == "" || n.IP == "" || n.PodCIDR == "" {
			return nil, fmt.Errorf("entry %d: name, ip and pod-cidr are required", i+1)
		}
		reqs = append(reqs, api.NodeRequest{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR})
	}
	return reqs, nil
}

// pair prints one address or prefix of each family, comma separated, as
// the commands take them.
func pair[T interface {
	IsValid() bool
	String() string
}](v4, v6 T) string {
	switch {
	case v4.IsValid() && v6.IsValid():
		return v4.String() + "," + v6.String()
	case v6.IsValid():
		return v6.String()
	}
	return v4.String()
}

// podCIDRLine is the status line of the node's pod CIDRs and host addresses.
func podCIDRLine(s api.Status) string {
	var parts []string
	if s.PodCIDR.IsValid() {
		parts = append(parts, fmt.Sprintf("%s (host %s)", s.PodCIDR, s.HostIP))
	}
	if s.PodCIDR6.IsValid() {
		parts = append(parts, fmt.Sprintf("%s (host %s)", s.PodCIDR6, s.HostIP6))
	}
	return strings.Join(parts, ", ")
}
