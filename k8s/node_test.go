package k8s

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, cidrs []string, annots map[string]string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annots},
		Spec:       corev1.NodeSpec{PodCIDRs: cidrs},
		Status:     corev1.NodeStatus{Addresses: addrs},
	}
}

func internal(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}

func external(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a}
}

func hostname(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeHostName, Address: a}
}

func TestConvert(t *testing.T) {
	pfx := netip.MustParsePrefix
	ip := netip.MustParseAddr
	tests := []struct {
		name      string
		node      *corev1.Node
		underlay6 bool
		want      Node
		err       string // substring; "" = success
	}{
		{
			name: "internal ip",
			node: node("n1", []string{"10.1.2.0/24"}, nil, hostname("n1"), external("198.51.100.7"), internal("192.0.2.2")),
			want: Node{Name: "n1", IP: ip("192.0.2.2"), PodCIDR: pfx("10.1.2.0/24")},
		},
		{
			name: "external when no internal",
			node: node("n1", []string{"10.1.2.0/24"}, nil, hostname("n1"), external("198.51.100.7")),
			want: Node{Name: "n1", IP: ip("198.51.100.7"), PodCIDR: pfx("10.1.2.0/24")},
		},
		{
			name:      "first internal of the underlay family",
			node:      node("n1", []string{"10.1.2.0/24", "fd00:1:2::/64"}, nil, internal("192.0.2.2"), internal("2001:db8::2"), internal("2001:db8::3")),
			underlay6: true,
			want:      Node{Name: "n1", IP: ip("2001:db8::2"), PodCIDR: pfx("10.1.2.0/24"), PodCIDR6: pfx("fd00:1:2::/64")},
		},
		{
			name: "annotation overrides the addresses",
			node: node("n1", []string{"10.1.2.0/24"}, map[string]string{AnnotationNodeIP: "192.0.2.99"}, internal("192.0.2.2")),
			want: Node{Name: "n1", IP: ip("192.0.2.99"), PodCIDR: pfx("10.1.2.0/24")},
		},
		{
			name: "tunnel annotations",
			node: node("n1", []string{"fd00:1:2::/64"}, map[string]string{AnnotationTunnelProtocol: "geneve", AnnotationTunnelPort: "6081", "other.io/x": "y"}, internal("192.0.2.2")),
			want: Node{Name: "n1", IP: ip("192.0.2.2"), PodCIDR6: pfx("fd00:1:2::/64"), Protocol: "geneve", Port: 6081},
		},
		{
			name: "spec.podCIDR alone",
			node: func() *corev1.Node {
				n := node("n1", nil, nil, internal("192.0.2.2"))
				n.Spec.PodCIDR = "10.1.3.0/24"
				return n
			}(),
			want: Node{Name: "n1", IP: ip("192.0.2.2"), PodCIDR: pfx("10.1.3.0/24")},
		},
		{
			name: "host bits masked",
			node: node("n1", []string{"10.1.2.7/24"}, nil, internal("192.0.2.2")),
			want: Node{Name: "n1", IP: ip("192.0.2.2"), PodCIDR: pfx("10.1.2.0/24")},
		},
		{name: "no pod cidr", node: node("n1", nil, nil, internal("192.0.2.2")), err: "no pod CIDR"},
		{name: "no address", node: node("n1", []string{"10.1.2.0/24"}, nil, hostname("n1")), err: "no address"},
		{name: "no address of the underlay family", node: node("n1", []string{"10.1.2.0/24"}, nil, internal("192.0.2.2")), underlay6: true, err: "no address"},
		{name: "two of one family", node: node("n1", []string{"10.1.2.0/24", "10.1.3.0/24"}, nil, internal("192.0.2.2")), err: "two CIDRs of one family"},
		{name: "bad cidr", node: node("n1", []string{"10.1.2.0/33"}, nil, internal("192.0.2.2")), err: "spec.podCIDRs"},
		{name: "bad address annotation", node: node("n1", []string{"10.1.2.0/24"}, map[string]string{AnnotationNodeIP: "node2"}, internal("192.0.2.2")), err: AnnotationNodeIP},
		{name: "bad protocol annotation", node: node("n1", []string{"10.1.2.0/24"}, map[string]string{AnnotationTunnelProtocol: "gre"}, internal("192.0.2.2")), err: AnnotationTunnelProtocol},
		{name: "bad port annotation", node: node("n1", []string{"10.1.2.0/24"}, map[string]string{AnnotationTunnelPort: "0"}, internal("192.0.2.2")), err: AnnotationTunnelPort},
		{name: "port too big", node: node("n1", []string{"10.1.2.0/24"}, map[string]string{AnnotationTunnelPort: "65536"}, internal("192.0.2.2")), err: AnnotationTunnelPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Convert(tt.node, tt.underlay6)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Convert = %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Convert = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConvertSentinels(t *testing.T) {
	if _, err := Convert(node("n1", nil, nil), false); !errors.Is(err, ErrNoPodCIDR) {
		t.Errorf("no pod CIDR: %v", err)
	}
	if _, err := Convert(node("n1", []string{"10.1.2.0/24"}, nil), false); !errors.Is(err, ErrNoAddress) {
		t.Errorf("no address: %v", err)
	}
}
