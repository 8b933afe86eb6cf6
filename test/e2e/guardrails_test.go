package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/internal/nstest"
)

// The lab of TestOperatorMistakes: two nodes on a veth underlay, a pod on
// each in tunnel mode, a VTEP in node1's file, an endpoint and a node added
// to node1 through the API (so they live in its state file), and two
// routes of the operator's own in node1.
//
//	pod1 10.1.1.10 (config)   pod3 10.1.1.30 (api)            pod2 10.1.2.20
//	             \             /                                  |
//	      node1 10.169.72.233 eth0 <---- veth underlay ----> eth0 10.169.72.238 node2
const (
	gNode1IP    = "10.169.72.233"
	gNode2IP    = "10.169.72.238"
	gUnderlay   = "10.169.72.0/24"
	gPod1IP     = "10.1.1.10"
	gPod2IP     = "10.1.2.20"
	gPod3IP     = "10.1.1.30"
	gVTEPCIDR   = "10.3.9.0/24"
	gVTEPAddr   = "10.169.72.236"
	gVTEPMAC    = "82:36:4c:98:2e:56"
	gAPINodeIP  = "10.169.72.242"
	gAPINodePod = "10.1.4.0/24"

	// freeIP is an underlay address nobody holds, freeCIDR a pod CIDR of
	// the cluster pool no node holds: what a mistake pairs its wrong value
	// with, so that the wrong value is the only thing wrong.
	freeIP   = "10.169.72.241"
	freeCIDR = "10.1.9.0/24"
	freePod  = "10.1.1.40"
	otherMAC = "82:36:4c:98:2e:57"

	// The operator's own routes in node1, which vxdp must neither take
	// over nor delete: one inside the cluster pool, one outside it.
	opRouteNode = "10.1.50.0/24"
	opRouteVTEP = "10.60.0.0/24"
)

// guardLab is the running lab with node1's state before the mistakes.
type guardLab struct {
	lab          *nstest.TestLab
	dir          string
	n1, n2       *nstest.Netns
	pod1, pod2   *nstest.Netns
	pod3         *nstest.Netns // holds the endpoint added through the API
	scratch      *nstest.Netns // where mistaken endpoints would go
	cfg1, cfg2   string        // the nodes' files
	cfg1Text     string        // node1's file as the lab started it
	sock1, sock2 string
	stateDir     string
	agent1       *nstest.Proc // node1's agent (replaced by a restart)
	base         nodeView     // node1 before the mistakes
}

// nodeView is what an operator's mistake must leave as it was in node1:
// the kernel's routes, links and addresses, and the agent's tables.
type nodeView struct {
	routes, links, addrs string
	nodes, eps, vteps    string
}

func (v nodeView) diff(w nodeView) string {
	var b strings.Builder
	for _, p := range []struct{ what, a, b string }{
		{"ip route show table all", v.routes, w.routes}, {"ip -o link", v.links, w.links}, {"ip -o addr", v.addrs, w.addrs},
		{"vxdp node list -o json", v.nodes, w.nodes}, {"vxdp endpoint list -o json", v.eps, w.eps},
		{"vxdp vtep list -o json", v.vteps, w.vteps},
	} {
		if p.a != p.b {
			fmt.Fprintf(&b, "%s:\n%s\n", p.what, diffLines(p.a, p.b))
		}
	}
	return b.String()
}

// TestOperatorMistakes walks the mistakes an operator makes through the
// CLI, the API, the configuration file with SIGHUP, the agent's start,
// a hand-edited state file and `--cleanup`: each one is refused the way
// the contract says (exit 2 for invalid input, 1 for a runtime failure;
// 4xx and a JSON error naming the API field), and leaves node1's routes,
// links, addresses and tables as they were and traffic flowing. Last, a
// clean stop warns of nothing and removes everything vxdp made and nothing
// else.
func TestOperatorMistakes(t *testing.T) {
	g := newGuardLab(t)
	long := strings.Repeat("n", 300)

	t.Run("cli", func(t *testing.T) {
		for _, m := range badNodes(long) {
			t.Run("node add: "+m.why, func(t *testing.T) {
				g.cliRefused(t, m.code, m.value, "node", "add", m.name, "--ip", m.ip, "--pod-cidr", m.cidr)
			})
		}
		for _, m := range badVTEPs() {
			t.Run("vtep add: "+m.why, func(t *testing.T) {
				g.cliRefused(t, m.code, m.value, "vtep", "add", m.cidr, "--endpoint", m.endpoint, "--mac", m.mac)
			})
		}
		for _, m := range badEndpoints(g, long) {
			t.Run("endpoint add: "+m.why, func(t *testing.T) {
				args := []string{"endpoint", "add", m.req.Name, "--ip", m.req.IP, "--netns", m.req.Netns}
				if m.req.Identity != "" {
					args = append(args, "--identity", m.req.Identity)
				}
				if m.req.Ifname != "" {
					args = append(args, "--ifname", m.req.Ifname)
				}
				if m.req.AllowFrom != nil {
					args = append(args, "--allow-from", strings.Join(m.req.AllowFrom, ","))
				}
				g.cliRefused(t, m.code, m.value, args...)
			})
		}
		for _, m := range []struct {
			why   string
			args  []string
			code  int
			value string
		}{
			{"endpoint del of an unknown name", []string{"endpoint", "del", "nosuch"}, 1, "nosuch"},
			{"node del of an unknown name", []string{"node", "del", "nosuch"}, 1, "nosuch"},
			{"vtep del of an unknown CIDR", []string{"vtep", "del", "10.4.0.0/24"}, 1, "10.4.0.0/24"},
			{"policy of an unknown endpoint", []string{"endpoint", "policy", "nosuch", "--allow-all"}, 1, "nosuch"},
			{"policy with empty members", []string{"endpoint", "policy", "pod1", "--allow-from", ",,,"}, 2, ""},
			{"node add --file of a list with a node at 0.0.0.0", []string{"node", "add", "--file", g.nodeFile(t)}, 2, "0.0.0.0"},
		} {
			t.Run(m.why, func(t *testing.T) { g.cliRefused(t, m.code, m.value, m.args...) })
		}
	})

	// A capture the agent refuses, or the CLI does, leaves an existing
	// file as it was.
	t.Run("cli: capture", func(t *testing.T) {
		keep := filepath.Join(g.dir, "keep.pcap")
		write(t, keep, "precious")
		for _, m := range []struct {
			why  string
			args []string
			code int
		}{
			{"unknown pod", []string{"--point", "pod:nosuch"}, 1},
			{"unknown point", []string{"--point", "bogus"}, 2},
			{"negative count", []string{"--point", "underlay", "--count", "-1"}, 2},
			{"count not a number", []string{"--point", "underlay", "--count", "x"}, 2},
		} {
			t.Run(m.why, func(t *testing.T) {
				g.cliRefused(t, m.code, "", append(append([]string{"capture"}, m.args...), "-w", keep)...)
				if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
					t.Errorf("the refused capture changed %s: %q, %v", keep, b, err)
				}
			})
		}
	})

	// The takeover: a pod or VTEP CIDR whose route would replace
	// the node's connected underlay route, or one the operator made.
	// Refused, the route stays, and a pod's packet to the underlay does
	// not start a loop between vxdp and the kernel.
	t.Run("route takeover", func(t *testing.T) {
		for _, m := range []struct {
			why, route string
			args       []string
			codes      []int
			del        string // what to delete should the add be accepted
		}{
			{"node whose pod CIDR is the underlay subnet", gUnderlay,
				[]string{"node", "add", "x", "--ip", "10.169.72.253", "--pod-cidr", gUnderlay}, []int{2}, "/v1/nodes/x"},
			{"vtep whose CIDR is the underlay subnet", gUnderlay,
				[]string{"vtep", "add", gUnderlay, "--endpoint", "10.169.72.253", "--mac", otherMAC}, []int{2}, "/v1/vteps/" + gUnderlay},
			{"node whose pod CIDR has the operator's route", opRouteNode,
				[]string{"node", "add", "opnode", "--ip", "10.169.72.244", "--pod-cidr", opRouteNode}, []int{1, 2}, "/v1/nodes/opnode"},
			{"vtep whose CIDR has the operator's route", opRouteVTEP,
				[]string{"vtep", "add", opRouteVTEP, "--endpoint", "10.169.72.235", "--mac", otherMAC}, []int{1, 2}, "/v1/vteps/" + opRouteVTEP},
		} {
			t.Run(m.why, func(t *testing.T) {
				route := g.ip(t, "route", "show", m.route)
				out, code := g.cli(m.args...)
				if !slices.Contains(m.codes, code) {
					t.Errorf("vxdp %s: exit %d, want %v\n%s", strings.Join(m.args, " "), code, m.codes, out)
				}
				if now := g.ip(t, "route", "show", m.route); now != route {
					t.Errorf("the route %q became %q", strings.TrimSpace(route), strings.TrimSpace(now))
				}
				// With the route in place these go to the kernel and out of
				// eth0, unanswered; taken, they go round between vxdp and
				// the kernel until the dataplane finds no route.
				before := dropCount(t, g.sock1, "no_route")
				for _, dst := range []string{"10.169.72.253", "10.169.72.200"} {
					nstest.Ping(g.pod1, "-c", "1", "-W", "0.3", dst)
				}
				if n := dropCount(t, g.sock1, "no_route") - before; n != 0 {
					t.Errorf("pings to the underlay cost %d no_route drops: they went round", n)
				}
				if code == 0 {
					// Taken: the least vxdp owes is to give it back.
					g.apiCall(t, "DELETE", m.del, nil)
					if now := g.ip(t, "route", "show", m.route); now != route {
						t.Errorf("after the delete, the route %q is %q", strings.TrimSpace(route), strings.TrimSpace(now))
					}
				}
				g.intact(t)
			})
		}
	})

	t.Run("api", func(t *testing.T) {
		for _, m := range badNodes(long) {
			t.Run("POST /v1/nodes: "+m.why, func(t *testing.T) {
				body := mustMarshal(t, api.NodeRequest{Name: m.name, IP: m.ip, PodCIDR: m.cidr})
				g.apiRefused(t, "POST", "/v1/nodes", body, []int{m.status}, m.field, m.value)
			})
		}
		for _, m := range badVTEPs() {
			t.Run("POST /v1/vteps: "+m.why, func(t *testing.T) {
				body := mustMarshal(t, api.VTEPRequest{CIDR: m.cidr, Endpoint: m.endpoint, MAC: m.mac})
				g.apiRefused(t, "POST", "/v1/vteps", body, []int{m.status}, m.field, m.value)
			})
		}
		for _, m := range badEndpoints(g, long) {
			if m.status == 0 {
				continue // a runtime failure; the CLI's walk covers it
			}
			t.Run("POST /v1/endpoints: "+m.why, func(t *testing.T) {
				g.apiRefused(t, "POST", "/v1/endpoints", mustMarshal(t, m.req), []int{m.status}, m.field, m.value)
			})
		}
		node := `{"name": "n9", "ip": "` + freeIP + `", "pod_cidr": "` + freeCIDR + `"}`
		vtep := `{"cidr": "` + gVTEPCIDR + `", "endpoint": "` + gVTEPAddr + `", "mac": "` + gVTEPMAC + `"}`
		for _, m := range []struct {
			why, method, path, body string
			status                  []int
			field                   string
		}{
			{"null node", "POST", "/v1/nodes", "null", []int{400}, ""},
			{"null endpoint", "POST", "/v1/endpoints", "null", []int{400}, ""},
			{"null vtep", "POST", "/v1/vteps", "null", []int{400}, ""},
			{"null vtep table", "PUT", "/v1/vteps", "null", []int{400}, ""},
			{"null policy", "PUT", "/v1/endpoints/pod1/policy", "null", []int{400}, ""},
			{"empty body", "POST", "/v1/nodes", "", []int{400}, ""},
			{"truncated object", "POST", "/v1/nodes", `{"name": "n9"`, []int{400}, ""},
			{"a second object after the node", "POST", "/v1/nodes", node + ` {"name": "n10"}`, []int{400}, ""},
			{"garbage after the node", "POST", "/v1/nodes", node + " x", []int{400}, ""},
			{"a second list after the list", "POST", "/v1/nodes", "[" + node + "] []", []int{400}, ""},
			{"garbage after the vtep", "POST", "/v1/vteps", `{"cidr": "10.3.0.0/24", "endpoint": "10.169.72.235", "mac": "` + otherMAC + `"} x`, []int{400}, ""},
			{"unknown field podCIDR", "POST", "/v1/nodes", `{"name": "n9", "ip": "` + freeIP + `", "podCIDR": "` + freeCIDR + `"}`, []int{400}, "podCIDR"},
			{"unknown field namespace", "POST", "/v1/endpoints", `{"name": "e", "ip": "` + freePod + `", "namespace": "` + g.scratch.Path + `"}`, []int{400}, "namespace"},
			{"unknown field deny", "PUT", "/v1/endpoints/pod1/policy", `{"allow_from": ["1000"], "deny": ["2000"]}`, []int{400}, "deny"},
			{"a list with a node over the underlay", "POST", "/v1/nodes",
				"[" + node + `, {"name": "n10", "ip": "10.169.72.243", "pod_cidr": "10.169.72.128/26"}]`, []int{400}, "pod_cidr"},
			{"a list with a node at 0.0.0.0", "POST", "/v1/nodes",
				"[" + node + `, {"name": "n10", "ip": "0.0.0.0", "pod_cidr": "10.1.10.0/24"}]`, []int{400}, "ip"},
			{"a list naming a node twice", "POST", "/v1/nodes",
				"[" + node + `, {"name": "n9", "ip": "10.169.72.243", "pod_cidr": "10.1.10.0/24"}]`, []int{400, 409}, ""},
			{"a vtep table with a CIDR over the underlay", "PUT", "/v1/vteps",
				"[" + vtep + `, {"cidr": "` + gUnderlay + `", "endpoint": "10.169.72.250", "mac": "` + otherMAC + `"}]`, []int{400}, "cidr"},
			{"a vtep table with an endpoint at 0.0.0.0", "PUT", "/v1/vteps",
				"[" + vtep + `, {"cidr": "10.3.0.0/24", "endpoint": "0.0.0.0", "mac": "` + otherMAC + `"}]`, []int{400}, "endpoint"},
			{"policy with empty members", "PUT", "/v1/endpoints/pod1/policy", `{"allow_from": ["", ""]}`, []int{400}, "allow_from"},
			{"policy allowing and allowing all", "PUT", "/v1/endpoints/pod1/policy", `{"allow_from": ["1000"], "allow_all": true}`, []int{400}, "allow_from"},
			{"policy of an unknown endpoint", "PUT", "/v1/endpoints/nosuch/policy", `{"allow_all": true}`, []int{404}, ""},
			{"delete an unknown node", "DELETE", "/v1/nodes/nosuch", "", []int{404}, ""},
			{"delete an unknown endpoint", "DELETE", "/v1/endpoints/nosuch", "", []int{404}, ""},
			{"delete an unknown vtep", "DELETE", "/v1/vteps/10.4.0.0/24", "", []int{404}, ""},
			{"delete a vtep that is no CIDR", "DELETE", "/v1/vteps/bogus/24", "", []int{400}, "cidr"},
			{"capture at an unknown point", "GET", "/v1/capture?point=bogus", "", []int{400}, "point"},
			{"capture with a negative count", "GET", "/v1/capture?point=underlay&count=-1", "", []int{400}, "count"},
			{"monitor of an unknown type", "GET", "/v1/monitor?type=trace", "", []int{400}, "type"},
			{"unknown path", "GET", "/v1/nope", "", []int{404}, ""},
			{"unknown version", "GET", "/v2/status", "", []int{404}, ""},
		} {
			t.Run(m.method+" "+m.why, func(t *testing.T) {
				var body []byte
				if m.method == "POST" || m.method == "PUT" {
					body = []byte(m.body)
				}
				g.apiRefused(t, m.method, m.path, body, m.status, m.field, "")
			})
		}
		// Wrong methods: 405 with Allow, as JSON like every other error.
		for _, m := range []struct{ method, path, allow string }{
			{"PATCH", "/v1/nodes", "POST"},
			{"PUT", "/v1/nodes", "GET"},
			{"DELETE", "/v1/status", "GET"},
			{"POST", "/v1/tunnels", "GET"},
			{"GET", "/v1/nodes/node2", "DELETE"},
			{"POST", "/v1/endpoints/pod1", "DELETE"},
		} {
			t.Run(m.method+" "+m.path, func(t *testing.T) {
				_, hdr, _ := g.apiRefused(t, m.method, m.path, nil, []int{405}, "", "")
				if allow := hdr.Get("Allow"); !strings.Contains(allow, m.allow) {
					t.Errorf("Allow %q, want it to list %s", allow, m.allow)
				}
			})
		}
		// Bodies larger than the request can need: refused whole, before
		// anything is decoded.
		for _, m := range []struct {
			method, path string
			size         int
		}{
			{"POST", "/v1/endpoints", 128 << 10},
			{"PUT", "/v1/endpoints/pod1/policy", 128 << 10},
			{"POST", "/v1/vteps", 128 << 10},
			{"PUT", "/v1/vteps", 5 << 20},
			{"POST", "/v1/nodes", 17 << 20},
		} {
			t.Run(fmt.Sprintf("%s %s of %d KiB", m.method, m.path, m.size>>10), func(t *testing.T) {
				body := []byte(`{"name": "` + strings.Repeat("x", m.size) + `"}`)
				g.apiRefused(t, m.method, m.path, body, []int{400, 413}, "", "")
			})
		}
	})

	t.Run("file and SIGHUP", func(t *testing.T) {
		withNode := func(node string) string {
			return strings.Replace(g.cfg1Text, "nodes:\n", "nodes:\n  - "+node+"\n", 1)
		}
		for _, m := range []struct {
			why, file string
			want      []string // in the refusal's log line
		}{
			{"a node at 0.0.0.0", withNode("{name: node3, ip: 0.0.0.0, pod-cidr: 10.1.3.0/24}"), []string{"nodes[0].ip", "0.0.0.0"}},
			{"a node whose pod CIDR takes the underlay", withNode("{name: node3, ip: 10.169.72.240, pod-cidr: 10.169.72.128/26}"), []string{"10.169.72.128/26"}},
			{"an endpoint named with a slash", strings.Replace(g.cfg1Text, "name: pod1,", "name: pod/1,", 1), []string{"endpoints[0].name", "pod/1"}},
			{"a file that does not parse", strings.Replace(g.cfg1Text, "nodes:\n", "nodes: [\n", 1), []string{g.cfg1}},
			{"a key that needs a restart", strings.Replace(g.cfg1Text, "underlay: udp", "underlay: afxdp", 1), []string{"underlay", "restart"}},
			{"a busy-poll over 100ms", "busy-poll: 1s\n" + g.cfg1Text, []string{"busy-poll", "100ms"}},
			{"a niceness out of range", "nice: -21\n" + g.cfg1Text, []string{"nice", "-20 to 19"}},
		} {
			t.Run(m.why, func(t *testing.T) {
				line := g.reload(t, m.file)
				if !strings.Contains(line, "reload refused") {
					t.Errorf("SIGHUP with %s was not refused:\n%s", m.why, line)
				}
				for _, w := range m.want {
					if !strings.Contains(line, w) {
						t.Errorf("the refusal does not name %q:\n%s", w, line)
					}
				}
				g.intact(t)
			})
		}
		// A valid change is applied, and taking it back gives node1 back
		// exactly as it was.
		t.Run("a valid file adds a node, and the old file removes it", func(t *testing.T) {
			line := g.reload(t, withNode("{name: node3, ip: 10.169.72.240, pod-cidr: 10.1.3.0/24}"))
			if !strings.Contains(line, "configuration reloaded") || !strings.Contains(line, "node3") {
				t.Fatalf("the valid file was not applied:\n%s", line)
			}
			var nodes []api.Node
			out, _ := g.cli("node", "list", "-o", "json")
			mustJSON(t, out, &nodes)
			if !slices.ContainsFunc(nodes, func(n api.Node) bool { return n.Name == "node3" && n.Source == "config" }) {
				t.Errorf("node3 not listed from the file:\n%s", out)
			}
			if r := g.ip(t, "route", "show", "10.1.3.0/24"); !strings.Contains(r, "vxdp_host") {
				t.Errorf("no route to node3's pods: %q", r)
			}
			g.reach(t)
			if line := g.reload(t, g.cfg1Text); !strings.Contains(line, "configuration reloaded") {
				t.Fatalf("the old file was not applied:\n%s", line)
			}
			g.intact(t)
		})
		// busy-poll and nice apply to the running agent: every thread
		// takes the niceness, every worker the budget; the old file puts
		// back the defaults.
		t.Run("busy-poll and nice change without a restart", func(t *testing.T) {
			busyPoll := func() api.Offload {
				var st api.Stats
				out, _ := g.cli("stats", "-o", "json")
				mustJSON(t, out, &st)
				for _, d := range st.Devices {
					for _, o := range d.Offloads {
						if d.Device == "pod1" && o.Name == "busy-poll" {
							return o
						}
					}
				}
				t.Fatalf("no busy-poll offload on pod1:\n%s", out)
				return api.Offload{}
			}
			checkNice(t, g.agent1.Pid(), -10)
			if o := busyPoll(); !o.Active || !strings.Contains(o.Reason, "200µs") {
				t.Errorf("busy-poll by default: %+v, want active with 200µs", o)
			}
			line := g.reload(t, "busy-poll: 20us\nnice: -5\n"+g.cfg1Text)
			if !strings.Contains(line, "configuration reloaded") || !strings.Contains(line, "busy-poll 20") || !strings.Contains(line, "nice -5") {
				t.Fatalf("the keys were not applied:\n%s", line)
			}
			checkNice(t, g.agent1.Pid(), -5)
			if o := busyPoll(); !o.Active || !strings.Contains(o.Reason, "20µs") {
				t.Errorf("busy-poll after the reload: %+v", o)
			}
			g.reach(t)
			if line := g.reload(t, g.cfg1Text); !strings.Contains(line, "configuration reloaded") {
				t.Fatalf("the old file was not applied:\n%s", line)
			}
			checkNice(t, g.agent1.Pid(), -10)
			if o := busyPoll(); !o.Active || !strings.Contains(o.Reason, "200µs") {
				t.Errorf("busy-poll after the old file: %+v, want the default 200µs back", o)
			}
			g.intact(t)
		})
	})

	t.Run("agent start", func(t *testing.T) {
		other := filepath.Join(g.dir, "other.sock")
		bad := filepath.Join(g.dir, "bad.yaml")
		write(t, bad, strings.Replace(g.cfg1Text, "nodes:\n", "nodes:\n  - {name: node3, ip: 0.0.0.0, pod-cidr: 10.1.3.0/24}\n", 1))
		lock := g.lockPath()
		lockBefore, err := os.ReadFile(lock)
		if err != nil {
			t.Fatalf("the running agent holds no lock file: %v", err)
		}
		for _, m := range []struct {
			why  string
			args []string
			code int
			want []string
		}{
			{"with an invalid file", []string{"--config", bad, "--socket", other}, 2, []string{"nodes[0].ip", "0.0.0.0"}},
			{"on a missing underlay device", []string{"--config", g.cfg1, "--socket", other, "--device", "nosuch0"}, 1, []string{"device nosuch0"}},
			{"on the running agent's socket", []string{"--config", g.cfg1, "--socket", g.sock1}, 1, []string{g.sock1}},
			{"on the running agent's state", []string{"--config", g.cfg1, "--socket", other}, 1, []string{"an agent is running"}},
		} {
			t.Run(m.why, func(t *testing.T) {
				out, code := runAgent(t, g.n1, m.args...)
				checkFailure(t, out, code, m.code, m.want)
				if _, err := os.Stat(other); !os.IsNotExist(err) {
					t.Errorf("the failed start left %s: %v", other, err)
					os.Remove(other)
				}
				if now, err := os.ReadFile(lock); err != nil || !bytes.Equal(now, lockBefore) {
					t.Errorf("the failed start changed the lock file %s: %q -> %q, %v", lock, lockBefore, now, err)
				}
				g.intact(t)
			})
		}
	})

	// A state file edited by hand: the restarted agent skips, and says
	// so, what it would refuse through the API, and adopts the rest.
	t.Run("state file edited by hand", func(t *testing.T) {
		podBad := g.lab.Netns("podbad")
		must(t, g.agent1.Signal(syscall.SIGKILL))
		if _, err := g.agent1.Wait(5 * time.Second); err == nil {
			t.Fatal("agent1 survived SIGKILL")
		}
		path := g.statePath()
		var st map[string]any
		b, err := os.ReadFile(path)
		must(t, err)
		must(t, json.Unmarshal(b, &st))
		nodes, _ := st["nodes"].([]any)
		st["nodes"] = append(nodes,
			map[string]any{"name": "bad0", "ip": "0.0.0.0", "pod_cidr": "10.1.7.0/24", "source": "api"},
			map[string]any{"name": "badunder", "ip": "10.169.72.243", "pod_cidr": "10.169.72.128/26", "source": "api"})
		eps, _ := st["endpoints"].([]any)
		st["endpoints"] = append(eps, map[string]any{"name": "bad/name", "ip": "10.1.1.50", "netns": podBad.Path,
			"ifname": "eth0", "identity": 256, "allow_from": nil, "device": "", "mtu": 1450, "from_api": true})
		b, err = json.Marshal(st)
		must(t, err)
		must(t, os.WriteFile(path, b, 0o600))

		g.agent1 = g.lab.Start(g.n1, "agent1-restarted", vxdpBin, "agent", "--config", g.cfg1, "--socket", g.sock1)
		waitAgent(t, g.agent1, g.sock1)
		log := g.agent1.Output()
		for _, name := range []string{"bad0", "badunder", "bad/name"} {
			if !hasLogLine(log, "warn", name) {
				t.Errorf("no warning naming %s, skipped from the state:\n%s", name, log)
			}
		}
		if !hasLogLine(log, "info", "endpoint device adopted", `"pod3"`) {
			t.Errorf("pod3's device not adopted:\n%s", log)
		}
		if out, err := podBad.Run("ip", "-o", "link", "show", "eth0"); err == nil {
			t.Errorf("an endpoint of an invalid name got a device:\n%s", out)
		}
		if b, err := os.ReadFile(path); err != nil || bytes.Contains(b, []byte("bad0")) || bytes.Contains(b, []byte("badunder")) || bytes.Contains(b, []byte("bad/name")) {
			t.Errorf("the state still holds the skipped entries: %v\n%s", err, b)
		}
		g.intact(t)
	})

	t.Run("cleanup against the live agent", func(t *testing.T) {
		for _, extra := range [][]string{nil, {"--force"}} {
			args := append([]string{"agent", "--config", g.cfg1, "--socket", g.sock1, "--cleanup"}, extra...)
			out, err := g.n1.Run(append([]string{vxdpBin}, args...)...)
			if exitCode(err) != 1 || !strings.Contains(out, "an agent is running") {
				t.Errorf("vxdp %s: exit %d, want 1 saying an agent is running\n%s", strings.Join(args, " "), exitCode(err), out)
			}
			for _, p := range []*nstest.Netns{g.pod1, g.pod3} {
				if out, err := p.Run("ip", "link", "show", "eth0"); err != nil {
					t.Errorf("the refused cleanup removed %s's device: %v\n%s", p.Name, err, out)
				}
			}
			for _, f := range []string{g.sock1, g.statePath(), g.lockPath()} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("the refused cleanup removed %s: %v", f, err)
				}
			}
			g.intact(t)
		}
	})

	t.Run("clean stop", func(t *testing.T) {
		opRoutes := g.ip(t, "route", "show", opRouteNode) + g.ip(t, "route", "show", opRouteVTEP)
		// The restarted agent's first tunnel-gso probe may go to apinode,
		// which nobody answers: its warning, a second after the start,
		// belongs to the run, not to the stop, so the stop waits for it.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out := g.agent1.Output()
			if hasLogLine(out, "info", "tunnel-gso: a probe reached") || hasLogLine(out, "warn", "tunnel-gso: probe failed") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no tunnel-gso probe outcome within 5 s of the restart:\n%s", out)
			}
		}
		from := len(g.agent1.Output())
		must(t, g.agent1.Signal(syscall.SIGTERM))
		code, err := g.agent1.Wait(10 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("exit %d, %v\n%s", code, err, g.agent1.Output())
		}
		stop := g.agent1.Output()[from:]
		if !hasLogLine(stop, "info", "agent stopped") {
			t.Errorf("no \"agent stopped\" in the log of the stop:\n%s", stop)
		}
		for _, l := range strings.Split(stop, "\n") {
			if logLevel(l) == "warn" || logLevel(l) == "error" {
				t.Errorf("the clean stop logged: %s", l)
			}
		}
		if out := g.ip(t, "-o", "link"); strings.Contains(out, "vxdp") {
			t.Errorf("vxdp devices left:\n%s", out)
		}
		if out := g.ip(t, "route", "show", "table", "all"); strings.Contains(out, "vxdp_host") || strings.Contains(out, "proto 208") {
			t.Errorf("vxdp routes left:\n%s", out)
		}
		if now := g.ip(t, "route", "show", opRouteNode) + g.ip(t, "route", "show", opRouteVTEP); now != opRoutes {
			t.Errorf("the operator's routes changed:\n%s\nnow:\n%s", opRoutes, now)
		}
		if out := g.ip(t, "route", "show", gUnderlay); !strings.Contains(out, "dev eth0") {
			t.Errorf("the underlay route is gone: %q", out)
		}
		for _, p := range []*nstest.Netns{g.pod1, g.pod3} {
			if out, _ := p.Run("ip", "-o", "link"); strings.Contains(out, "eth0") {
				t.Errorf("%s keeps its device:\n%s", p.Name, out)
			}
		}
		for _, f := range []string{g.sock1, g.statePath(), g.lockPath()} {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("%s left: %v", f, err)
			}
		}
		if out, err := nstest.Ping(g.n1, "-c", "1", "-W", "1", gNode2IP); err != nil {
			t.Errorf("node1 lost the underlay after the stop: %v\n%s", err, out)
		}
	})
}

// newGuardLab builds and starts the lab, adds the API's endpoint and
// node and the operator's routes, and takes node1's view.
func newGuardLab(t *testing.T) *guardLab {
	t.Helper()
	g := &guardLab{lab: nstest.New(t), dir: t.TempDir()}
	g.n1, g.n2 = g.lab.Netns("node1"), g.lab.Netns("node2")
	g.pod1, g.pod2, g.pod3 = g.lab.Netns("pod1"), g.lab.Netns("pod2"), g.lab.Netns("pod3")
	g.scratch = g.lab.Netns("scratch")
	g.lab.Veth(g.n1, "eth0", gNode1IP+"/24", g.n2, "eth0", gNode2IP+"/24", 1500)
	g.stateDir = filepath.Join(g.dir, "state1")
	g.sock1, g.sock2 = filepath.Join(g.dir, "n1.sock"), filepath.Join(g.dir, "n2.sock")
	g.cfg1, g.cfg2 = filepath.Join(g.dir, "node1.yaml"), filepath.Join(g.dir, "node2.yaml")
	g.cfg1Text = fmt.Sprintf(`node-name: node1
node-ip: %s
pod-cidr: 10.1.1.0/24
cluster-pool-ipv4-cidr: 10.1.0.0/16
underlay: udp
state-dir: %s
nodes:
  - {name: node2, ip: %s, pod-cidr: 10.1.2.0/24}
endpoints:
  - {name: pod1, ip: %s, netns: %s, identity: 1000}
enable-vtep: "true"
vtep-endpoint: "%s"
vtep-cidr: "%s"
vtep-mask: "255.255.255.0"
vtep-mac: "%s"
`, gNode1IP, g.stateDir, gNode2IP, gPod1IP, g.pod1.Path, gVTEPAddr, gVTEPCIDR, gVTEPMAC)
	write(t, g.cfg1, g.cfg1Text)
	write(t, g.cfg2, fmt.Sprintf(`node-name: node2
node-ip: %s
pod-cidr: 10.1.2.0/24
cluster-pool-ipv4-cidr: 10.1.0.0/16
underlay: udp
nodes:
  - {name: node1, ip: %s, pod-cidr: 10.1.1.0/24}
endpoints:
  - {name: pod2, ip: %s, netns: %s, identity: 2000}
`, gNode2IP, gNode1IP, gPod2IP, g.pod2.Path))
	g.agent1 = g.lab.Start(g.n1, "agent1", vxdpBin, "agent", "--config", g.cfg1, "--socket", g.sock1)
	agent2 := g.lab.Start(g.n2, "agent2", vxdpBin, "agent", "--config", g.cfg2, "--socket", g.sock2)
	waitAgent(t, g.agent1, g.sock1)
	waitAgent(t, agent2, g.sock2)
	for _, args := range [][]string{
		{"endpoint", "add", "pod3", "--ip", gPod3IP, "--netns", g.pod3.Path, "--identity", "1003"},
		{"node", "add", "apinode", "--ip", gAPINodeIP, "--pod-cidr", gAPINodePod},
	} {
		if out, code := g.cli(args...); code != 0 {
			t.Fatalf("vxdp %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	g.ip(t, "route", "add", opRouteNode, "via", gNode2IP, "dev", "eth0")
	g.ip(t, "route", "add", opRouteVTEP, "via", gNode2IP, "dev", "eth0")
	g.reach(t)
	if out, err := nstest.Ping(g.pod3, "-c", "1", "-W", "1", gPod2IP); err != nil {
		t.Fatalf("pod3 -> pod2: %v\n%s", err, out)
	}
	// The underlay's IPv6 link-local address loses its "tentative" mark
	// once duplicate address detection is done: wait for it, so that the
	// view does not change under the mistakes by itself.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(g.ip(t, "-o", "addr"), "tentative") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	g.base = g.view(t)
	for _, p := range []struct{ what, api string }{{"node", g.base.nodes}, {"endpoint", g.base.eps}, {"vtep", g.base.vteps}} {
		if out, code := g.cli(p.what, "list", "-o", "json"); code != 0 || out != p.api {
			t.Fatalf("vxdp %s list -o json: exit %d\n%s\nthe API says:\n%s", p.what, code, out, p.api)
		}
	}
	return g
}

// cli runs the CLI against node1's agent, bounded, and returns its
// output and exit status.
func (g *guardLab) cli(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, vxdpBin, append([]string{"--socket", g.sock1}, args...)...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out) + "\n[killed after 20 s]", -1
	}
	return string(out), exitCode(err)
}

// cliRefused runs a mistaken command: it must exit code with one line
// "vxdp: ..." naming value (when given), and change nothing.
func (g *guardLab) cliRefused(t *testing.T, code int, value string, args ...string) {
	t.Helper()
	out, got := g.cli(args...)
	if got != code {
		t.Errorf("vxdp %s: exit %d, want %d\n%s", clip(strings.Join(args, " ")), got, code, out)
	}
	if got != 0 {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "vxdp: ") {
			t.Errorf("want one line \"vxdp: ...\", got:\n%s", out)
		}
		if value != "" && !strings.Contains(out, value) {
			t.Errorf("the message does not name %q:\n%s", value, out)
		}
	}
	g.intact(t)
}

// apiRefused sends a mistaken request: the answer must have one of the
// statuses, a JSON body {"error": "..."} naming field (the API's name,
// when given) and value (when given) and no CLI flag; and nothing changes.
func (g *guardLab) apiRefused(t *testing.T, method, path string, body []byte, status []int, field, value string) (int, http.Header, string) {
	t.Helper()
	code, hdr, b := g.apiCall(t, method, path, body)
	msg := checkAPIError(t, fmt.Sprintf("%s %s", method, clip(path)), code, hdr, b, status)
	if msg != "" {
		if field != "" && !namesField(msg, field) {
			t.Errorf("the error does not name the field %s: %q", field, msg)
		}
		if value != "" && !strings.Contains(msg, value) {
			t.Errorf("the error does not name %q: %q", value, msg)
		}
		if regexp.MustCompile(`(^|\s)--[a-z]`).MatchString(msg) {
			t.Errorf("the error names a CLI flag, not the API's field: %q", msg)
		}
	}
	g.intact(t)
	return code, hdr, msg
}

// checkAPIError wants a status among want and a JSON body that is exactly
// {"error": "<message>"}; it returns the message.
func checkAPIError(t *testing.T, what string, code int, hdr http.Header, body []byte, want []int) string {
	t.Helper()
	if !slices.Contains(want, code) {
		t.Errorf("%s: status %d, want one of %v\n%s", what, code, want, clip(string(body)))
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json\n%s", what, ct, clip(string(body)))
	}
	var e map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&e); err != nil {
		t.Errorf("%s: the answer is not JSON: %v\n%s", what, err, clip(string(body)))
		return ""
	}
	msg, _ := e["error"].(string)
	if len(e) != 1 || msg == "" {
		t.Errorf("%s: want {\"error\": \"...\"}, got %s", what, clip(string(body)))
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("%s: the message is not one line: %q", what, msg)
	}
	return msg
}

// namesField reports whether msg names the field as a word of its own.
func namesField(msg, field string) bool {
	return regexp.MustCompile(`(^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(field) + `([^A-Za-z0-9_-]|$)`).MatchString(msg)
}

// apiCall sends one request to node1's agent by hand, so that the body may
// be anything and an answer sent before the body was read is still seen.
func (g *guardLab) apiCall(t *testing.T, method, path string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	c, err := net.DialTimeout("unix", g.sock1, 2*time.Second)
	if err != nil {
		t.Fatalf("%s %s: %v", method, clip(path), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	go func() {
		var h bytes.Buffer
		fmt.Fprintf(&h, "%s %s HTTP/1.1\r\nHost: vxdp\r\nConnection: close\r\n", method, path)
		if body != nil {
			fmt.Fprintf(&h, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
		}
		h.WriteString("\r\n")
		if _, err := c.Write(h.Bytes()); err == nil {
			c.Write(body) // fails once the agent has answered and closed: fine
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, clip(path), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", method, clip(path), err)
	}
	return resp.StatusCode, resp.Header, b
}

// tunnelGSOLine matches the line of vxdp_gso in `ip -o link`.
var tunnelGSOLine = regexp.MustCompile(`(?m)^[0-9]+: vxdp_gso: .*$`)

// view takes node1's view: the kernel's tables by `ip -n` (quicker than
// entering the namespace), the agent's by the API requests behind `vxdp
// node|endpoint|vtep list -o json`, which print the answer as it comes
// (newGuardLab checks they agree).
func (g *guardLab) view(t *testing.T) nodeView {
	t.Helper()
	var v nodeView
	v.routes = g.ip(t, "route", "show", "table", "all")
	// A TUN device's operational state reads UNKNOWN until its carrier
	// has once been off, UP after (an adopted vxdp_host): both are up.
	v.links = strings.ReplaceAll(g.ip(t, "-o", "link"), " state UNKNOWN ", " state UP ")
	// vxdp_gso (tunnel-gso) belongs to the running agent: a restarted
	// agent makes a new one, with another index and address. That it is
	// there, and once, is what counts.
	v.links = tunnelGSOLine.ReplaceAllString(v.links, "N: vxdp_gso: (one, made by the running agent)")
	v.addrs = g.ip(t, "-o", "addr")
	for _, p := range []struct {
		to   *string
		path string
	}{{&v.nodes, "/v1/nodes"}, {&v.eps, "/v1/endpoints"}, {&v.vteps, "/v1/vteps"}} {
		code, _, b := g.apiCall(t, "GET", p.path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: status %d\n%s", p.path, code, b)
		}
		*p.to = string(b)
	}
	return v
}

// ip runs `ip -n node1 args...`.
func (g *guardLab) ip(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", g.n1.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// intact fails t unless node1's agent runs, node1 is as it was before the
// mistakes and traffic flows. What a mistake changed is undone (see
// restore), so that the next mistake is judged on its own.
func (g *guardLab) intact(t *testing.T) {
	t.Helper()
	if !g.agent1.Alive() {
		t.Fatalf("node1's agent exited:\n%s", g.agent1.Output())
	}
	if d := g.base.diff(g.view(t)); d != "" {
		t.Errorf("node1 changed:\n%s", d)
		g.restore(t)
	}
	g.reach(t)
}

// reach pings pod to pod across the overlay and node to node over the
// underlay, a few tries each.
func (g *guardLab) reach(t *testing.T) {
	t.Helper()
	for _, p := range []struct {
		from *nstest.Netns
		to   string
	}{{g.pod1, gPod2IP}, {g.n1, gNode2IP}} {
		var out string
		var err error
		for try := 0; try < 3; try++ {
			if out, err = nstest.Ping(p.from, "-c", "1", "-W", "1", p.to); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("ping %s -> %s: %v\n%s", p.from.Name, p.to, err, out)
		}
	}
}

// restore undoes what an accepted mistake added to node1's tables and
// puts the underlay's and the operator's routes back; what it cannot undo becomes the new
// view, so that later mistakes are not blamed for it.
func (g *guardLab) restore(t *testing.T) {
	t.Helper()
	var baseNodes, nodes []api.Node
	var baseEPs, eps []api.Endpoint
	var baseVTEPs, vteps []api.VTEP
	now := g.view(t)
	mustJSON(t, g.base.nodes, &baseNodes)
	mustJSON(t, now.nodes, &nodes)
	mustJSON(t, g.base.eps, &baseEPs)
	mustJSON(t, now.eps, &eps)
	mustJSON(t, g.base.vteps, &baseVTEPs)
	mustJSON(t, now.vteps, &vteps)
	for _, n := range nodes {
		if !slices.ContainsFunc(baseNodes, func(b api.Node) bool { return b.Name == n.Name }) {
			g.apiCall(t, "DELETE", "/v1/nodes/"+url.PathEscape(n.Name), nil)
		}
	}
	for _, e := range eps {
		if !slices.ContainsFunc(baseEPs, func(b api.Endpoint) bool { return b.Name == e.Name }) {
			g.apiCall(t, "DELETE", "/v1/endpoints/"+url.PathEscape(e.Name), nil)
		}
	}
	for _, v := range vteps {
		if !slices.ContainsFunc(baseVTEPs, func(b api.VTEP) bool { return b.CIDR == v.CIDR }) {
			g.apiCall(t, "DELETE", "/v1/vteps/"+v.CIDR.String(), nil)
		}
	}
	g.ip(t, "route", "replace", gUnderlay, "dev", "eth0", "proto", "kernel", "scope", "link", "src", gNode1IP)
	g.ip(t, "route", "replace", opRouteNode, "via", gNode2IP, "dev", "eth0")
	g.ip(t, "route", "replace", opRouteVTEP, "via", gNode2IP, "dev", "eth0")
	if d := g.base.diff(g.view(t)); d != "" {
		t.Errorf("node1 could not be restored; later mistakes are judged against this:\n%s", d)
		g.base = g.view(t)
	}
}

// reload writes node1's file and sends SIGHUP, and returns the log line
// that says how the reload ended.
func (g *guardLab) reload(t *testing.T, content string) string {
	t.Helper()
	write(t, g.cfg1, content)
	from := len(g.agent1.Output())
	must(t, g.agent1.Signal(syscall.SIGHUP))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(g.agent1.Output()[from:], "\n") {
			if strings.Contains(l, "reload refused") || strings.Contains(l, "configuration reloaded") {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no word of the reload in the log:\n%s", g.agent1.Output()[from:])
	return ""
}

func (g *guardLab) statePath() string {
	return filepath.Join(g.stateDir, "state-"+gNode1IP+".json")
}

func (g *guardLab) lockPath() string {
	return filepath.Join(g.stateDir, "state-"+gNode1IP+".lock")
}

// nodeFile writes a list of nodes whose second entry is at 0.0.0.0.
func (g *guardLab) nodeFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(g.dir, "nodes.yaml")
	write(t, path, "- {name: n9, ip: "+freeIP+", pod-cidr: "+freeCIDR+"}\n- {name: n10, ip: 0.0.0.0, pod-cidr: 10.1.10.0/24}\n")
	return path
}

// badNode is a node request that must be refused: with exit code from
// the CLI, with status from the API, naming field and value.
type badNode struct {
	why, name, ip, cidr string
	field, value        string
	code, status        int
}

func badNodes(long string) []badNode {
	return []badNode{
		{"pod CIDR is the underlay subnet", "x", freeIP, gUnderlay, "pod_cidr", gUnderlay, 2, 400},
		{"pod CIDR holds node1's address", "x", freeIP, "10.169.72.232/30", "pod_cidr", "10.169.72.232/30", 2, 400},
		{"pod CIDR holds the peer's address", "x", freeIP, "10.169.72.236/30", "pod_cidr", "10.169.72.236/30", 2, 400},
		{"pod CIDR is node1's own", "x", freeIP, "10.1.1.0/24", "pod_cidr", "10.1.1.0/24", 2, 400},
		{"pod CIDR outside the cluster pool", "x", freeIP, "10.2.9.0/24", "pod_cidr", "10.2.9.0/24", 2, 400},
		{"pod CIDR with host bits", "x", freeIP, "10.1.9.1/24", "pod_cidr", "10.1.9.1/24", 2, 400},
		{"pod CIDR not a CIDR", "x", freeIP, "10.1.9.0/33", "pod_cidr", "10.1.9.0/33", 2, 400},
		{"ip 0.0.0.0", "x", "0.0.0.0", freeCIDR, "ip", "0.0.0.0", 2, 400},
		{"ip 255.255.255.255", "x", "255.255.255.255", freeCIDR, "ip", "255.255.255.255", 2, 400},
		{"ip 127.0.0.1", "x", "127.0.0.1", freeCIDR, "ip", "127.0.0.1", 2, 400},
		{"ip 224.0.0.1", "x", "224.0.0.1", freeCIDR, "ip", "224.0.0.1", 2, 400},
		{"ip is node1's", "x", gNode1IP, freeCIDR, "ip", gNode1IP, 2, 400},
		{"ip inside node2's pod CIDR", "x", "10.1.2.99", freeCIDR, "ip", "10.1.2.99", 2, 400},
		{"ip not an address", "x", "10.169.72", freeCIDR, "ip", "10.169.72", 2, 400},
		{"name with a slash", "a/b", freeIP, freeCIDR, "name", "a/b", 2, 400},
		{"name of 300 characters", long, freeIP, freeCIDR, "name", "", 2, 400},
		{"name is node1's own", "node1", freeIP, freeCIDR, "name", "node1", 2, 400},
		{"name taken by node2", "node2", freeIP, freeCIDR, "", "node2", 1, 409},
		{"ip taken by node2", "x", gNode2IP, freeCIDR, "", gNode2IP, 1, 409},
	}
}

// badVTEP is a VTEP that must be refused (see badNode).
type badVTEP struct {
	why, cidr, endpoint, mac string
	field, value             string
	code, status             int
}

func badVTEPs() []badVTEP {
	const cidr, ep = "10.3.0.0/24", "10.169.72.235"
	return []badVTEP{
		{"CIDR is the underlay subnet", gUnderlay, "10.169.72.250", otherMAC, "cidr", gUnderlay, 2, 400},
		{"CIDR holds node1's address", "10.169.72.232/30", "10.169.72.250", otherMAC, "cidr", "10.169.72.232/30", 2, 400},
		{"CIDR is node1's pod CIDR", "10.1.1.0/24", ep, otherMAC, "cidr", "10.1.1.0/24", 2, 400},
		{"CIDR inside node2's pod CIDR", "10.1.2.0/25", ep, otherMAC, "cidr", "10.1.2.0/25", 2, 400},
		{"CIDR with host bits", "10.3.0.1/24", ep, otherMAC, "cidr", "10.3.0.1/24", 2, 400},
		{"endpoint 0.0.0.0", cidr, "0.0.0.0", otherMAC, "endpoint", "0.0.0.0", 2, 400},
		{"endpoint 255.255.255.255", cidr, "255.255.255.255", otherMAC, "endpoint", "255.255.255.255", 2, 400},
		{"endpoint 127.0.0.1", cidr, "127.0.0.1", otherMAC, "endpoint", "127.0.0.1", 2, 400},
		{"endpoint 224.0.0.1", cidr, "224.0.0.1", otherMAC, "endpoint", "224.0.0.1", 2, 400},
		{"endpoint is node1", cidr, gNode1IP, otherMAC, "endpoint", gNode1IP, 2, 400},
		{"endpoint is node2", cidr, gNode2IP, otherMAC, "endpoint", gNode2IP, 2, 400},
		{"MAC multicast", cidr, ep, "01:00:5e:00:00:01", "mac", "01:00:5e:00:00:01", 2, 400},
		{"CIDR taken by the configured VTEP", gVTEPCIDR, ep, otherMAC, "", gVTEPCIDR, 1, 409},
	}
}

// badEndpoint is an endpoint request that must be refused (see badNode);
// status 0 leaves it out of the API's walk.
type badEndpoint struct {
	why          string
	req          api.EndpointRequest
	field, value string
	code, status int
}

func badEndpoints(g *guardLab, long string) []badEndpoint {
	ep := func(mod func(r *api.EndpointRequest)) api.EndpointRequest {
		r := api.EndpointRequest{Name: "e", IP: freePod, Netns: g.scratch.Path}
		mod(&r)
		return r
	}
	missing := "/run/netns/" + g.lab.Prefix() + "missing"
	return []badEndpoint{
		{"name of 300 characters", ep(func(r *api.EndpointRequest) { r.Name = long }), "name", "", 2, 400},
		{"name with a slash", ep(func(r *api.EndpointRequest) { r.Name = "a/b" }), "name", "a/b", 2, 400},
		{"name empty", ep(func(r *api.EndpointRequest) { r.Name = "" }), "name", "", 2, 400},
		{"ip outside the pod CIDR", ep(func(r *api.EndpointRequest) { r.IP = "10.9.9.9" }), "ip", "10.9.9.9", 2, 400},
		{"ip is the host address", ep(func(r *api.EndpointRequest) { r.IP = "10.1.1.1" }), "ip", "10.1.1.1", 2, 400},
		{"ip is the network address", ep(func(r *api.EndpointRequest) { r.IP = "10.1.1.0" }), "ip", "10.1.1.0", 2, 400},
		{"ip is the broadcast address", ep(func(r *api.EndpointRequest) { r.IP = "10.1.1.255" }), "ip", "10.1.1.255", 2, 400},
		{"ip taken by pod1", ep(func(r *api.EndpointRequest) { r.IP = gPod1IP }), "", gPod1IP, 1, 409},
		{"name taken by pod1", ep(func(r *api.EndpointRequest) { r.Name = "pod1" }), "", "pod1", 1, 409},
		{"netns that does not exist", ep(func(r *api.EndpointRequest) { r.Netns = missing }), "", missing, 1, 0},
		{"identity below 256", ep(func(r *api.EndpointRequest) { r.Identity = "255" }), "identity", "255", 2, 400},
		{"identity above 2^24-1", ep(func(r *api.EndpointRequest) { r.Identity = "16777216" }), "identity", "16777216", 2, 400},
		{"identity not a number", ep(func(r *api.EndpointRequest) { r.Identity = "lots" }), "identity", "lots", 2, 400},
		{"allow-from of empty members", ep(func(r *api.EndpointRequest) { r.AllowFrom = []string{"", "", "", ""} }), "allow_from", "", 2, 400},
		{"allow-from identity 0", ep(func(r *api.EndpointRequest) { r.AllowFrom = []string{"0"} }), "allow_from", "", 2, 400},
		{"ifname of 16 characters", ep(func(r *api.EndpointRequest) { r.Ifname = "abcdefghijklmnop" }), "ifname", "abcdefghijklmnop", 2, 400},
	}
}

// hasLogLine reports whether log has a line at level holding every one of
// want.
func hasLogLine(log, level string, want ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		if logLevel(l) != level {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// logLevel is the level of one line of the agent's log (zap's console
// form: time, level, message, fields, separated by tabs), or "".
func logLevel(line string) string {
	f := strings.SplitN(line, "\t", 3)
	if len(f) < 3 {
		return ""
	}
	return strings.ToLower(f[1])
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return b
}

// clip shortens what a test prints of a long argument or body.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// checkNice fails the test unless every thread of process pid runs at
// niceness want (field 19 of /proc/<pid>/task/<tid>/stat).
func checkNice(t *testing.T, pid, want int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		// The command name may hold spaces; the fields after it start
		// with the state, field 3.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 17 {
			t.Fatalf("thread %s: short stat %q", task.Name(), b)
		}
		if f[16] != strconv.Itoa(want) {
			t.Errorf("thread %s of process %d at niceness %s, want %d", task.Name(), pid, f[16], want)
		}
	}
}
