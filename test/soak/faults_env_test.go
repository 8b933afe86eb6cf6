package soak

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Faults of the node's surroundings rather than of the agent: the
// underlay's MTU, the etcd the nodes meet through, the disk under
// state-dir, and a peer gone for longer than TCP waits.

// mtuLow is the underlay MTU the mtu-change fault sets for a while; the
// tunnel costs 50 bytes (VXLAN over IPv4), so the pods must follow to
// mtuLow-50 and back.
const (
	mtuLow     = 1400
	mtuBase    = 1500
	tunnelCost = 50
	mtuHold    = time.Second
)

// etcdDown is how long the etcd-restart fault keeps etcd stopped: longer
// than the records' lease, so that they expire and must be published
// again.
const etcdDown = 4 * time.Second

// stateDirSize is the tmpfs under each node's state-dir; disk-full fills
// it.
const stateDirSize = "256k"

// mtuChange lowers the node's underlay MTU and raises it again: each time
// the pods' devices, vxdp's routes in the node and the agent's status
// must follow, and a pod must reach a remote pod with the largest packet
// the new MTU allows. Returns the worst time from a change to everything
// having followed.
func (s *soak) mtuChange(n *node) (time.Duration, error) {
	var worst time.Duration
	for _, mtu := range []int{mtuLow, mtuBase} {
		start := time.Now()
		if out, err := n.ns.Run("ip", "link", "set", "eth0", "mtu", strconv.Itoa(mtu)); err != nil {
			return worst, fmt.Errorf("underlay mtu %d: %v\n%s", mtu, err, out)
		}
		var why string
		for {
			why = s.mtuFollowed(n, mtu)
			if why == "" || time.Since(start) > 10*time.Second {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if why != "" {
			st, _ := s.cli(n, "status")
			if mtu != mtuBase {
				n.ns.Run("ip", "link", "set", "eth0", "mtu", strconv.Itoa(mtuBase))
			}
			return worst, fmt.Errorf("underlay mtu %d not followed within 10s: %s\nstatus:\n%s", mtu, why, st)
		}
		worst = max(worst, time.Since(start))
		// The largest ICMP echo the pod MTU allows, not fragmented.
		size := strconv.Itoa(mtu - tunnelCost - 28)
		dst := podIP(n.i%nodes+1, 1).String()
		if out, err := nstest.Ping(s.pods[podName(n.i, 0)], "-c", "1", "-W", "2", "-M", "do", "-s", size, dst); err != nil {
			if mtu != mtuBase {
				n.ns.Run("ip", "link", "set", "eth0", "mtu", strconv.Itoa(mtuBase))
			}
			return worst, fmt.Errorf("underlay mtu %d: a %s-byte echo to %s: %v\n%s", mtu, size, dst, err, out)
		}
		if mtu != mtuBase {
			time.Sleep(mtuHold)
		}
	}
	return worst, nil
}

// mtuFollowed says what has not yet followed an underlay MTU of mtu, ""
// when everything has: each pod's eth0, each vxdp route in the node that
// names an MTU, and the agent's status.
func (s *soak) mtuFollowed(n *node, mtu int) string {
	want := mtu - tunnelCost
	for idx := range 2 {
		pod := s.pods[podName(n.i, idx)]
		out, err := pod.Run("ip", "-o", "link", "show", "eth0")
		if err != nil {
			return fmt.Sprintf("%s: %v", pod.Name, err)
		}
		if got := fieldAfter(out, "mtu"); got != strconv.Itoa(want) {
			return fmt.Sprintf("%s eth0 has mtu %s, want %d", pod.Name, got, want)
		}
		if why := routeMTUs(pod, want); why != "" {
			return pod.Name + ": " + why
		}
	}
	if why := routeMTUs(n.ns, want, "proto", "208"); why != "" {
		return n.ns.Name + ": " + why
	}
	out, err := s.cli(n, "status", "-o", "json")
	if err != nil {
		return fmt.Sprintf("status: %v", err)
	}
	var st struct {
		UnderlayMTU int `json:"underlay_mtu"`
		RouteMTU    int `json:"route_mtu"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return fmt.Sprintf("status: %v", err)
	}
	if st.UnderlayMTU != mtu || st.RouteMTU != want {
		return fmt.Sprintf("status says underlay mtu %d, route mtu %d", st.UnderlayMTU, st.RouteMTU)
	}
	return ""
}

// routeMTUs checks that every route of ns (limited by sel) that carries
// an MTU carries want.
func routeMTUs(ns *nstest.Netns, want int, sel ...string) string {
	out, err := ns.Run(append([]string{"ip", "route", "show"}, sel...)...)
	if err != nil {
		return fmt.Sprintf("ip route: %v", err)
	}
	for line := range strings.Lines(out) {
		if got := fieldAfter(line, "mtu"); got != "" && got != strconv.Itoa(want) {
			return fmt.Sprintf("route %q has mtu %s, want %d", strings.TrimSpace(line), got, want)
		}
	}
	return ""
}

// fieldAfter returns the word after key in s, "" when key is not there.
func fieldAfter(s, key string) string {
	f := strings.Fields(s)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == key {
			return f[i+1]
		}
	}
	return ""
}

// etcdRestart stops etcd for longer than the records' lease and starts it
// again on the same data: forwarding must go on meanwhile (the pings and
// streams judge that), every agent must say etcd is unreachable, and
// afterwards connected with every node's record back. Returns the time
// from etcd's start to the last agent reporting it connected.
func (s *soak) etcdRestart(_ *node) (time.Duration, error) {
	e := s.etcd
	if err := e.proc.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	if _, err := e.proc.Wait(10 * time.Second); errors.Is(err, nstest.ErrWaitTimeout) {
		e.proc.Signal(syscall.SIGKILL)
		e.proc.Wait(5 * time.Second)
	}
	time.Sleep(etcdDown)
	var problems []string
	for _, m := range s.nodes {
		if out, _ := s.cli(m, "status"); !strings.Contains(out, "etcd unreachable") {
			problems = append(problems, fmt.Sprintf("node%d does not say etcd is unreachable:\n%s", m.i, out))
		}
	}
	if err := s.startEtcd(e); err != nil {
		return 0, err
	}
	start := time.Now()
	want := fmt.Sprintf("etcd connected (%d nodes", nodes)
	for _, m := range s.nodes {
		var out string
		for time.Since(start) < 30*time.Second {
			out, _ = s.cli(m, "status")
			if strings.Contains(out, want) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(out, want) {
			problems = append(problems, fmt.Sprintf("node%d not back to %q within 30s:\n%s", m.i, want+" ...)", out))
		}
	}
	took := time.Since(start)
	if len(problems) > 0 {
		return took, errors.New(strings.Join(problems, "\n"))
	}
	return took, nil
}

// mountStateDir puts a small tmpfs of its own under the node's state-dir
// (inside the run's temporary directory), so that disk-full can fill it
// without touching any other file system. It is unmounted before the
// temporary directory goes.
func (s *soak) mountStateDir(n *node) {
	t := s.t
	if err := os.MkdirAll(n.stateDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+stateDirSize+",mode=0750", "soak-state", n.stateDir).CombinedOutput(); err != nil {
		t.Fatalf("tmpfs on %s: %v\n%s", n.stateDir, err, out)
	}
	dir := n.stateDir
	t.Cleanup(func() {
		// Lazily: an agent still running lets go of it when it stops.
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
}

// diskFull fills the file system under the node's state-dir, kills the
// agent and starts it again there, and makes it save its state (an
// endpoint added and deleted through the API): the save must fail with
// the reason in the log, the state file on disk must stay the last good
// one, and the endpoint must be served all the same. Then the filler goes
// and the next save must succeed. Returns the time from the filler's
// removal to a good save.
func (s *soak) diskFull(n *node) (time.Duration, error) {
	filler := filepath.Join(n.stateDir, "filler")
	defer os.Remove(filler)
	if err := fill(filler); err != nil {
		return 0, err
	}
	statePath := filepath.Join(n.stateDir, "state-"+nodeIP(n.i).String()+".json")
	good, err := os.ReadFile(statePath)
	if err != nil {
		return 0, fmt.Errorf("state file before the disk filled: %v", err)
	}
	// Two faults at once: the agent killed and started again on the full
	// disk. It must start, take over its pods from the last good file and
	// say at once that its state is not saved.
	if _, err := s.killRestart(n); err != nil {
		return 0, fmt.Errorf("restart on a full disk: %v", err)
	}
	var problems []string
	if out, err := s.cli(n, "status"); err != nil || !strings.Contains(out, "NOT SAVED") {
		problems = append(problems, fmt.Sprintf("status of an agent started on a full disk does not say the state is not saved: %v\n%s", err, out))
	}
	p := n.proc()
	from := len(p.Output())
	name := fmt.Sprintf("churn%d", n.i)
	ip := netip.AddrFrom4([4]byte{10, 1, byte(n.i), 50})
	if out, err := s.cli(n, "endpoint", "add", name, "--ip", ip.String(), "--netns", n.churn.Path,
		"--identity", strconv.Itoa(podIdentity(n.i, 50))); err != nil {
		return 0, fmt.Errorf("endpoint add on a full disk: %v\n%s", err, out)
	}
	if _, err := probe(s.pods[podName(n.i%nodes+1, 1)], ip, 10*time.Second); err != nil {
		problems = append(problems, fmt.Sprintf("endpoint added on a full disk not served: %v", err))
	}
	if !waitLog(p, from, 5*time.Second, "save state", "no space left on device") {
		problems = append(problems, "no \"save state ... no space left on device\" in the log after a save on a full disk")
	}
	if now, err := os.ReadFile(statePath); err != nil || string(now) != string(good) {
		problems = append(problems, fmt.Sprintf("state file changed or gone after a failed save: %v", err))
	}
	if out, err := s.cli(n, "status"); err != nil || !strings.Contains(out, "NOT SAVED") || !strings.Contains(out, "no space left on device") {
		problems = append(problems, fmt.Sprintf("status on a full disk does not say the state is not saved, or the agent is unhealthy: %v\n%s", err, out))
	}
	if err := os.Remove(filler); err != nil {
		problems = append(problems, err.Error())
	}
	start := time.Now()
	if out, err := s.cli(n, "endpoint", "del", name); err != nil {
		problems = append(problems, fmt.Sprintf("endpoint del: %v\n%s", err, out))
	}
	took := time.Since(start)
	var st struct {
		Endpoints []struct {
			Name string `json:"name"`
		} `json:"endpoints"`
	}
	b, err := os.ReadFile(statePath)
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		problems = append(problems, fmt.Sprintf("state file after the disk was freed: %v", err))
	} else if len(st.Endpoints) < 2 || strings.Contains(string(b), `"`+name+`"`) {
		problems = append(problems, fmt.Sprintf("the save after the disk was freed did not happen: state file %s", b))
	}
	if out, _ := s.cli(n, "status"); strings.Contains(out, "NOT SAVED") {
		problems = append(problems, fmt.Sprintf("status still says the state is not saved after a good save:\n%s", out))
	}
	if len(problems) > 0 {
		return took, errors.New(strings.Join(problems, "\n"))
	}
	return took, nil
}

// fill writes path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for range 1 << 16 {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
	return fmt.Errorf("%s: no ENOSPC after 256 MiB", path)
}

// waitLog waits until a line of p's log after offset from holds every
// word.
func waitLog(p *nstest.Proc, from int, timeout time.Duration, words ...string) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
	lines:
		for _, l := range strings.Split(p.Output()[from:], "\n") {
			for _, w := range words {
				if !strings.Contains(l, w) {
					continue lines
				}
			}
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
