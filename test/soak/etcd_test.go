package soak

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// etcdIP is the soak's etcd member on the underlay bridge.
const etcdIP = "10.169.72.10"

// etcdLeaseTTL is the lease of a node's record: an etcd outage longer
// than it lets the records expire, so that the agents must publish again.
const etcdLeaseTTL = "3s"

func etcdURL() string { return "http://" + etcdIP + ":2379" }

// etcdMember is one etcd process of the soak, restarted on the same data
// directory by the etcd-restart fault.
type etcdMember struct {
	ns   *nstest.Netns
	data string
	runs int
	proc *nstest.Proc
}

// startEtcd starts etcd in its namespace and waits until it reports
// healthy.
func (s *soak) startEtcd(e *etcdMember) error {
	if _, err := exec.LookPath("etcd"); err != nil {
		return fmt.Errorf("etcd not installed (make deps installs etcd-server): %w", err)
	}
	e.runs++
	url := etcdURL()
	p, err := s.lab.Launch(e.ns, fmt.Sprintf("etcd-%d", e.runs), "etcd", "--name", "soak", "--data-dir", e.data,
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "soak=http://127.0.0.1:2380")
	if err != nil {
		return err
	}
	e.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := e.ns.Run("curl", "-s", "-m", "1", url+"/health"); err == nil && strings.Contains(out, `"health":"true"`) {
			return nil
		}
		if !p.Alive() {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("etcd did not become healthy:\n%s", tailStr(p.Output(), 3000))
}

func newEtcdMember(ns *nstest.Netns, dir string) *etcdMember {
	return &etcdMember{ns: ns, data: filepath.Join(dir, "etcd-data")}
}
