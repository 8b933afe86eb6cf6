package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/vxdp/vxdp/internal/nstest"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func runCLI(sock string, args ...string) (string, error) {
	out, err := exec.Command(vxdpBin, append([]string{"--socket", sock}, args...)...).CombinedOutput()
	return string(out), err
}

func waitAgent(t *testing.T, p *nstest.Proc, sock string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			t.Fatalf("agent exited:\n%s", p.Output())
		}
		if _, err := runCLI(sock, "status"); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("agent not ready:\n%s", p.Output())
}

func dropCount(t *testing.T, sock, reason string) int {
	t.Helper()
	out, err := runCLI(sock, "stats", "-o", "json")
	if err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	var st struct {
		Drops map[string]int `json:"drops"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats json: %v\n%s", err, out)
	}
	return st.Drops[reason]
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// writePcap stores captured Ethernet frames as a pcap file for tshark.
func writePcap(path string, frames [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			return err
		}
	}
	return nil
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("json: %v\n%s", err, s)
	}
}
