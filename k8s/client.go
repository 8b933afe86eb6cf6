package k8s

import (
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options say how to reach the API server: Cilium's k8s-kubeconfig-path
// and k8s-api-server. With both empty the agent must run in a pod and
// takes the in-cluster configuration (the service account's token and
// KUBERNETES_SERVICE_HOST).
type Options struct {
	Kubeconfig string // a kubeconfig file; its current context is used
	APIServer  string // the server's URL; overrides the kubeconfig's
	// NodeName is this node's Node object: its pod CIDRs and the
	// annotations the agent publishes.
	NodeName string
	// UserAgent names the client in the server's logs and audit.
	UserAgent string
}

// requestTimeout bounds every request but the watches, so that a server
// that stopped answering is noticed rather than waited for.
const requestTimeout = 10 * time.Second

// restConfig builds the client configuration Options describe.
func restConfig(o Options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case o.Kubeconfig != "":
		if _, serr := os.Stat(o.Kubeconfig); serr != nil {
			return nil, fmt.Errorf("k8s-kubeconfig-path: %w", serr)
		}
		cfg, err = clientcmd.BuildConfigFromFlags(o.APIServer, o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("k8s-kubeconfig-path %s: %w", o.Kubeconfig, err)
		}
	case o.APIServer != "":
		// A URL alone: the server's certificate is checked against the
		// system's roots and no credentials are sent, as with a
		// kubeconfig holding only a server (Cilium's k8s-api-server).
		cfg = &rest.Config{Host: o.APIServer}
	default:
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration (neither k8s-kubeconfig-path nor k8s-api-server is set): %w", err)
		}
	}
	cfg.UserAgent = o.UserAgent
	// Protobuf is the smaller and cheaper encoding for built-in types.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return cfg, nil
}
