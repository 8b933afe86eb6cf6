//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// The wrapper writes the command's own pid into the group's file: the
// shell that joins the group execs the command in place.
func TestInCgroupKeepsThePid(t *testing.T) {
	dir := t.TempDir()
	args := append(cgroupWrap(dir), "sh", "-c", "echo $$")
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatal(err)
	}
	joined, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(joined)), strings.TrimSpace(string(out)); got != want || got == "" {
		t.Fatalf("pid written to cgroup.procs %q, command's pid %q", got, want)
	}
}

// The pods' groups are made, a process started through the wrapper is
// in its pod's group from the start, and removing them leaves nothing.
func TestPodCgroups(t *testing.T) {
	root := testCgroupRoot(t)
	name := "vxdp-bench-test-" + filepath.Base(t.TempDir())
	dirs, remove, err := makeCgroups(root, name, []string{"pod1", "pod2"})
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			remove()
		}
	})
	// Through `ip netns exec`, which mounts a /sys without the cgroup
	// file systems: the wrapper joins the group before it.
	l, err := openLab(t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.cgroups = dirs
	if err := l.addNetns("pod2"); err != nil {
		t.Fatal(err)
	}
	out, err := l.exec(context.Background(), "pod2", 10*time.Second, "cat", "/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if want := "/" + name + "/pod2"; !strings.Contains(string(out), want) {
		t.Fatalf("process not in %s:\n%s", want, out)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	removed = true
	if _, err := os.Stat(filepath.Join(root.dir, name)); !os.IsNotExist(err) {
		t.Fatalf("group left behind: %v", err)
	}
}

// --remove-stale removes the groups of a run that is gone and leaves
// those of a live lab alone.
func TestRemoveStaleCgroups(t *testing.T) {
	root := testCgroupRoot(t)
	l, err := openLab(t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.useCgroups(root, []string{"pod1", "pod2"}); err != nil {
		t.Fatal(err)
	}
	// A lab prefix nobody owns: a run killed before its cleanup.
	var stale string
	for {
		b := make([]byte, 3)
		rand.Read(b)
		stale = fmt.Sprintf("vx%x-", b)
		if _, err := os.Stat(filepath.Join(root.dir, stale)); os.IsNotExist(err) && nstest.StaleLab(stale) {
			break
		}
	}
	_, removeStale, err := makeCgroups(root, stale, []string{"pod1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeStale() })
	removed, err := removeStaleCgroups()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, filepath.Join(root.dir, stale)) {
		t.Errorf("removed %v, not the stale %s", removed, stale)
	}
	if _, err := os.Stat(filepath.Join(root.dir, stale)); !os.IsNotExist(err) {
		t.Errorf("stale group still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root.dir, l.Prefix(), "pod1")); err != nil {
		t.Errorf("the live lab's group was removed: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root.dir, l.Prefix())); !os.IsNotExist(err) {
		t.Errorf("the lab's group outlived Close: %v", err)
	}
}

// --node-cgroup-weight is checked, and needs --node-cgroups.
func TestParseNodeCgroupWeight(t *testing.T) {
	for _, bad := range [][]string{
		{"--node-cgroups", "--node-cgroup-weight", "0"},
		{"--node-cgroups", "--node-cgroup-weight", "10001"},
		{"--node-cgroup-weight", "500"},
	} {
		if _, err := parseFlags(bad, "/src"); err == nil || !strings.Contains(err.Error(), "--node-cgroup-weight") {
			t.Errorf("%v: %v", bad, err)
		}
	}
	o, err := parseFlags([]string{"--node-cgroups", "--node-cgroup-weight", "500"}, "/src")
	if err != nil || o.nodeWeight != 500 {
		t.Fatalf("weight 500: %v, %+v", err, o)
	}
}

// The weight lands in the group's own file, on the hierarchy's scale.
func TestSetCPUWeight(t *testing.T) {
	root := testCgroupRoot(t)
	name := "vxdp-bench-test-" + filepath.Base(t.TempDir())
	dirs, remove, err := makeCgroups(root, name, []string{"node1"})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	if err := setCPUWeight(root, dirs["node1"], 500); err != nil {
		t.Fatal(err)
	}
	file, want := "cpu.weight", "500"
	if !root.v2 {
		file, want = "cpu.shares", "5120"
	}
	got, err := os.ReadFile(filepath.Join(dirs["node1"], file))
	if err != nil || strings.TrimSpace(string(got)) != want {
		t.Fatalf("%s = %q (%v), want %s", file, got, err, want)
	}
}

// testCgroupRoot is where a test makes its CPU cgroups; it skips the test
// without root or a CPU controller.
func testCgroupRoot(t *testing.T) cpuCgroupRoot {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	root, err := findCPUCgroupRoot()
	if err != nil {
		t.Skip(err)
	}
	return root
}
