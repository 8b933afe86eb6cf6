package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/testutils"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/cni"
	"github.com/vxdp/vxdp/internal/kubetest"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/k8s"
)

// Pods of a Kubernetes cluster attached through the CNI plugin take their
// identity and allow-list from their annotations, and a change of the
// annotations changes the policy of the running pods. The manifests of
// packaging/kubernetes are accepted by the same API server, read back,
// and their admission policy holds the agent's service account to its
// own Node's vxdp.io/ annotations.
func TestKubernetesPods(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	kubeNS := lab.Netns("kube")
	names := []string{"node1", "node2"}
	ips := []string{"10.169.72.233", "10.169.72.238"}
	nodes := make([]*nstest.Netns, 2)
	hosts := []bridgeHost{{kubeNS, "10.169.72.10/24"}}
	for i := range names {
		nodes[i] = lab.Netns(names[i])
		hosts = append(hosts, bridgeHost{nodes[i], ips[i] + "/24"})
	}
	bridge(t, lab, hosts)
	srv := kubetest.Start(t, kubetest.Options{Lab: lab, Netns: kubeNS, Addr: netip.MustParseAddr("10.169.72.10")})
	kc := srv.Client()
	ctx := context.Background()

	applyManifests(t, kc)

	for i, name := range names {
		createNode(t, kc, name, fmt.Sprintf("10.1.%d.0/24", i+1), ips[i])
	}
	sockets := make([]string, 2)
	for i, name := range names {
		cfg := filepath.Join(dir, name+".yaml")
		write(t, cfg, fmt.Sprintf("node-name: %s\nnode-ip: %s\nstate-dir: %s\nipam: kubernetes\nk8s-kubeconfig-path: %s\n",
			name, ips[i], filepath.Join(dir, "state-"+name), srv.Kubeconfig))
		sockets[i] = filepath.Join(dir, name+".sock")
		waitAgent(t, lab.Start(nodes[i], name, vxdpBin, "agent", "--config", cfg, "--socket", sockets[i]), sockets[i])
	}

	// The Pod objects the scheduler would have bound: web on node1 as
	// identity 3000, db on node2 as 4000 letting only 3000 in.
	// No controller manager runs: the namespace's default service
	// account, which pods need, is made here.
	_, err := kc.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	must(t, err)
	makePod := func(name, node string, ann map[string]string) {
		_, err := kc.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: ann},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		must(t, err)
	}
	makePod("web", "node1", map[string]string{k8s.AnnotationIdentity: "3000"})
	makePod("db", "node2", map[string]string{k8s.AnnotationIdentity: "4000", k8s.AnnotationAllowFrom: "3000"})
	makePod("plain", "node2", nil)

	// The runtime's ADD, with the pod's name in CNI_ARGS as the kubelet
	// passes it.
	attach := func(i int, pod string) (*nstest.Netns, string) {
		ns := lab.Netns("c-" + pod)
		conf := []byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "vxdp", "type": "vxdp-cni", "socket": %q, "identity": "256"}`, sockets[i]))
		id := "ctr-" + pod
		args := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + pod + ";K8S_POD_INFRA_CONTAINER_ID=" + id
		_, _, err := testutils.CmdAdd(ns.Path, id, "eth0", conf, func() error {
			return cni.Funcs.Add(&skel.CmdArgs{ContainerID: id, Netns: ns.Path, IfName: "eth0", StdinData: conf, Args: args})
		})
		must(t, err)
		var eps []api.Endpoint
		mustJSON(t, mustCLIOut(t, sockets[i], "-o", "json", "endpoint", "list"), &eps)
		for _, ep := range eps {
			if ep.ContainerID == id {
				return ns, ep.IP.String()
			}
		}
		t.Fatalf("no endpoint of %s on %s", id, names[i])
		return nil, ""
	}
	webNS, _ := attach(0, "web")
	dbNS, dbIP := attach(1, "db")
	_, plainIP := attach(1, "plain")
	identities := func(i int) map[string]string {
		var eps []api.Endpoint
		mustJSON(t, mustCLIOut(t, sockets[i], "-o", "json", "endpoint", "list"), &eps)
		out := map[string]string{}
		for _, ep := range eps {
			out[strings.TrimPrefix(ep.ContainerID, "ctr-")] = fmt.Sprintf("%d %v", ep.Identity, ep.AllowFrom)
		}
		return out
	}
	if got := identities(0)["web"]; got != "3000 []" {
		t.Fatalf("web: identity and allow-list %q, want 3000 and all", got)
	}
	if got := identities(1); got["db"] != "4000 [3000]" || got["plain"] != "256 []" {
		t.Fatalf("node2 endpoints %v", got)
	}
	pings := func(ip string, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := webNS.Run("ping", "-c", "1", "-W", "1", ip)
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ping web -> %s: %v, want success %v", ip, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	pings(dbIP, true)
	pings(plainIP, true)
	transfer(t, webNS, dbNS, dbIP, 7300, 4<<20, 30*time.Second)

	annotate := func(pod, key, value string) {
		t.Helper()
		v := "null"
		if value != "" {
			v = fmt.Sprintf("%q", value)
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v)
		_, err := kc.CoreV1().Pods("default").Patch(ctx, pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		must(t, err)
	}
	// db lets only 5000 in: web (3000) is refused, by policy.
	before := dropCount(t, sockets[1], "policy_denied")
	annotate("db", k8s.AnnotationAllowFrom, "5000")
	pings(dbIP, false)
	if dropCount(t, sockets[1], "policy_denied") <= before {
		t.Fatal("web refused by db without a policy_denied drop")
	}
	// web becomes 5000: let in again, with the same device.
	annotate("web", k8s.AnnotationIdentity, "5000")
	pings(dbIP, true)
	if got := identities(0)["web"]; got != "5000 []" {
		t.Fatalf("web after its annotation changed: %q", got)
	}
	// db's allow-list removed: every source again.
	annotate("web", k8s.AnnotationIdentity, "")
	annotate("db", k8s.AnnotationAllowFrom, "")
	pings(dbIP, true)
	deadline := time.Now().Add(10 * time.Second)
	for identities(1)["db"] != "4000 []" || identities(0)["web"] != "256 []" {
		if time.Now().After(deadline) {
			t.Fatalf("after the annotations were removed: node1 %v node2 %v", identities(0), identities(1))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The admission policy, as the agent's service account on node1.
	checkNodePolicy(t, srv, kc)
}

func mustCLIOut(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := runCLI(sock, args...)
	if err != nil {
		t.Fatalf("vxdp %v: %v\n%s", args, err, out)
	}
	return out
}

// applyManifests creates every object of packaging/kubernetes/vxdp.yaml
// through the API server, which validates each as kubectl apply would
// have it validated, and reads each back.
func applyManifests(t *testing.T, kc kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile("../../packaging/kubernetes/vxdp.yaml")
	must(t, err)
	r := utilyaml.NewYAMLReader(bufioReader(b))
	kinds := map[string]bool{}
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		if len(bytes.TrimSpace(doc)) == 0 || strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("manifest: %v\n%s", err, doc)
		}
		kinds[gvk.Kind] = true
		if err := createAndRead(ctx, kc, obj); err != nil {
			t.Fatalf("%s: %v", gvk.Kind, err)
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
		"ValidatingAdmissionPolicyBinding", "ConfigMap", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("the manifests have no %s", k)
		}
	}
}

func createAndRead(ctx context.Context, kc kubernetes.Interface, obj runtime.Object) error {
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		if _, err := kc.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts); err != nil {
			return err
		}
		_, err := kc.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
		return err
	case *rbacv1.ClusterRole:
		if _, err := kc.RbacV1().ClusterRoles().Create(ctx, o, opts); err != nil {
			return err
		}
		got, err := kc.RbacV1().ClusterRoles().Get(ctx, o.Name, metav1.GetOptions{})
		if err == nil && len(got.Rules) != 2 {
			err = fmt.Errorf("read back %d rules", len(got.Rules))
		}
		return err
	case *rbacv1.ClusterRoleBinding:
		if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, o, opts); err != nil {
			return err
		}
		_, err := kc.RbacV1().ClusterRoleBindings().Get(ctx, o.Name, metav1.GetOptions{})
		return err
	case *admissionv1.ValidatingAdmissionPolicy:
		if _, err := kc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, opts); err != nil {
			return err
		}
		got, err := kc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, o.Name, metav1.GetOptions{})
		if err == nil && len(got.Spec.Validations) != 3 {
			err = fmt.Errorf("read back %d validations", len(got.Spec.Validations))
		}
		return err
	case *admissionv1.ValidatingAdmissionPolicyBinding:
		if _, err := kc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, opts); err != nil {
			return err
		}
		_, err := kc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, o.Name, metav1.GetOptions{})
		return err
	case *corev1.ConfigMap:
		if _, err := kc.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts); err != nil {
			return err
		}
		got, err := kc.CoreV1().ConfigMaps(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
		if err == nil && got.Data["ipam"] != "kubernetes" {
			err = fmt.Errorf("read back ipam %q", got.Data["ipam"])
		}
		return err
	case *appsv1.DaemonSet:
		if _, err := kc.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, opts); err != nil {
			return err
		}
		got, err := kc.AppsV1().DaemonSets(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
		if err == nil && (!got.Spec.Template.Spec.HostNetwork || len(got.Spec.Template.Spec.InitContainers) != 1 ||
			got.Spec.Template.Spec.ServiceAccountName != "vxdp") {
			err = fmt.Errorf("read back %+v", got.Spec.Template.Spec)
		}
		return err
	}
	return fmt.Errorf("no case for %T", obj)
}

// checkNodePolicy acts as the DaemonSet's service account with a token
// bound to node1 (impersonated: the test server allows it) and patches
// Nodes: its own Node's vxdp.io/ annotations pass, another Node or
// another annotation is refused by the admission policy.
func checkNodePolicy(t *testing.T, srv *kubetest.Server, kc kubernetes.Interface) {
	t.Helper()
	cfg := rest.CopyConfig(srv.RESTConfig())
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:kube-system:vxdp",
		Extra: map[string][]string{"authentication.kubernetes.io/node-name": {"node1"}}}
	sa, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	ctx := context.Background()
	patch := func(node, key string) error {
		p := fmt.Sprintf(`{"metadata":{"annotations":{%q:"x"}}}`, key)
		_, err := sa.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(p), metav1.PatchOptions{})
		return err
	}
	// The policy takes effect once the server has compiled it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := patch("node2", k8s.AnnotationPrefix+"probe")
		if err != nil && strings.Contains(err.Error(), "only the Node it runs on") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("patch of another Node as the agent's service account: %v, want refused by the policy", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := patch("node1", k8s.AnnotationPrefix+"probe"); err != nil {
		t.Fatalf("patch of its own Node's vxdp.io/ annotation: %v", err)
	}
	if err := patch("node1", "example.com/other"); err == nil || !strings.Contains(err.Error(), "only vxdp.io/ annotations") {
		t.Fatalf("patch of another annotation: %v, want refused by the policy", err)
	}
	if _, err := kc.CoreV1().Nodes().Patch(ctx, "node2", types.MergePatchType, []byte(`{"metadata":{"annotations":{"example.com/admin":"x"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("the administrator's patch: %v", err)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// stripComments drops the comment lines of a YAML document, to tell a
// document of comments alone.
func stripComments(doc []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(doc)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}
