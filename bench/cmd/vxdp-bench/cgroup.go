//go:build linux

package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Pods and nodes in CPU cgroups of their own (--pod-cgroups,
// --node-cgroups): a container runtime puts every pod in a cgroup, and a
// service manager every service, so that the scheduler shares the CPUs
// between groups first and between a group's threads only within its
// share. Without them the harness's pods and agents are plain processes,
// and a pod with four busy threads has four times the say of a pod with
// one. With them, every process the harness runs in a pod's (node's)
// namespace starts in that pod's (node's) group, all at the default
// weight; a node's group holds its dataplane processes (the vxdp agent,
// Open vSwitch's daemons), as a service's group does.

// cpuCgroupRoot is where CPU cgroups are made: the unified hierarchy
// when its root offers the cpu controller to its children, else the
// cgroup v1 cpu hierarchy. v2 is one level deeper: the lab's group must
// pass the controller on to the pods' groups.
type cpuCgroupRoot struct {
	dir string
	v2  bool
}

// findCPUCgroupRoot looks for a place to make CPU cgroups. It changes
// nothing: a v2 root whose subtree_control lacks cpu is refused with the
// command that would enable it, not enabled behind the operator's back.
func findCPUCgroupRoot() (cpuCgroupRoot, error) {
	for _, base := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		ctl, err := os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Fields(string(ctl)), "cpu") {
			return cpuCgroupRoot{dir: base, v2: true}, nil
		}
		if avail, err := os.ReadFile(filepath.Join(base, "cgroup.controllers")); err == nil && slices.Contains(strings.Fields(string(avail)), "cpu") {
			return cpuCgroupRoot{}, fmt.Errorf("cgroups: the cgroup v2 root %s does not pass the cpu controller on (echo +cpu > %s/cgroup.subtree_control)", base, base)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.shares"); err == nil {
		return cpuCgroupRoot{dir: "/sys/fs/cgroup/cpu"}, nil
	}
	return cpuCgroupRoot{}, errors.New("cgroups: no CPU cgroup controller (neither cgroup v2 with cpu in the root's subtree_control nor a v1 cpu hierarchy)")
}

// makeCgroups makes group name under root and in it a group for each of
// members; it returns their directories by member and a function that
// removes them all once their processes have gone.
func makeCgroups(root cpuCgroupRoot, name string, members []string) (map[string]string, func() error, error) {
	top := filepath.Join(root.dir, name)
	if err := os.Mkdir(top, 0o755); err != nil {
		return nil, nil, fmt.Errorf("cgroups: %w", err)
	}
	dirs := map[string]string{}
	remove := func() error {
		var errs []error
		for _, d := range append(slices.Collect(maps.Values(dirs)), top) {
			errs = append(errs, rmdirWait(d))
		}
		return errors.Join(errs...)
	}
	if root.v2 {
		if err := os.WriteFile(filepath.Join(top, "cgroup.subtree_control"), []byte("+cpu"), 0o644); err != nil {
			remove()
			return nil, nil, fmt.Errorf("cgroups: enable cpu in %s: %w", top, err)
		}
	}
	for _, p := range members {
		d := filepath.Join(top, p)
		if err := os.Mkdir(d, 0o755); err != nil {
			remove()
			return nil, nil, fmt.Errorf("cgroups: %w", err)
		}
		dirs[p] = d
	}
	return dirs, remove, nil
}

// setCPUWeight gives the group dir the CPU weight w on cgroup v2's scale
// (1-10000, 100 the default): cpu.weight there, cpu.shares (1024 for
// 100) in v1.
func setCPUWeight(root cpuCgroupRoot, dir string, w int) error {
	file, v := "cpu.weight", w
	if !root.v2 {
		file, v = "cpu.shares", w*1024/100
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.Itoa(v)), 0o644); err != nil {
		return fmt.Errorf("cgroups: weight %d: %w", w, err)
	}
	return nil
}

// rmdirWait removes an empty cgroup, waiting up to two seconds for the
// processes that were killed in it to be gone (EBUSY until then).
func rmdirWait(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgroupWrap is a command prefix that joins the cgroup dir and then
// execs the rest of the command line in place: a shell writes its own
// pid into the group and execs. The pid stays the command's, and every
// thread and child it makes is in the group from its start. It goes in
// front of `ip netns exec` (nstest.Netns.Wrap), which mounts a /sys of
// the namespace's own, without the cgroup file systems.
func cgroupWrap(dir string) []string {
	return []string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(dir, "cgroup.procs")}
}

// removeStaleCgroups removes the pods' and nodes' cgroups of earlier runs
// that were killed before they could (--remove-stale): groups under the
// CPU hierarchy named after a lab whose owner is gone. The processes in them
// are gone too, killed with their namespaces or with the harness.
func removeStaleCgroups() ([]string, error) {
	root, err := findCPUCgroupRoot()
	if err != nil {
		return nil, nil // none were made here
	}
	ents, err := os.ReadDir(root.dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !nstest.StaleLab(e.Name()) {
			continue
		}
		top := filepath.Join(root.dir, e.Name())
		subs, _ := os.ReadDir(top)
		for _, s := range subs {
			if s.IsDir() {
				errs = append(errs, rmdirWait(filepath.Join(top, s.Name())))
			}
		}
		if err := rmdirWait(top); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, top)
	}
	return removed, errors.Join(errs...)
}
