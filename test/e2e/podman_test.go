package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/internal/nstest"
)

// podman runs Debian's podman with a configuration, storage and CNI
// networks all of its own (nothing of the machine's is read or changed).
type podman struct {
	t    *testing.T
	dir  string
	args []string
	env  []string
}

func newPodman(t *testing.T, c *cluster) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed (make deps installs it)")
	}
	dir := t.TempDir()
	p := &podman{t: t, dir: dir}
	for _, d := range []string{"root", "runroot", "tmp", "net", "cni", "rootfs/bin", "rootfs/proc", "rootfs/sys", "rootfs/dev", "rootfs/etc", "rootfs/tmp"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	// The containers' root: Debian's busybox-static and its applets (no
	// image registry is needed, nor reachable).
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox is not installed (make deps installs busybox-static)")
	}
	b, err := os.ReadFile(busybox)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "rootfs/bin/busybox"), b, 0o755))
	for _, applet := range []string{"sh", "sleep", "ping", "ip", "nc", "cat", "head", "sha256sum", "wc"} {
		must(t, os.Symlink("busybox", filepath.Join(dir, "rootfs/bin", applet)))
	}
	// The plugin under test, and one network per node, each reaching its
	// node's agent through that agent's socket.
	must(t, exec.Command("cp", cniBin, filepath.Join(dir, "cni", "vxdp-cni")).Run())
	for i := range c.sockets {
		conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "vxdp-node%d", "plugins": [{"type": "vxdp-cni", "socket": %q}]}`, i+1, c.sockets[i])
		must(t, os.WriteFile(filepath.Join(dir, "net", fmt.Sprintf("vxdp-node%d.conflist", i+1)), []byte(conf), 0o644))
	}
	// runc: crun refuses this kind of machine's hybrid cgroups; limits at
	// or below the hard ones (no CAP_SYS_RESOURCE to raise them).
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q
`, filepath.Join(dir, "events.log"), filepath.Join(dir, "tmp"), filepath.Join(dir, "cni"), filepath.Join(dir, "net"))
	must(t, os.WriteFile(filepath.Join(dir, "containers.conf"), []byte(conf), 0o644))
	p.env = append(os.Environ(), "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"))
	p.args = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--storage-driver", "vfs"}
	t.Cleanup(func() {
		// Containers first (their DEL reaches the agents, still up:
		// cleanups run in reverse), then podman's own mounts.
		p.run("rm", "--force", "--all", "--time", "0")
		p.run("system", "reset", "--force")
	})
	return p
}

// run runs podman, in the root mount namespace (ip netns exec would hide
// the cgroup mounts), bounded in time.
func (p *podman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, p.args...), args...)...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *podman) mustRun(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// start runs a container that sleeps on network net and returns its ID
// and its network namespace.
func (p *podman) start(name, network string) (string, *nstest.Netns) {
	p.t.Helper()
	id := p.mustRun("run", "--detach", "--name", name, "--network", network, "--rootfs", filepath.Join(p.dir, "rootfs"), "/bin/sleep", "600")
	key := p.mustRun("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name)
	return id, &nstest.Netns{Name: filepath.Base(key), Path: key}
}

// A real container runtime attaches containers through vxdp-cni: podman
// with its CNI backend, one network per node; containers on two nodes
// ping each other and move a verified TCP stream across the overlay, and
// removing a container frees its address.
func TestCNIPodman(t *testing.T) {
	c := dualCluster(t, "ipv4")
	p := newPodman(t, c)

	idA, nsA := p.start("ctr-a", "vxdp-node1")
	idB, nsB := p.start("ctr-b", "vxdp-node2")
	epA, ok := containerEndpoints(t, c, 0)[idA]
	if !ok {
		t.Fatalf("node1 has no endpoint for container %s: %+v", idA, containerEndpoints(t, c, 0))
	}
	epB, ok := containerEndpoints(t, c, 1)[idB]
	if !ok {
		t.Fatalf("node2 has no endpoint for container %s", idB)
	}
	if !epA.IP.IsValid() || !epA.IP6.IsValid() || !epB.IP.IsValid() || !epB.IP6.IsValid() {
		t.Fatalf("dual-stack nodes gave single-stack containers: %+v %+v", epA, epB)
	}
	// podman was told the addresses the agent chose.
	if out := p.mustRun("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}", "ctr-a"); out != epA.IP.String()+" "+epA.IP6.String() {
		t.Errorf("podman inspect says %q, the agent %s %s", out, epA.IP, epA.IP6)
	}

	// Inside the container, with the container's own tools.
	for _, dst := range []string{epB.IP.String(), epB.IP6.String(), "10.1.1.10"} {
		if out, err := p.run("exec", "ctr-a", "ping", "-c", "3", "-W", "2", dst); err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Errorf("ctr-a -> %s: %v\n%s", dst, err, out)
		}
	}
	transfer(t, nsA, nsB, epB.IP.String(), 5401, 8<<20, 30*time.Second)
	transfer(t, nsB, nsA, epA.IP6.String(), 5402, 8<<20, 30*time.Second)

	// podman rm: DEL reaches the agent; the endpoint goes and its
	// addresses are free for the next container.
	p.mustRun("rm", "--force", "--time", "0", "ctr-a")
	if _, ok := containerEndpoints(t, c, 0)[idA]; ok {
		t.Fatal("the endpoint outlived podman rm")
	}
	var eps []api.Endpoint
	mustJSON(t, c.mustCLI(0, "-o", "json", "endpoint", "list"), &eps)
	for _, ep := range eps {
		if ep.IP == epA.IP || ep.IP6 == epA.IP6 {
			t.Fatalf("address of the removed container still held by %s", ep.Name)
		}
	}
	// A container asking for the freed address gets it.
	idC := p.mustRun("run", "--detach", "--name", "ctr-c", "--network", "vxdp-node1", "--ip", epA.IP.String(),
		"--rootfs", filepath.Join(p.dir, "rootfs"), "/bin/sleep", "600")
	if ep := containerEndpoints(t, c, 0)[idC]; ep.IP != epA.IP {
		t.Errorf("ctr-c asked for %s and got %s", epA.IP, ep.IP)
	}
	if out, err := p.run("exec", "ctr-c", "ping", "-c", "2", "-W", "2", epB.IP.String()); err != nil {
		t.Errorf("ctr-c -> ctr-b: %v\n%s", err, out)
	}
}
