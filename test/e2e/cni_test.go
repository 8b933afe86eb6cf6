package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/cni"
	"github.com/vxdp/vxdp/internal/nstest"
)

// cniConf is a network configuration for node i's agent.
func cniConf(c *cluster, i int, version string, extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion": %q, "name": "vxdp-node%d", "type": "vxdp-cni", "socket": %q%s}`,
		version, i+1, c.sockets[i], extra))
}

// cniAdd runs the plugin's ADD in this process, as a runtime would run
// the binary, and returns its result.
func cniAdd(t *testing.T, conf []byte, ns *nstest.Netns, id, ifname string) (*current.Result, error) {
	t.Helper()
	r, _, err := testutils.CmdAdd(ns.Path, id, ifname, conf, func() error {
		return cni.Funcs.Add(&skel.CmdArgs{ContainerID: id, Netns: ns.Path, IfName: ifname, StdinData: conf})
	})
	if err != nil {
		return nil, err
	}
	res, err := current.GetResult(r)
	if err != nil {
		t.Fatalf("ADD result: %v", err)
	}
	return res, nil
}

func cniDel(t *testing.T, conf []byte, netns, id, ifname string) error {
	t.Helper()
	return testutils.CmdDel(netns, id, ifname, func() error {
		return cni.Funcs.Del(&skel.CmdArgs{ContainerID: id, Netns: netns, IfName: ifname, StdinData: conf})
	})
}

func cniCheck(t *testing.T, conf []byte, netns, id, ifname string) error {
	t.Helper()
	return testutils.CmdCheck(netns, id, ifname, func() error {
		return cni.Funcs.Check(&skel.CmdArgs{ContainerID: id, Netns: netns, IfName: ifname, StdinData: conf})
	})
}

// cniCode is the CNI error code of err, or 0 for none.
func cniCode(err error) uint {
	if te, ok := err.(*types.Error); ok {
		return te.Code
	}
	return 0
}

// leases reads the endpoints the agent attached for containers.
func containerEndpoints(t *testing.T, c *cluster, i int) map[string]api.Endpoint {
	t.Helper()
	var eps []api.Endpoint
	mustJSON(t, c.mustCLI(i, "-o", "json", "endpoint", "list"), &eps)
	out := map[string]api.Endpoint{}
	for _, ep := range eps {
		if ep.ContainerID != "" {
			out[ep.ContainerID] = ep
		}
	}
	return out
}

// withPrev adds the result of an ADD as prevResult, for CHECK.
func withPrev(t *testing.T, conf []byte, res *current.Result) []byte {
	t.Helper()
	var m map[string]any
	must(t, json.Unmarshal(conf, &m))
	var buf bytes.Buffer
	must(t, res.PrintTo(&buf))
	var prev map[string]any
	must(t, json.Unmarshal(buf.Bytes(), &prev))
	m["prevResult"] = prev
	b, err := json.Marshal(m)
	must(t, err)
	return b
}

// Every verb of the plugin against a running agent on a dual-stack
// cluster: containers get addresses of both families from the node's pod
// CIDRs, reach pods on the other node, are checked, deleted (twice),
// collected, and the errors a runtime can meet come back with the codes
// of the specification.
func TestCNIPlugin(t *testing.T) {
	c := dualCluster(t, "ipv4")
	conf := cniConf(c, 0, "1.1.0", "")
	ctr1, ctr2 := c.lab.Netns("ctr1"), c.lab.Netns("ctr2")

	var res1 *current.Result
	t.Run("add", func(t *testing.T) {
		var err error
		res1, err = cniAdd(t, conf, ctr1, "ctr1-0123456789abcdef", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if len(res1.Interfaces) != 1 || res1.Interfaces[0].Name != "eth0" || res1.Interfaces[0].Sandbox != ctr1.Path || res1.Interfaces[0].Mtu != 1450 {
			t.Fatalf("interfaces %+v", res1.Interfaces)
		}
		var got []string
		for _, ip := range res1.IPs {
			got = append(got, ip.Address.String())
		}
		// The first free addresses after the host's and the pods' of the
		// configuration (.10, .11).
		if strings.Join(got, " ") != "10.1.1.2/32 fd00:1:1::2/128" {
			t.Fatalf("addresses %v", got)
		}
		if len(res1.Routes) != 2 {
			t.Fatalf("routes %+v", res1.Routes)
		}
		// What the result says is what the container has.
		out := ctr1.MustRun(t, "ip", "addr", "show", "dev", "eth0")
		for _, want := range []string{"10.1.1.2/32", "fd00:1:1::2/128", "mtu 1450"} {
			if !strings.Contains(out, want) {
				t.Errorf("container's eth0 lacks %s:\n%s", want, out)
			}
		}
		ep, ok := containerEndpoints(t, c, 0)["ctr1-0123456789abcdef"]
		if !ok || ep.Identity != 256 || ep.Name != "cni-ctr1-0123456789a" {
			t.Errorf("endpoint list: %+v", containerEndpoints(t, c, 0))
		}
		if out := c.mustCLI(0, "endpoint", "list"); !strings.Contains(out, "ctr1-0123456789abcdef") {
			t.Errorf("endpoint list does not show the container ID:\n%s", out)
		}
	})

	t.Run("traffic", func(t *testing.T) {
		c.pods["ctr1"] = ctr1
		c.mustPing("ctr1", "10.1.2.20")    // a pod on the other node
		c.mustPing("ctr1", "fd00:1:2::20") // over IPv6
		c.mustPing("pod1a", "10.1.1.2")    // from a pod on the same node
		transfer(t, c.pods["pod2a"], ctr1, "fd00:1:1::2", 5301, 4<<20, 30*time.Second)
	})

	t.Run("identity and address asked for", func(t *testing.T) {
		// The runtime's "ips" capability and an identity in CNI_ARGS.
		conf := cniConf(c, 0, "1.1.0", `, "runtimeConfig": {"ips": ["10.1.1.77/24"]}`)
		r, _, err := testutils.CmdAdd(ctr2.Path, "ctr2", "eth0", conf, func() error {
			return cni.Funcs.Add(&skel.CmdArgs{ContainerID: "ctr2", Netns: ctr2.Path, IfName: "eth0", StdinData: conf,
				Args: "IgnoreUnknown=1;VXDP_IDENTITY=1500;VXDP_ALLOW_FROM=1000,2000;K8S_POD_NAME=x"})
		})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := current.GetResult(r)
		if res.IPs[0].Address.String() != "10.1.1.77/32" {
			t.Errorf("asked for 10.1.1.77, got %s", res.IPs[0].Address.String())
		}
		ep := containerEndpoints(t, c, 0)["ctr2"]
		if ep.Identity != 1500 || fmt.Sprint(ep.AllowFrom) != "[1000 2000]" {
			t.Errorf("identity %d allow %v, want 1500 [1000 2000]", ep.Identity, ep.AllowFrom)
		}
		// The policy holds: identity 1000 (pod1a) gets in, 2000's peer
		// 256 (pod2b) does not.
		c.pods["ctr2"] = ctr2
		c.mustPing("pod1a", "10.1.1.77")
		if out, err := c.ping("pod2b", "10.1.1.77", "-c", "1"); err == nil {
			t.Errorf("identity 256 passed an allow-list of 1000 and 2000:\n%s", out)
		}
		// An address in use, or outside the node's CIDR, is refused.
		ctr3 := c.lab.Netns("ctr3")
		for _, ip := range []string{"10.1.1.77", "10.1.2.5", "10.1.1.1"} {
			conf := cniConf(c, 0, "1.1.0", fmt.Sprintf(`, "runtimeConfig": {"ips": [%q]}`, ip))
			if _, err := cniAdd(t, conf, ctr3, "ctr3", "eth0"); err == nil || cniCode(err) != 7 {
				t.Errorf("ips %s: %v (code %d), want code 7", ip, err, cniCode(err))
			}
		}
		must(t, cniDel(t, conf, ctr2.Path, "ctr2", "eth0"))
	})

	t.Run("check", func(t *testing.T) {
		pconf := withPrev(t, conf, res1)
		if err := cniCheck(t, pconf, ctr1.Path, "ctr1-0123456789abcdef", "eth0"); err != nil {
			t.Fatalf("CHECK of a healthy attachment: %v", err)
		}
		ctr1.MustRun(t, "ip", "-6", "addr", "del", "fd00:1:1::2/128", "dev", "eth0")
		err := cniCheck(t, pconf, ctr1.Path, "ctr1-0123456789abcdef", "eth0")
		if err == nil || !strings.Contains(err.Error(), "fd00:1:1::2/128") {
			t.Errorf("CHECK with an address removed: %v", err)
		}
		ctr1.MustRun(t, "ip", "-6", "addr", "add", "fd00:1:1::2/128", "dev", "eth0", "nodad")
		ctr1.MustRun(t, "ip", "-6", "route", "replace", "default", "dev", "eth0")
		if err := cniCheck(t, pconf, ctr1.Path, "unknown", "eth0"); cniCode(err) != 3 {
			t.Errorf("CHECK of an unknown container: %v (code %d), want code 3", err, cniCode(err))
		}
	})

	t.Run("add errors", func(t *testing.T) {
		ctr4 := c.lab.Netns("ctr4")
		for _, tc := range []struct {
			name         string
			conf         []byte
			id, netns    string
			code         uint
			wantInReason string
		}{
			{"netns gone", conf, "ctr4", "/run/netns/vxdp-no-such-ns", 8, "not there"},
			{"bad container ID", conf, "-bad/id", ctr4.Path, 7, "container ID"},
			{"bad identity", cniConf(c, 0, "1.1.0", `, "identity": "12"`), "ctr4", ctr4.Path, 7, "identity"},
			{"second attachment in one namespace", conf, "ctr1-other", ctr1.Path, 7, "one attachment per container"},
			{"agent not running", []byte(`{"cniVersion": "1.1.0", "name": "x", "type": "vxdp-cni", "socket": "` + c.dir + `/none.sock"}`),
				"ctr4", ctr4.Path, 11, "not running"},
		} {
			_, _, err := testutils.CmdAdd(tc.netns, tc.id, "eth0", tc.conf, func() error {
				return cni.Funcs.Add(&skel.CmdArgs{ContainerID: tc.id, Netns: tc.netns, IfName: "eth0", StdinData: tc.conf})
			})
			if cniCode(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.wantInReason) {
				t.Errorf("%s: %v (code %d), want code %d naming %q", tc.name, err, cniCode(err), tc.code, tc.wantInReason)
			}
		}
		if eps := containerEndpoints(t, c, 0); len(eps) != 1 {
			t.Errorf("a failed ADD left endpoints: %+v", eps)
		}
	})

	t.Run("del", func(t *testing.T) {
		ctr5 := c.lab.Netns("ctr5")
		if _, err := cniAdd(t, conf, ctr5, "ctr5", "eth0"); err != nil {
			t.Fatal(err)
		}
		must(t, cniDel(t, conf, ctr5.Path, "ctr5", "eth0"))
		if _, ok := containerEndpoints(t, c, 0)["ctr5"]; ok {
			t.Fatal("endpoint still there after DEL")
		}
		if out := ctr5.MustRun(t, "ip", "link"); strings.Contains(out, "eth0") {
			t.Errorf("the container keeps eth0 after DEL:\n%s", out)
		}
		// Twice, unknown, and with the namespace gone: all succeed.
		must(t, cniDel(t, conf, ctr5.Path, "ctr5", "eth0"))
		must(t, cniDel(t, conf, ctr5.Path, "never-added", "eth0"))
		must(t, cniDel(t, conf, "/run/netns/vxdp-no-such-ns", "ctr5", "eth0"))
		// The address is free again: the next ADD may take it (after the
		// others: next-fit).
		if _, err := cniAdd(t, conf, ctr5, "ctr5b", "eth0"); err != nil {
			t.Fatal(err)
		}
		must(t, cniDel(t, conf, ctr5.Path, "ctr5b", "eth0"))
	})

	t.Run("gc", func(t *testing.T) {
		var nss []*nstest.Netns
		for i := range 3 {
			ns := c.lab.Netns(fmt.Sprintf("gc%d", i))
			nss = append(nss, ns)
			if _, err := cniAdd(t, conf, ns, fmt.Sprintf("gc%d", i), "eth0"); err != nil {
				t.Fatal(err)
			}
		}
		gconf := cniConf(c, 0, "1.1.0", `, "cni.dev/valid-attachments": [{"containerID": "gc1", "ifname": "eth0"}, {"containerID": "ctr1-0123456789abcdef", "ifname": "eth0"}]`)
		err := cni.Funcs.GC(&skel.CmdArgs{StdinData: gconf})
		must(t, err)
		eps := containerEndpoints(t, c, 0)
		if _, ok := eps["gc1"]; !ok || len(eps) != 2 {
			t.Fatalf("after GC keeping gc1 and ctr1: %+v", eps)
		}
		// A GC of another network leaves this one's attachments alone.
		other := []byte(`{"cniVersion": "1.1.0", "name": "other", "type": "vxdp-cni", "socket": "` + c.sockets[0] + `", "cni.dev/valid-attachments": []}`)
		must(t, cni.Funcs.GC(&skel.CmdArgs{StdinData: other}))
		if eps := containerEndpoints(t, c, 0); len(eps) != 2 {
			t.Fatalf("a GC of another network removed attachments: %+v", eps)
		}
		must(t, cniDel(t, conf, nss[1].Path, "gc1", "eth0"))
	})

	t.Run("status and version through the binary", func(t *testing.T) {
		run := func(conf []byte, env ...string) (string, int) {
			cmd := exec.Command(cniBin)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CNI_PATH=/opt/cni/bin"}, env...)
			cmd.Stdin = bytes.NewReader(conf)
			out, err := cmd.Output()
			return string(out), exitCode(err)
		}
		if out, code := run(conf, "CNI_COMMAND=STATUS"); code != 0 {
			t.Errorf("STATUS with the agent up: exit %d\n%s", code, out)
		}
		down := []byte(`{"cniVersion": "1.1.0", "name": "x", "type": "vxdp-cni", "socket": "` + c.dir + `/none.sock"}`)
		if out, code := run(down, "CNI_COMMAND=STATUS"); code == 0 || !strings.Contains(out, `"code": 50`) {
			t.Errorf("STATUS with no agent: exit %d\n%s", code, out)
		}
		out, code := run(conf, "CNI_COMMAND=VERSION")
		if code != 0 || !strings.Contains(out, `"1.1.0"`) || !strings.Contains(out, `"0.3.1"`) {
			t.Errorf("VERSION: exit %d\n%s", code, out)
		}
		// An older configuration gets an older result, as the
		// specification converts it.
		ctr6 := c.lab.Netns("ctr6")
		old := cniConf(c, 0, "0.3.1", "")
		out, code = run(old, "CNI_COMMAND=ADD", "CNI_CONTAINERID=ctr6", "CNI_NETNS="+ctr6.Path, "CNI_IFNAME=eth0")
		if code != 0 || !strings.Contains(out, `"cniVersion": "0.3.1"`) || !strings.Contains(out, `"version": "4"`) {
			t.Errorf("ADD with cniVersion 0.3.1: exit %d\n%s", code, out)
		}
		if out, code := run(old, "CNI_COMMAND=DEL", "CNI_CONTAINERID=ctr6", "CNI_NETNS="+ctr6.Path, "CNI_IFNAME=eth0"); code != 0 {
			t.Errorf("DEL: exit %d\n%s", code, out)
		}
		// CHECK did not exist before 0.4.0.
		if out, code := run(old, "CNI_COMMAND=CHECK", "CNI_CONTAINERID=ctr6", "CNI_NETNS="+ctr6.Path, "CNI_IFNAME=eth0"); code == 0 || !strings.Contains(out, `"code": 1`) {
			t.Errorf("CHECK with cniVersion 0.3.1: exit %d\n%s", code, out)
		}
	})

	t.Run("add and del racing", func(t *testing.T) {
		// Eight runtimes at once, each adding and deleting attachments
		// through the plugin binary (several interfaces in its own
		// namespace, so that many are alive at once): no address is
		// handed to two live attachments, and nothing is left at the end.
		const workers = 8
		var mu sync.Mutex
		live := map[string]string{}
		var wg sync.WaitGroup
		plugin := func(cmdName, id, netns, ifname string) ([]byte, error) {
			cmd := exec.Command(cniBin)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=" + cmdName, "CNI_CONTAINERID=" + id,
				"CNI_NETNS=" + netns, "CNI_IFNAME=" + ifname, "CNI_PATH=/opt/cni/bin"}
			cmd.Stdin = bytes.NewReader(conf)
			return cmd.Output()
		}
		for w := range workers {
			// Three container namespaces per runtime, one attachment each
			// at a time, so that two or three are alive at once.
			var nss [3]*nstest.Netns
			for k := range nss {
				nss[k] = c.lab.Netns(fmt.Sprintf("race%d%c", w, 'a'+k))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				held := map[int][]string{}
				ids := map[int]string{}
				n := 0
				add := func(k int) {
					n++
					id := fmt.Sprintf("race%d-%d", w, n)
					ids[k] = id
					out, err := plugin("ADD", id, nss[k].Path, "eth0")
					if err != nil {
						t.Errorf("%s ADD: %v\n%s", id, err, out)
						return
					}
					res, err := current.NewResult(out)
					if err != nil {
						t.Errorf("%s ADD result: %v", id, err)
						return
					}
					r, _ := current.GetResult(res)
					mu.Lock()
					defer mu.Unlock()
					held[k] = nil
					for _, ip := range r.IPs {
						a := ip.Address.IP.String()
						if other, ok := live[a]; ok {
							t.Errorf("%s given to %s and %s", a, other, id)
						}
						live[a] = id
						held[k] = append(held[k], a)
					}
				}
				del := func(k int) {
					// Forgotten first: once DEL is sent the address may
					// go to another attachment.
					mu.Lock()
					for _, a := range held[k] {
						delete(live, a)
					}
					mu.Unlock()
					if out, err := plugin("DEL", ids[k], nss[k].Path, "eth0"); err != nil {
						t.Errorf("%s DEL: %v\n%s", ids[k], err, out)
					}
				}
				add(0)
				add(1)
				del(0)
				add(2)
				del(1)
				add(0)
				del(2)
				add(1)
				del(0)
				del(1)
			}()
		}
		wg.Wait()
		if eps := containerEndpoints(t, c, 0); len(eps) != 1 {
			t.Errorf("after the race: %d container endpoints, want 1 (ctr1)", len(eps))
		}
	})

	t.Run("plugin killed during ADD", func(t *testing.T) {
		// The runtime kills the plugin mid-ADD (a timeout), then cleans
		// up with DEL as the specification says; meanwhile nothing the
		// half-done ADD took may be handed to another container.
		ns := c.lab.Netns("killed")
		for i := range 5 {
			id := fmt.Sprintf("killed%d", i)
			cmd := exec.Command(cniBin)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=ADD", "CNI_CONTAINERID=" + id,
				"CNI_NETNS=" + ns.Path, "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin"}
			cmd.Stdin = bytes.NewReader(conf)
			must(t, cmd.Start())
			time.Sleep(time.Duration(i*3) * time.Millisecond)
			cmd.Process.Kill()
			cmd.Wait()
			// Another container, added now, gets none of its addresses.
			other := c.lab.Netns(fmt.Sprintf("other%d", i))
			res, err := cniAdd(t, conf, other, "other"+id, "eth0")
			if err != nil {
				t.Fatal(err)
			}
			if ep, ok := containerEndpoints(t, c, 0)[id]; ok {
				for _, ip := range res.IPs {
					if a := ip.Address.IP.String(); a == ep.IP.String() || a == ep.IP6.String() {
						t.Fatalf("%s given to %s while the killed ADD of %s holds it", a, "other"+id, id)
					}
				}
			}
			must(t, cniDel(t, conf, ns.Path, id, "eth0"))
			must(t, cniDel(t, conf, other.Path, "other"+id, "eth0"))
			if _, ok := containerEndpoints(t, c, 0)[id]; ok {
				t.Fatalf("%s still attached after DEL", id)
			}
		}
	})

	t.Run("agent killed and restarted", func(t *testing.T) {
		// kill -9: the lease file was written before ADD answered, so the
		// restarted agent knows ctr1's addresses and gives them to no one.
		c.agents[0].Signal(syscall.SIGKILL)
		c.agents[0].Wait(5 * time.Second)
		c.agents[0] = c.lab.Start(c.node[0], "agent1b", vxdpBin, "agent", "--config", c.configs[0], "--socket", c.sockets[0])
		c.waitReady(0)
		c.mustPing("ctr1", "10.1.2.20")
		ctr7 := c.lab.Netns("ctr7")
		res, err := cniAdd(t, conf, ctr7, "ctr7", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range res.IPs {
			for _, old := range res1.IPs {
				if ip.Address.IP.Equal(old.Address.IP) {
					t.Fatalf("restarted agent gave %s to ctr7; it is ctr1's", ip.Address.IP)
				}
			}
		}
		// A clean stop removes the devices; the next agent brings the
		// containers' interfaces back from the leases.
		c.agents[0].Signal(syscall.SIGTERM)
		if code, err := c.agents[0].Wait(15 * time.Second); code != 0 {
			t.Fatalf("agent stop: %d %v", code, err)
		}
		c.agents[0] = c.lab.Start(c.node[0], "agent1c", vxdpBin, "agent", "--config", c.configs[0], "--socket", c.sockets[0])
		c.waitReady(0)
		c.mustPing("ctr1", "fd00:1:2::20")
		pconf := withPrev(t, conf, res1)
		if err := cniCheck(t, pconf, ctr1.Path, "ctr1-0123456789abcdef", "eth0"); err != nil {
			t.Errorf("CHECK after a clean restart: %v", err)
		}
		// The agent lost its state (the directory wiped while it was
		// down): DEL still succeeds.
		c.agents[0].Signal(syscall.SIGKILL)
		c.agents[0].Wait(5 * time.Second)
		if _, err := os.Stat(c.stateDir("node1")); err != nil {
			t.Fatalf("node1's state directory: %v", err)
		}
		must(t, os.RemoveAll(c.stateDir("node1")))
		c.agents[0] = c.lab.Start(c.node[0], "agent1d", vxdpBin, "agent", "--config", c.configs[0], "--socket", c.sockets[0], "--cleanup")
		c.agents[0].Wait(15 * time.Second)
		c.agents[0] = c.lab.Start(c.node[0], "agent1e", vxdpBin, "agent", "--config", c.configs[0], "--socket", c.sockets[0])
		c.waitReady(0)
		must(t, cniDel(t, conf, ctr7.Path, "ctr7", "eth0"))
		must(t, cniDel(t, conf, ctr1.Path, "ctr1-0123456789abcdef", "eth0"))
	})
}

// A pod CIDR with no address left: ADD fails with the plugin-specific
// code 100 and says so, and a DEL makes room again.
func TestCNIPodCIDRExhausted(t *testing.T) {
	c := newLab(t, [2]string{"10.1.1.0/29", "10.1.2.0/24"}, [2]string{})
	c.configs[0] = c.writeConfig("node1", 0, 1, " []")
	c.configs[1] = c.writeConfig("node2", 1, 0, " []")
	c.startAgents()
	conf := cniConf(c, 0, "1.1.0", "")
	// 10.1.1.1 is the host's, .7 the broadcast address: .2 to .6 for
	// containers.
	nss := map[int]*nstest.Netns{}
	for i := range 5 {
		ns := c.lab.Netns(fmt.Sprintf("full%d", i))
		nss[i] = ns
		if _, err := cniAdd(t, conf, ns, fmt.Sprintf("full%d", i), "eth0"); err != nil {
			t.Fatalf("container %d of 5: %v", i+1, err)
		}
	}
	last := c.lab.Netns("full5")
	_, err := cniAdd(t, conf, last, "full5", "eth0")
	if cniCode(err) != 100 || !strings.Contains(fmt.Sprint(err), "10.1.1.0/29") || !strings.Contains(fmt.Sprint(err), "no free address") {
		t.Fatalf("ADD to a full pod CIDR: %v (code %d), want code 100 naming the CIDR", err, cniCode(err))
	}
	if out := last.MustRun(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("a refused ADD left an interface:\n%s", out)
	}
	must(t, cniDel(t, conf, nss[2].Path, "full2", "eth0"))
	res, err := cniAdd(t, conf, last, "full5", "eth0")
	if err != nil {
		t.Fatalf("ADD after a DEL made room: %v", err)
	}
	if got := res.IPs[0].Address.IP.String(); got != "10.1.1.4" {
		t.Errorf("the freed address is 10.1.1.4, got %s", got)
	}
}
