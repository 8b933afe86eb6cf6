package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newInstallCNICmd installs the CNI plugin and its network configuration
// on the host, as a DaemonSet's init container does: the image carries
// both binaries, the host's runtime finds them in its CNI directories.
func newInstallCNICmd(g *globals) *cobra.Command {
	var binDir, confDir, plugin, identity string
	c := &cobra.Command{
		Use:   "install-cni",
		Short: "copy vxdp-cni into the CNI plugin directory and write its network configuration",
		Long: `Copies the vxdp-cni binary into --bin-dir and writes 10-vxdp.conflist into
--conf-dir, each replaced in one rename, so that a runtime never reads a half
written file. The conflist points the plugin at the agent's API socket
(--socket). Run by the DaemonSet's init container with the host's
directories mounted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plugin == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				plugin = filepath.Join(filepath.Dir(self), "vxdp-cni")
			}
			bin := filepath.Join(binDir, "vxdp-cni")
			if err := installFile(plugin, bin, 0o755); err != nil {
				return err
			}
			conf, err := conflist(g.socket, identity)
			if err != nil {
				return err
			}
			dst := filepath.Join(confDir, "10-vxdp.conflist")
			if err := writeAtomic(dst, conf, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s and %s (socket %s)\n", bin, dst, g.socket)
			return nil
		},
	}
	c.Flags().StringVar(&binDir, "bin-dir", "/opt/cni/bin", "CNI plugin directory")
	c.Flags().StringVar(&confDir, "conf-dir", "/etc/cni/net.d", "CNI network configuration directory")
	c.Flags().StringVar(&plugin, "plugin", "", "the vxdp-cni binary to install (default: beside this executable)")
	c.Flags().StringVar(&identity, "identity", "256", "the pods' default identity, when neither CNI_ARGS nor the Pod says one")
	return c
}

// conflist is the network configuration the plugin is installed with.
func conflist(socket, identity string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion":  "1.0.0",
		"cniVersions": []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"},
		"name":        "vxdp",
		"plugins": []map[string]any{{
			"type":         "vxdp-cni",
			"socket":       socket,
			"identity":     identity,
			"capabilities": map[string]bool{"ips": true},
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	return append(b, '\n'), err
}

// installFile copies src to dst through a temporary file in dst's
// directory and a rename.
func installFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFrom(dst, mode, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

func writeAtomic(dst string, b []byte, mode os.FileMode) error {
	return writeFrom(dst, mode, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

func writeFrom(dst string, mode os.FileMode, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
