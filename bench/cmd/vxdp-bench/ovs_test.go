//go:build linux

package main

import (
	"slices"
	"strings"
	"testing"
)

func TestPMDSummary(t *testing.T) {
	out := `Displaying last 60 seconds pmd usage %
pmd thread numa_id 0 core_id 1:
  isolated : false
  port: eth0              queue-id:  0 (enabled)   pmd usage:  0 %
  overhead:  0 %
`
	if got := pmdSummary(out); got != "node1: 1 PMD thread(s) on core 1" {
		t.Errorf("got %q", got)
	}
	if got := pmdSummary("pmd thread numa_id 0 core_id 0:\npmd thread numa_id 0 core_id 1:\n"); got != "node1: 2 PMD thread(s) on core 0,1" {
		t.Errorf("two threads: %q", got)
	}
	if got := pmdSummary(""); got != "no PMD thread listed" {
		t.Errorf("none: %q", got)
	}
}

// Every OVS command of a node runs against that node's private
// directory, never the system's /var/run/openvswitch.
func TestOVSNodeCommand(t *testing.T) {
	o := newOVSNode("/tmp/r/vx01-ovs-node1")
	got := strings.Join(o.cmd("ovs-appctl", "-t", o.ctl(), "version"), " ")
	for _, want := range []string{"env ", "OVS_RUNDIR=/tmp/r/vx01-ovs-node1 ", "OVS_DBDIR=/tmp/r/vx01-ovs-node1 ",
		"OVS_LOGDIR=/tmp/r/vx01-ovs-node1 ", " ovs-appctl -t /tmp/r/vx01-ovs-node1/ovs-vswitchd.ctl version"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if o.db() != "unix:/tmp/r/vx01-ovs-node1/db.sock" {
		t.Errorf("db %s", o.db())
	}
}

func TestParseFlagsOVS(t *testing.T) {
	o, err := parseFlags([]string{"--modes", "kernel,ovs,ovs-afxdp"}, "/src")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.compared(), []string{"kernel", "ovs", "ovs-afxdp"}) {
		t.Errorf("compared %v", o.compared())
	}
	if _, err := parseFlags([]string{"--modes", "ovs-dpdk"}, "/src"); err == nil {
		t.Error("unknown mode ovs-dpdk accepted")
	}
}
