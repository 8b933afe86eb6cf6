package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// An agent killed while its state directory is full starts again on the
// full disk: it adopts the pods from the last good state file, forwards,
// and says in status that the state is not saved; once there is room, the
// next change saves it and status no longer says so.
func TestRestartOnFullStateDir(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	must(t, os.Mkdir(stateDir, 0o750))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0750", "vxdp-test-state", stateDir).CombinedOutput(); err != nil {
		t.Fatalf("tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", stateDir).Run() })
	n1 := lab.Netns("node1")
	p1, p2, p3 := lab.Netns("pod1"), lab.Netns("pod2"), lab.Netns("pod3")
	lab.Veth(n1, "eth0", "10.169.72.233/24", lab.Netns("peer"), "eth0", "10.169.72.238/24", 1500)
	cfg := filepath.Join(dir, "n1.yaml")
	write(t, cfg, fmt.Sprintf(`node-ip: 10.169.72.233
pod-cidr: 10.1.1.0/24
state-dir: %s
endpoints:
  - {name: pod1, ip: 10.1.1.10, netns: %s}
`, stateDir, p1.Path))
	sock := filepath.Join(dir, "n1.sock")
	a := lab.Start(n1, "agent", vxdpBin, "agent", "--config", cfg, "--socket", sock)
	waitAgent(t, a, sock)
	if out, err := runCLI(sock, "endpoint", "add", "pod2", "--ip", "10.1.1.20", "--netns", p2.Path); err != nil {
		t.Fatal(err, out)
	}
	statePath := filepath.Join(stateDir, "state-10.169.72.233.json")
	good, err := os.ReadFile(statePath)
	must(t, err)
	if !strings.Contains(string(good), `"pod2"`) {
		t.Fatalf("state file lacks the API endpoint:\n%s", good)
	}

	filler := filepath.Join(stateDir, "filler")
	f, err := os.Create(filler)
	must(t, err)
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	must(t, a.Signal(syscall.SIGKILL))
	a.Wait(5 * time.Second)
	b := lab.Start(n1, "agent-restarted", vxdpBin, "agent", "--config", cfg, "--socket", sock)
	waitAgent(t, b, sock)
	out, err := runCLI(sock, "status")
	if err != nil || !strings.Contains(out, "NOT SAVED") || !strings.Contains(out, "no space left on device") {
		t.Fatalf("status of an agent started on a full disk: %v\n%s", err, out)
	}
	if !strings.Contains(b.Output(), "endpoint device adopted") {
		t.Fatalf("pod devices not adopted on a full disk:\n%s", b.Output())
	}
	if out, err := runCLI(sock, "endpoint", "list"); err != nil || !strings.Contains(out, "pod2") {
		t.Fatalf("API endpoint not restored from the last good file: %v\n%s", err, out)
	}
	if out, err := p1.Run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.1.1.20"); err != nil {
		t.Fatalf("pod1 -> pod2 after a start on a full disk: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(statePath); string(now) != string(good) {
		t.Fatalf("the state file changed on a full disk:\n%s", now)
	}
	if _, err := os.Stat(statePath + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed save left its temporary file: %v", err)
	}

	must(t, os.Remove(filler))
	if out, err := runCLI(sock, "endpoint", "add", "pod3", "--ip", "10.1.1.30", "--netns", p3.Path); err != nil {
		t.Fatal(err, out)
	}
	if out, _ := runCLI(sock, "status"); strings.Contains(out, "NOT SAVED") {
		t.Fatalf("status still says not saved after a good save:\n%s", out)
	}
	if now, _ := os.ReadFile(statePath); !strings.Contains(string(now), `"pod3"`) {
		t.Fatalf("the save after the disk was freed lacks pod3:\n%s", now)
	}
	if out, err := p3.Run("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.1.1.10"); err != nil {
		t.Fatalf("pod3 -> pod1: %v\n%s", err, out)
	}
}

// With procfs set, the agent writes its sysctls under that directory (a
// container mounts the host's /proc there, its own /proc/sys being
// read-only), not under /proc.
func TestProcFS(t *testing.T) {
	lab := nstest.New(t)
	n1, pod := lab.Netns("node1"), lab.Netns("pod1")
	lab.Veth(n1, "eth0", "10.169.72.233/24", lab.Netns("peer"), "eth0", "10.169.72.238/24", 1500)
	proc := t.TempDir()
	fwd := filepath.Join(proc, "sys/net/ipv4/ip_forward")
	host := filepath.Join(proc, "sys/net/ipv4/conf/vxdp_host")
	must(t, os.MkdirAll(filepath.Dir(fwd), 0o755))
	must(t, os.MkdirAll(host, 0o755))
	write(t, fwd, "0\n")
	write(t, filepath.Join(host, "accept_local"), "0\n")
	write(t, filepath.Join(host, "rp_filter"), "1\n")
	n1.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	sock := nativeNode(t, lab, n1, pod, "node1", "10.169.72.233", "10.1.1.0/24", "10.1.1.10", "procfs: "+proc)
	for path, want := range map[string]string{fwd: "1", filepath.Join(host, "accept_local"): "1", filepath.Join(host, "rp_filter"): "0"} {
		if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %s", path, b, want)
		}
	}
	if out := n1.MustRun(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != "0" {
		t.Errorf("the node's own ip_forward was written: %s", out)
	}
	if out, err := runCLI(sock, "status"); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
}
