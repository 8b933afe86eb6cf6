package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The unit file passes systemd-analyze verify (with ExecStart pointing at
// the binary under test, since nothing is installed here), and make
// install puts binary, unit and example config in place.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../packaging/systemd/vxdp.service")
	must(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "vxdp.service")
	write(t, path, strings.ReplaceAll(string(unit), "/usr/local/bin/vxdp", vxdpBin))
	cmd := exec.Command("systemd-analyze", "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=", "Restart=on-failure", "AF_XDP", "ProtectSystem=strict", "CAP_NET_ADMIN"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %s", want)
		}
	}

	dest := t.TempDir()
	out, err := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/vxdp", "etc/systemd/system/vxdp.service", "etc/vxdp/vxdp.yaml", "etc/vxdp/vxdp.yaml.example"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
}

// The embedding example runs and moves its packets.
func TestEmbedExample(t *testing.T) {
	out, err := exec.Command("go", "run", "../../examples/embed").Output()
	if err != nil {
		t.Fatalf("go run ./examples/embed: %v\n%s", err, out)
	}
	for _, want := range []string{`db received 42 bytes from 10.1.1.10: "hello from web"`, "VNI 1000", "drops: 0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
