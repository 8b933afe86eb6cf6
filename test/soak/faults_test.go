package soak

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// faultKinds is the schedule, repeated: one fault every SOAK_FAULT_EVERY,
// each on the next node in turn.
var faultKinds = []string{"kill9-restart", "sighup-valid", "sighup-invalid", "endpoint-churn", "policy-flip", "underlay-flap", "node-churn",
	"mtu-change", "etcd-restart", "disk-full", "node-outage"}

// flapDown is how long underlay-flap keeps a node's underlay link down.
const flapDown = time.Second

// churnCycles is how many add/delete cycles one endpoint-churn fault runs.
const churnCycles = 3

// inject runs one fault against n and returns its window. Its settle time
// is included, so that what it disturbs falls inside the window.
func (s *soak) inject(kind string, n *node) faultWindow {
	w := faultWindow{Kind: kind, Node: n.i, From: time.Now()}
	var err error
	switch kind {
	case "kill9-restart":
		w.Action, err = s.killRestart(n)
	case "sighup-valid":
		w.Action, err = s.hupValid(n)
	case "sighup-invalid":
		w.Action, err = s.hupInvalid(n)
	case "endpoint-churn":
		w.Action, err = s.endpointChurn(n)
	case "policy-flip":
		w.Action, err = s.policyFlip(n)
	case "underlay-flap":
		w.Action, err = s.underlayFlap(n)
	case "node-churn":
		w.Action, err = s.nodeChurn(n)
	case "mtu-change":
		w.Action, err = s.mtuChange(n)
	case "etcd-restart":
		w.Action, err = s.etcdRestart(n)
	case "disk-full":
		w.Action, err = s.diskFull(n)
	case "node-outage":
		w.Action, err = s.nodeOutage(n)
	}
	if err != nil {
		w.Err = err.Error()
	}
	time.Sleep(settle)
	w.To = time.Now()
	return w
}

// killRestart: SIGKILL the agent, start it again on the same files; the
// pods keep their devices and the streams must not break. Returns the
// time from the kill to the new agent serving its API.
func (s *soak) killRestart(n *node) (time.Duration, error) {
	s.drops[n.i-1].poll(s) // the counters of this incarnation, before they go
	n.mu.Lock()
	p := n.agent
	n.expecting = true
	n.cpuPast += cpuSeconds(p.Pid())
	n.mu.Unlock()
	start := time.Now()
	n.unavail.agentDown.Store(true)
	defer n.unavail.agentDown.Store(false)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return 0, err
	}
	if _, err := p.Wait(5 * time.Second); errors.Is(err, nstest.ErrWaitTimeout) {
		return 0, fmt.Errorf("agent not gone 5s after SIGKILL: %v", err)
	}
	s.startAgent(n)
	if err := s.waitReady(n, 20*time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// hupValid adds the hup endpoint to the file, or removes it if there, and
// reloads; an added endpoint must become reachable from another node.
// Returns the time from SIGHUP to "configuration reloaded" (and, when an
// endpoint was added, to its first answer).
func (s *soak) hupValid(n *node) (time.Duration, error) {
	n.mu.Lock()
	n.hupOn = !n.hupOn
	on := n.hupOn
	n.mu.Unlock()
	s.writeConfig(n, configValid)
	start := time.Now()
	line, err := s.reload(n)
	if err != nil {
		return 0, err
	}
	if !strings.Contains(line, "configuration reloaded") {
		return 0, fmt.Errorf("valid reload refused: %s", line)
	}
	if on {
		src := s.pods[podName(n.i%nodes+1, 0)]
		if _, err := probe(src, netip.AddrFrom4([4]byte{10, 1, byte(n.i), 40}), 10*time.Second); err != nil {
			return 0, fmt.Errorf("endpoint added by the reload: %v", err)
		}
	} else if out, err := n.hupPod.Run("ip", "-o", "link"); err != nil || strings.Contains(out, "eth0") {
		return 0, fmt.Errorf("endpoint removed by the reload keeps its device: %v\n%s", err, out)
	}
	return time.Since(start), nil
}

// hupInvalid writes a file that does not validate and reloads: the agent
// must refuse it, keep running as before, and the next restart must find
// the valid file again (it is put back at once).
func (s *soak) hupInvalid(n *node) (time.Duration, error) {
	s.writeConfig(n, configInvalid)
	start := time.Now()
	line, err := s.reload(n)
	took := time.Since(start)
	s.writeConfig(n, configValid)
	if err != nil {
		return 0, err
	}
	if !strings.Contains(line, "reload refused") {
		return 0, fmt.Errorf("invalid file not refused: %s", line)
	}
	if _, err := s.cli(n, "status"); err != nil {
		return 0, fmt.Errorf("agent unhealthy after a refused reload: %v", err)
	}
	return took, nil
}

// endpointChurn adds an endpoint through the API, waits until a pod of
// another node reaches it, deletes it and checks its device is gone,
// churnCycles times. Returns the longest add-to-reachable time.
func (s *soak) endpointChurn(n *node) (time.Duration, error) {
	ip := netip.AddrFrom4([4]byte{10, 1, byte(n.i), 50})
	src := s.pods[podName(n.i%nodes+1, 1)]
	var worst time.Duration
	for c := range churnCycles {
		start := time.Now()
		if out, err := s.cli(n, "endpoint", "add", fmt.Sprintf("churn%d", n.i), "--ip", ip.String(),
			"--netns", n.churn.Path, "--identity", strconv.Itoa(podIdentity(n.i, 50))); err != nil {
			return 0, fmt.Errorf("cycle %d: endpoint add: %v\n%s", c, err, out)
		}
		if _, err := probe(src, ip, 10*time.Second); err != nil {
			return 0, fmt.Errorf("cycle %d: endpoint added through the API: %v", c, err)
		}
		worst = max(worst, time.Since(start))
		if out, err := s.cli(n, "endpoint", "del", fmt.Sprintf("churn%d", n.i)); err != nil {
			return 0, fmt.Errorf("cycle %d: endpoint del: %v\n%s", c, err, out)
		}
		if out, _ := n.churn.Run("ip", "-o", "link"); strings.Contains(out, "eth0") {
			return 0, fmt.Errorf("cycle %d: deleted endpoint keeps its device:\n%s", c, out)
		}
	}
	return worst, nil
}

// policyFlip narrows the ingress allow-list of pod a of n to exactly the
// identities that stream or ping to it (which must go on unharmed), checks
// that a pod outside the list is refused and counted, then allows all
// again. Returns the time from allowing all to the refused pod's first
// answer.
func (s *soak) policyFlip(n *node) (time.Duration, error) {
	target := podName(n.i, 0)
	// The policy is per packet, without connection tracking: the
	// answers to what the pod sends (ACKs, echo replies) are ingress too,
	// so the pods it talks to are on the list.
	var allowed []int
	for _, d := range allFlows() {
		if d.dstNode == n.i && d.dstIdx == 0 {
			allowed = append(allowed, podIdentity(d.srcNode, d.srcIdx))
		}
		if d.srcNode == n.i && d.srcIdx == 0 {
			allowed = append(allowed, podIdentity(d.dstNode, d.dstIdx))
		}
	}
	var outsider *nstest.Netns
	for _, m := range s.nodes {
		for idx := range 2 {
			if m.i != n.i && !slices.Contains(allowed, podIdentity(m.i, idx)) && outsider == nil {
				outsider = s.pods[podName(m.i, idx)]
			}
		}
	}
	if outsider == nil {
		return 0, fmt.Errorf("every remote pod talks to %s: no pod is left to be refused", target)
	}
	list := make([]string, len(allowed))
	for i, a := range allowed {
		list[i] = strconv.Itoa(a)
	}
	// An empty list would deny everyone; 9999 is nobody's identity.
	if len(list) == 0 {
		list = []string{"9999"}
	}
	deniedBefore := s.policyDenied(n)
	if out, err := s.cli(n, "endpoint", "policy", target, "--allow-from", strings.Join(list, ",")); err != nil {
		return 0, fmt.Errorf("policy %s: %v\n%s", target, err, out)
	}
	out, err := nstest.Ping(outsider, "-c", "3", "-i", "0.1", "-W", "1", podIP(n.i, 0).String())
	if err == nil && !strings.Contains(out, " 100% packet loss") {
		s.cli(n, "endpoint", "policy", target, "--allow-all")
		return 0, fmt.Errorf("%s reached %s outside its allow-list %v:\n%s", outsider.Name, target, list, out)
	}
	if after := s.policyDenied(n); after < deniedBefore+1 && deniedBefore >= 0 {
		s.cli(n, "endpoint", "policy", target, "--allow-all")
		return 0, fmt.Errorf("policy_denied did not move (%d -> %d) while %s was refused", deniedBefore, after, outsider.Name)
	}
	start := time.Now()
	if out, err := s.cli(n, "endpoint", "policy", target, "--allow-all"); err != nil {
		return 0, fmt.Errorf("policy %s --allow-all: %v\n%s", target, err, out)
	}
	if _, err := probe(outsider, podIP(n.i, 0), 10*time.Second); err != nil {
		return 0, fmt.Errorf("after --allow-all: %v", err)
	}
	return time.Since(start), nil
}

func (s *soak) policyDenied(n *node) int {
	out, err := s.cli(n, "stats", "-o", "json")
	if err != nil {
		return -1
	}
	var st struct {
		Drops map[string]int `json:"drops"`
	}
	if json.Unmarshal([]byte(out), &st) != nil {
		return -1
	}
	return st.Drops["policy_denied"]
}

// probe pings dst from src once every 100 ms until an answer, and returns
// how long that took.
func probe(src *nstest.Netns, dst netip.Addr, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var out string
	var err error
	for time.Since(start) < timeout {
		out, err = nstest.Ping(src, "-c", "1", "-W", "0.1", dst.String())
		if err == nil {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("%s -> %s: no answer within %v: %v\n%s", src.Name, dst, timeout, err, out)
}

// underlayFlap takes the node's underlay link down for flapDown and up
// again: the agent must keep running and its pods reach a remote pod
// again; the streams through it pause and must resume without a lost
// byte. Returns the time from the link coming up to a pod of the node
// reaching a pod of the next node.
func (s *soak) underlayFlap(n *node) (time.Duration, error) {
	n.unavail.linkDown.Store(true)
	if out, err := n.ns.Run("ip", "link", "set", "eth0", "down"); err != nil {
		n.unavail.linkDown.Store(false)
		return 0, fmt.Errorf("link down: %v\n%s", err, out)
	}
	time.Sleep(flapDown)
	out, err := n.ns.Run("ip", "link", "set", "eth0", "up")
	n.unavail.linkDown.Store(false)
	if err != nil {
		return 0, fmt.Errorf("link up: %v\n%s", err, out)
	}
	start := time.Now()
	if _, err := probe(s.pods[podName(n.i, 0)], podIP(n.i%nodes+1, 1), 10*time.Second); err != nil {
		return 0, fmt.Errorf("after the underlay came back: %v", err)
	}
	return time.Since(start), nil
}

// nodeChurn removes the next node from n's file and reloads: n's pods
// must lose that node; a second later the node is put back and reloaded.
// The streams between the two pause and must resume without a lost byte
// (TCP retransmits what was dropped meanwhile). Returns the time from
// the second reload to a pod of n reaching a pod of that node again.
func (s *soak) nodeChurn(n *node) (time.Duration, error) {
	peer := n.i%nodes + 1
	src, dst := s.pods[podName(n.i, 0)], podIP(peer, 1)
	n.unavail.removed.Store(uint32(peer))
	defer n.unavail.removed.Store(0)
	s.writeConfig(n, configNoPeer)
	line, err := s.reload(n)
	if err != nil || !strings.Contains(line, "configuration reloaded") {
		s.writeConfig(n, configValid)
		return 0, fmt.Errorf("removing node%d: %v %s", peer, err, line)
	}
	out, err := nstest.Ping(src, "-c", "2", "-i", "0.2", "-W", "0.5", dst.String())
	removedOK := err != nil || strings.Contains(out, " 100% packet loss")
	time.Sleep(time.Second)
	s.writeConfig(n, configValid)
	start := time.Now()
	if line, err := s.reload(n); err != nil || !strings.Contains(line, "configuration reloaded") {
		return 0, fmt.Errorf("adding node%d back: %v %s", peer, err, line)
	}
	if !removedOK {
		return 0, fmt.Errorf("%s still reached %s with node%d removed:\n%s", src.Name, dst, peer, out)
	}
	if _, err := probe(src, dst, 10*time.Second); err != nil {
		return 0, fmt.Errorf("node%d added back: %v", peer, err)
	}
	return time.Since(start), nil
}
