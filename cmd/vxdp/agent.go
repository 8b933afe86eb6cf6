package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/vxdp/vxdp/agent"
	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
)

func dropOrder() []string {
	var out []string
	for _, r := range dataplane.DropReasons() {
		out = append(out, r.String())
	}
	return out
}

func newAgentCmd(g *globals) *cobra.Command {
	var file, dir string
	var cleanup, cleanupForce bool
	overrides := map[string]*string{}
	c := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "run the node dataplane in the foreground",
		Long: "Run the node dataplane in the foreground until SIGINT or SIGTERM.\n\n" +
			"Configuration comes from --config (YAML), then --config-dir (a Cilium\n" +
			"ConfigMap mounted as a directory, one file per key), then the flags below,\n" +
			"each overriding the one before. Cilium keys vxdp does not implement are\n" +
			"ignored, named in one warning; other unknown keys are errors. Keys:\n\n" + keyHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// load builds the configuration the same way at start and on
			// every SIGHUP: file, then directory, then flags.
			load := func() (*config.Config, error) {
				cfg := config.Default()
				var err error
				if file != "" {
					if cfg, err = config.Load(file); err != nil {
						return nil, err
					}
				}
				if dir != "" {
					if err := cfg.ApplyDir(dir); err != nil {
						return nil, err
					}
				}
				if cmd.Flags().Changed("socket") || cfg.Socket == "" || cfg.Socket == config.DefaultSocket {
					cfg.Socket = g.socket
				}
				names := make([]string, 0, len(overrides))
				for k := range overrides {
					names = append(names, k)
				}
				sort.Strings(names)
				for _, k := range names {
					if cmd.Flags().Changed(k) {
						if err := cfg.Set(k, *overrides[k]); err != nil {
							return nil, err
						}
					}
				}
				if err := cfg.Validate(); err != nil {
					return nil, err
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return configError(err)
			}
			log, level, err := newLogger(cfg.LogLevel)
			if err != nil {
				return usagef("log-level %q: %v", cfg.LogLevel, err)
			}
			defer log.Sync()
			if cleanup {
				// Under systemd's ExecStopPost after a failure, a restart
				// (Restart=on-failure) follows and must find the pods'
				// devices to adopt: leave them.
				if r := os.Getenv("SERVICE_RESULT"); r != "" && r != "success" && !cleanupForce {
					log.Info("not cleaning up: the service failed and will be restarted", zap.String("result", r))
					return nil
				}
				return agent.Cleanup(cfg, log)
			}
			// A failed start has undone its work; the error, one line on
			// stderr, names the cause.
			a, err := agent.New(cfg, log)
			if err != nil {
				return configError(err)
			}
			a.SetLevel(level)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						_ = a.ReloadWith(load)
					}
				}
			}()
			return a.Run(ctx)
		},
	}
	c.Flags().StringVar(&file, "config", "", "configuration file (YAML)")
	c.Flags().StringVar(&dir, "config-dir", "", "Cilium ConfigMap directory: one file per key")
	c.Flags().BoolVar(&cleanup, "cleanup", false, "remove what a killed agent left (pod devices, vxdp_host, routes, state) and exit; for ExecStopPost")
	c.Flags().BoolVar(&cleanupForce, "force", false, "with --cleanup: clean up even after a failure systemd will restart")
	for _, k := range []string{"node-ip", "pod-cidr", "device", "underlay", "log-level"} {
		v := new(string)
		overrides[k] = v
		c.Flags().StringVar(v, k, "", "overrides the "+k+" key")
	}
	return c
}

func keyHelp() string {
	var b strings.Builder
	for _, k := range config.Keys() {
		doc := config.KeyDoc(k)
		if d := config.KeyDefault(k); d != "" && !strings.Contains(doc, "(default") {
			doc += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintf(&b, "  %-26s %s\n", k, doc)
	}
	return b.String()
}

func configError(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		return usageError{err}
	}
	return err
}

func newLogger(level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.DisableStacktrace = true
	zc.Sampling = nil
	l, err := zc.Build()
	return l, zc.Level, err
}
