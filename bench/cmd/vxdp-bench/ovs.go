//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// The Open vSwitch modes: per node a private ovsdb-server and ovs-vswitchd
// running the userspace (netdev) datapath, the way OVS documents userspace
// tunnelling. br-phy holds the underlay port and carries the node's
// address on its internal port, so that OVS's own tunnel routing and
// neighbour table send the encapsulated packets out through it; br-int
// holds the pod's veth and a VXLAN port towards the other node, and
// OpenFlow rules route between them.

// ovsCommands are what the OVS modes run; a missing one makes them "not
// available".
var ovsCommands = []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ethtool"}

const (
	ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"
	// ovsGatewayMAC is the pods' next hop: a permanent neighbour entry in
	// each pod, and the source MAC br-int writes on what it delivers.
	ovsGatewayMAC = "02:0f:00:00:01:01"
	// The OpenFlow port numbers on br-int, requested so the flows can
	// name them.
	ovsPodPort   = "1"
	ovsVXLANPort = "2"
	// ovsAFXDPMode is the XDP attach mode of the underlay port in
	// ovs-afxdp. A veth has native XDP but no zero-copy, so this is
	// native XDP with copying AF_XDP sockets; "generic" (skb mode) also
	// works there and was slower.
	ovsAFXDPMode = "native"
)

// ovsPhyMAC and ovsPodMAC are fixed per node so that the flows and the
// tunnel neighbour entries can be written before any traffic.
func ovsPhyMAC(i int) string { return fmt.Sprintf("02:0f:00:00:00:%02x", i+1) }
func ovsPodMAC(i int) string { return fmt.Sprintf("02:0f:00:00:02:%02x", i+1) }

// ovsNode is one node's OVS instance: its private directory (database,
// control sockets, pid files) and the environment that points the OVS
// commands there instead of the system's /var/run/openvswitch.
type ovsNode struct {
	dir string
	env []string
}

func newOVSNode(dir string) *ovsNode {
	return &ovsNode{dir: dir, env: []string{
		"OVS_RUNDIR=" + dir, "OVS_DBDIR=" + dir, "OVS_LOGDIR=" + dir, "OVS_SYSCONFDIR=" + dir,
		"OVS_PKGDATADIR=" + filepath.Dir(ovsSchema),
	}}
}

func (o *ovsNode) db() string     { return "unix:" + filepath.Join(o.dir, "db.sock") }
func (o *ovsNode) ctl() string    { return filepath.Join(o.dir, "ovs-vswitchd.ctl") }
func (o *ovsNode) dbCtl() string  { return filepath.Join(o.dir, "ovsdb-server.ctl") }
func (o *ovsNode) dbFile() string { return filepath.Join(o.dir, "conf.db") }

// cmd prefixes an OVS command with `env` and the instance's variables, for
// `ip netns exec` (which execs it in place: the pid stays the command's).
func (o *ovsNode) cmd(args ...string) []string {
	return append(append([]string{"env"}, o.env...), args...)
}

// vsctl runs ovs-vsctl against this instance's database inside the node's
// namespace; without --no-wait it returns once ovs-vswitchd applied the
// change, bounded by --timeout.
func (o *ovsNode) vsctl(ctx context.Context, l *lab, node string, args ...string) error {
	full := o.cmd(append([]string{"ovs-vsctl", "--db=" + o.db(), "--timeout=15"}, args...)...)
	_, err := l.exec(ctx, node, 20*time.Second, full...)
	return err
}

// buildOVS builds the two-node topology with Open vSwitch's userspace
// datapath; with afxdp the underlay port is an AF_XDP port polled by PMD
// threads instead of a plain (AF_PACKET) one. OVS places the PMD threads
// itself unless spreadPMD pins node i's to CPU i (pmd-cpu-mask).
func buildOVS(ctx context.Context, l *lab, afxdp, spreadPMD bool) (*env, error) {
	for _, c := range ovsCommands {
		if _, err := exec.LookPath(c); err != nil {
			return nil, &notAvailable{reason: c + " not found (apt-get install openvswitch-switch ethtool, or make bench-deps)"}
		}
	}
	if _, err := os.Stat(ovsSchema); err != nil {
		return nil, &notAvailable{reason: fmt.Sprintf("OVS schema: %v (apt-get install openvswitch-switch)", err)}
	}
	mode := "ovs"
	if afxdp {
		mode = "ovs-afxdp"
	}
	for _, n := range nodes {
		for _, ns := range []string{n.name, n.podNS} {
			if err := l.addNetns(ns); err != nil {
				return nil, err
			}
		}
	}
	// The underlay link without addresses: the node address goes on
	// br-phy's internal port, which is where OVS's tunnel routing looks.
	if err := l.AddVeth(l.netns(nodes[0].name), "eth0", "", l.netns(nodes[1].name), "eth0", "", underlayMTU); err != nil {
		return nil, err
	}
	e := &env{lab: l, mode: mode}
	var insts [2]*ovsNode
	for i, n := range nodes {
		dir := filepath.Join(l.dir, fmt.Sprintf("%s%s-%s", l.Prefix(), mode, n.name))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		// Registered first, so it runs after the processes are stopped and
		// also when the build fails half way.
		l.Defer("remove "+dir, func() error { return os.RemoveAll(dir) })
		o := newOVSNode(dir)
		insts[i] = o
		if _, err := runLocal(ctx, cmdTimeout, "ovsdb-tool", "create", o.dbFile(), ovsSchema); err != nil {
			return nil, err
		}
		// Both run in the foreground (no --detach), so that the lab
		// tracks, signals and reaps them like any other process.
		if _, err := l.start(n.name, fmt.Sprintf("%s-%s-ovsdb-server", mode, n.name), o.cmd("ovsdb-server", o.dbFile(),
			"--remote=punix:"+strings.TrimPrefix(o.db(), "unix:"), "--unixctl="+o.dbCtl(),
			"--pidfile="+filepath.Join(dir, "ovsdb-server.pid"))...); err != nil {
			return nil, err
		}
		if err := waitFile(ctx, strings.TrimPrefix(o.db(), "unix:"), 10*time.Second); err != nil {
			return nil, fmt.Errorf("%s ovsdb-server: %w", n.name, err)
		}
		if err := o.vsctl(ctx, l, n.name, "--no-wait", "init"); err != nil {
			return nil, err
		}
		p, err := l.start(n.name, fmt.Sprintf("%s-%s-ovs-vswitchd", mode, n.name), o.cmd("ovs-vswitchd", o.db(),
			"--unixctl="+o.ctl(), "--pidfile="+filepath.Join(dir, "ovs-vswitchd.pid"))...)
		if err != nil {
			return nil, err
		}
		e.procs = append(e.procs, p)
		if err := waitFile(ctx, o.ctl(), 10*time.Second); err != nil {
			return nil, fmt.Errorf("%s ovs-vswitchd: %w: %s", n.name, err, oneLine(logTail(p, 4)))
		}
	}
	for i, n := range nodes {
		peer := nodes[1-i]
		o := insts[i]
		phyPort := []string{"--", "add-port", "br-phy", "eth0"}
		if afxdp {
			phyPort = append(phyPort, "--", "set", "interface", "eth0", "type=afxdp", "options:xdp-mode="+ovsAFXDPMode)
		}
		var steps [][]string
		if afxdp && spreadPMD {
			steps = append(steps, []string{"set", "Open_vSwitch", ".", fmt.Sprintf("other_config:pmd-cpu-mask=0x%x", 1<<(i%runtime.NumCPU()))})
		}
		steps = append(steps, [][]string{
			append([]string{"add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev", "other_config:hwaddr=" + ovsPhyMAC(i)}, phyPort...),
			{"add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "fail_mode=secure"},
		}...)
		for _, s := range steps {
			if err := o.vsctl(ctx, l, n.name, s...); err != nil {
				return nil, fmt.Errorf("%s: %w", n.name, err)
			}
		}
		if err := l.ip(n.name, "addr", "add", n.ip+"/24", "dev", "br-phy"); err != nil {
			return nil, err
		}
		if err := l.ip(n.name, "link", "set", "br-phy", "up"); err != nil {
			return nil, err
		}
		// The pod link: node side "pod" on br-int, pod side eth0 with a
		// fixed MAC the flows deliver to, a /32 and a default route via a
		// gateway answered by a permanent neighbour entry (nothing on
		// br-int answers ARP).
		if err := l.AddVeth(l.netns(n.name), "pod", "", l.netns(n.podNS), "eth0", "", podMTU); err != nil {
			return nil, err
		}
		podSteps := [][]string{
			{"link", "set", "eth0", "address", ovsPodMAC(i)},
			{"addr", "add", n.podIP + "/32", "dev", "eth0"},
			{"route", "add", n.podGW, "dev", "eth0", "scope", "link"},
			{"route", "add", "default", "via", n.podGW, "dev", "eth0"},
			{"neigh", "replace", n.podGW, "lladdr", ovsGatewayMAC, "dev", "eth0", "nud", "permanent"},
		}
		for _, s := range podSteps {
			if err := l.ip(n.podNS, s...); err != nil {
				return nil, err
			}
		}
		// OVS 3.1's userspace datapath neither takes partial checksums
		// nor segmentation offload from a veth: without this the pod's
		// TCP segments leave with unfinished checksums and are dropped.
		if _, err := l.exec(ctx, n.podNS, cmdTimeout, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off"); err != nil {
			return nil, err
		}
		portSteps := [][]string{
			{"add-port", "br-int", "pod", "--", "set", "interface", "pod", "ofport_request=" + ovsPodPort},
			{"add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan", "ofport_request=" + ovsVXLANPort,
				"options:remote_ip=" + peer.ip, "options:key=1", "options:dst_port=" + vxlanPort},
		}
		for _, s := range portSteps {
			if err := o.vsctl(ctx, l, n.name, s...); err != nil {
				return nil, fmt.Errorf("%s: %w", n.name, err)
			}
		}
		flows := []string{
			// Out: whatever the pod sends to the other node's pods goes
			// into the tunnel; the receiving node writes the MACs.
			fmt.Sprintf("priority=10,in_port=%s,ip,nw_dst=%s,actions=output:%s", ovsPodPort, peer.podCIDR, ovsVXLANPort),
			// In: routed to the pod, as the kernel's forwarding would.
			fmt.Sprintf("priority=10,in_port=%s,ip,nw_dst=%s,actions=mod_dl_src:%s,mod_dl_dst:%s,dec_ttl,output:%s",
				ovsVXLANPort, n.podIP, ovsGatewayMAC, ovsPodMAC(i), ovsPodPort),
		}
		for _, f := range flows {
			if _, err := l.exec(ctx, n.name, cmdTimeout, o.cmd("ovs-ofctl", "add-flow", "br-int", f)...); err != nil {
				return nil, err
			}
		}
		// The tunnel's next hop is the other node's br-phy; its MAC is
		// known, so OVS need not resolve it before the first packet.
		if _, err := l.exec(ctx, n.name, cmdTimeout, o.cmd("ovs-appctl", "-t", o.ctl(), "tnl/arp/set", "br-phy", peer.ip, ovsPhyMAC(1-i))...); err != nil {
			return nil, err
		}
	}
	for i, p := range e.procs {
		if !p.Alive() {
			return nil, fmt.Errorf("%s ovs-vswitchd exited: %s", nodes[i].name, oneLine(logTail(p, 4)))
		}
	}
	version := "Open vSwitch"
	if out, err := runLocal(ctx, cmdTimeout, "ovs-vswitchd", "--version"); err == nil {
		version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	e.detail = version + " userspace (netdev) datapath, br-phy underlay port "
	if afxdp {
		e.detail += "type afxdp, xdp-mode " + ovsAFXDPMode + " (copy mode on a veth), polled by PMD threads"
		if spreadPMD {
			e.detail += " pinned one per node to CPUs 0 and 1 (pmd-cpu-mask)"
		} else {
			e.detail += " placed by OVS"
		}
		if out, err := l.exec(ctx, nodes[0].name, cmdTimeout, insts[0].cmd("ovs-appctl", "-t", insts[0].ctl(), "dpif-netdev/pmd-rxq-show")...); err == nil {
			e.detail += " (" + pmdSummary(string(out)) + ")"
		}
	} else {
		e.detail += "type system (AF_PACKET)"
	}
	e.detail += "; br-int vxlan port key 1 dst_port " + vxlanPort + ", OpenFlow L3 flows; pod veth offloads off (tx checksum, tso, gso)"
	return e, nil
}

// pmdSummary shortens `ovs-appctl dpif-netdev/pmd-rxq-show` to the cores
// node1's PMD threads run on.
func pmdSummary(out string) string {
	var cores []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "pmd thread") {
			if _, c, ok := strings.Cut(line, "core_id "); ok {
				cores = append(cores, strings.TrimSuffix(c, ":"))
			}
		}
	}
	if len(cores) == 0 {
		return "no PMD thread listed"
	}
	return fmt.Sprintf("node1: %d PMD thread(s) on core %s", len(cores), strings.Join(cores, ","))
}

// waitFile waits until path exists (a daemon's socket), bounded by d and ctx.
func waitFile(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not there after %v", path, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
