package config

import (
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
)

// guideVTEP is the VTEP configuration exactly as the example of Cilium's
// VTEP integration guide (docs.cilium.io/en/stable/network/vtep/) gives it.
const guideVTEP = `enable-vtep:   "true"
vtep-endpoint: "10.169.72.236    10.169.72.238"
vtep-cidr:     "10.1.1.0/24   10.1.2.0/24"
vtep-mask:     "255.255.255.0"
vtep-mac:      "82:36:4c:98:2e:56 82:36:4c:98:2e:58"
`

// guideNode is a node for the guide's VTEP example: its pods live in
// 10.0.0.0/16, which the VM routes to the node, while the VTEPs own
// 10.1.1.0/24 and 10.1.2.0/24.
const guideNode = `
node-name: node1
node-ip: 10.169.72.233
pod-cidr: 10.0.1.0/24
cluster-pool-ipv4-cidr: 10.0.0.0/16
nodes:
  - {name: node2, ip: 10.169.72.237, pod-cidr: 10.0.2.0/24}
endpoints:
  - {name: busybox, ip: 10.0.1.1, netns: /run/netns/pod1}
`

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestVTEPGuideVerbatim(t *testing.T) {
	c := parse(t, guideVTEP)
	want := []VTEP{
		{Endpoint: mustAddr("10.169.72.236"), CIDR: mustPrefix("10.1.1.0/24"), MAC: mac("82:36:4c:98:2e:56")},
		{Endpoint: mustAddr("10.169.72.238"), CIDR: mustPrefix("10.1.2.0/24"), MAC: mac("82:36:4c:98:2e:58")},
	}
	if !c.EnableVTEP || !reflect.DeepEqual(c.VTEPs, want) {
		t.Fatalf("VTEPs = %+v, enabled %v; want %+v", c.VTEPs, c.EnableVTEP, want)
	}

	// Parsed, but this node's own settings are missing.
	wantKey(t, c.Validate(), "node-ip")

	// On a node whose pods do not collide with the VTEPs it is valid; the
	// endpoint 10.0.1.1 is the guide's ping target, which here is the host
	// device's address, so use the next one.
	doc := strings.Replace(guideNode, "10.0.1.1,", "10.0.1.2,", 1) + guideVTEP
	v := valid(t, doc)
	if !reflect.DeepEqual(v.VTEPs, want) {
		t.Errorf("VTEPs after Validate = %+v", v.VTEPs)
	}

	// The same keys through a ConfigMap directory.
	dir := t.TempDir()
	writeDir(t, dir, map[string]string{
		"enable-vtep":   "true",
		"vtep-endpoint": "10.169.72.236    10.169.72.238",
		"vtep-cidr":     "10.1.1.0/24   10.1.2.0/24",
		"vtep-mask":     "255.255.255.0\n",
		"vtep-mac":      "82:36:4c:98:2e:56 82:36:4c:98:2e:58\n",
	})
	d := Default()
	if err := d.ApplyDir(dir); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.VTEPs, want) {
		t.Errorf("VTEPs from a directory = %+v", d.VTEPs)
	}
}

func TestVTEP(t *testing.T) {
	node := strings.Replace(guideNode, "10.0.1.1,", "10.0.1.2,", 1)
	vtep := func(eps, cidrs, mask, macs string) string {
		s := "enable-vtep: true\n"
		if eps != "" {
			s += fmt.Sprintf("vtep-endpoint: %q\n", eps)
		}
		if cidrs != "" {
			s += fmt.Sprintf("vtep-cidr: %q\n", cidrs)
		}
		if mask != "" {
			s += fmt.Sprintf("vtep-mask: %q\n", mask)
		}
		if macs != "" {
			s += fmt.Sprintf("vtep-mac: %q\n", macs)
		}
		return s
	}
	const m1, m2 = "82:36:4c:98:2e:56", "82:36:4c:98:2e:58"
	tests := []struct {
		name      string
		doc       string
		parseKey  string   // Parse fails with this key
		wantKey   string   // Validate fails with this key
		wantCIDRs []string // when valid
	}{
		{"one", vtep("10.169.72.236", "10.1.1.0/24", "", m1), "", "", []string{"10.1.1.0/24"}},
		{"bare cidr takes the mask", vtep("10.169.72.236 10.169.72.238", "10.1.1.0 10.1.2.0", "255.255.255.0", m1+" "+m2),
			"", "", []string{"10.1.1.0/24", "10.1.2.0/24"}},
		{"own prefix length wins", vtep("10.169.72.236 10.169.72.238", "10.1.1.0/25 10.1.2.0", "255.255.255.0", m1+" "+m2),
			"", "", []string{"10.1.1.0/25", "10.1.2.0/24"}},
		{"mask masks the address", vtep("10.169.72.236", "10.1.1.77", "255.255.255.0", m1), "", "", []string{"10.1.1.0/24"}},
		{"host route", vtep("10.169.72.236", "10.1.1.7/32", "", m1), "", "", []string{"10.1.1.7/32"}},
		{"bare cidr without a mask", vtep("10.169.72.236", "10.1.1.0", "", m1), "", "vtep-cidr", nil},
		{"fewer macs", vtep("10.169.72.236 10.169.72.238", "10.1.1.0/24 10.1.2.0/24", "", m1), "", "vtep-mac", nil},
		{"more cidrs", vtep("10.169.72.236", "10.1.1.0/24 10.1.2.0/24", "", m1), "", "vtep-cidr", nil},
		{"no endpoints", vtep("", "10.1.1.0/24", "", m1), "", "vtep-cidr", nil},
		{"nothing at all", "enable-vtep: true\n", "", "enable-vtep", nil},
		{"non-contiguous mask", vtep("10.169.72.236", "10.1.1.0", "255.255.0.255", m1), "vtep-mask", "", nil},
		{"bad cidr", vtep("10.169.72.236", "10.1.1.0/33", "", m1), "vtep-cidr", "", nil},
		{"bad endpoint", vtep("10.169.72.236.1", "10.1.1.0/24", "", m1), "vtep-endpoint", "", nil},
		{"IPv6 endpoint, IPv4 node-ip", vtep("2001:db8::9", "10.1.1.0/24", "", m1), "", "vtep-endpoint", nil},
		{"endpoints of both families", vtep("10.169.72.236 2001:db8::9", "10.1.1.0/24 10.1.2.0/24", "", m1+" "+m2), "vtep-endpoint", "", nil},
		{"bad mac", vtep("10.169.72.236", "10.1.1.0/24", "", "82:36:4c:98:2e"), "vtep-mac", "", nil},
		{"multicast mac", vtep("10.169.72.236", "10.1.1.0/24", "", "33:33:00:00:00:01"), "vtep-mac", "", nil},
		{"overlaps pod-cidr", vtep("10.169.72.236", "10.0.1.0/24", "", m1), "", "vtep-cidr", nil},
		{"inside pod-cidr", vtep("10.169.72.236", "10.0.1.128/25", "", m1), "", "vtep-cidr", nil},
		{"covers pod-cidr", vtep("10.169.72.236", "10.0.0.0/8", "", m1), "", "vtep-cidr", nil},
		{"overlaps a node's pod-cidr", vtep("10.169.72.236", "10.0.2.0/24", "", m1), "", "vtep-cidr", nil},
		{"VTEPs overlap", vtep("10.169.72.236 10.169.72.238", "10.1.0.0/16 10.1.2.0/24", "", m1+" "+m2), "", "vtep-cidr", nil},
		{"cidr holds node-ip", vtep("10.169.72.236", "10.169.72.0/24", "", m1), "", "vtep-cidr", nil},
		{"endpoint is node-ip", vtep("10.169.72.233", "10.1.1.0/24", "", m1), "", "vtep-endpoint", nil},
		{"endpoint is a node", vtep("10.169.72.237", "10.1.1.0/24", "", m1), "", "vtep-endpoint", nil},
		{"shared endpoint", vtep("10.169.72.236 10.169.72.236", "10.1.1.0/24 10.1.2.0/24", "", m1+" "+m2),
			"", "", []string{"10.1.1.0/24", "10.1.2.0/24"}},
		{"ipsec conflict", vtep("10.169.72.236", "10.1.1.0/24", "", m1) + "enable-ipsec: true\n", "", "enable-vtep", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(node + tt.doc))
			if tt.parseKey != "" {
				wantKey(t, err, tt.parseKey)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = c.Validate()
			if tt.wantKey != "" {
				wantKey(t, err, tt.wantKey)
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			var got []string
			for _, v := range c.VTEPs {
				got = append(got, v.CIDR.String())
			}
			if !reflect.DeepEqual(got, tt.wantCIDRs) {
				t.Errorf("CIDRs = %v, want %v", got, tt.wantCIDRs)
			}
		})
	}
}

// TestVTEPOrder: the result does not depend on the order of the keys,
// within a file or across Set calls.
func TestVTEPOrder(t *testing.T) {
	keys := [][2]string{
		{"vtep-endpoint", "10.169.72.236"},
		{"vtep-cidr", "10.1.1.0"},
		{"vtep-mask", "255.255.255.0"},
		{"vtep-mac", "82:36:4c:98:2e:56"},
	}
	want := []VTEP{{Endpoint: mustAddr("10.169.72.236"), CIDR: mustPrefix("10.1.1.0/24"), MAC: mac("82:36:4c:98:2e:56")}}
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}} {
		var doc strings.Builder
		c := Default()
		for _, i := range order {
			fmt.Fprintf(&doc, "%s: %s\n", keys[i][0], keys[i][1])
			if err := c.Set(keys[i][0], keys[i][1]); err != nil {
				t.Fatal(err)
			}
		}
		p := parse(t, doc.String())
		if !reflect.DeepEqual(p.VTEPs, want) || !reflect.DeepEqual(c.VTEPs, want) {
			t.Errorf("order %v: Parse %+v, Set %+v", order, p.VTEPs, c.VTEPs)
		}
	}
}

// TestVTEPDisabled: VTEP keys without enable-vtep are kept, but not used,
// so they are not checked against the pod CIDRs.
func TestVTEPDisabled(t *testing.T) {
	doc := base + strings.Replace(guideVTEP, `"true"`, `"false"`, 1)
	c := valid(t, doc) // the guide's 10.1.1.0/24 is base's pod-cidr
	if c.EnableVTEP || len(c.VTEPs) != 2 {
		t.Errorf("EnableVTEP %v, VTEPs %+v", c.EnableVTEP, c.VTEPs)
	}
	// Absent enable-vtep means false too.
	doc = base + strings.Replace(guideVTEP, `enable-vtep:   "true"`+"\n", "", 1)
	if c := valid(t, doc); c.EnableVTEP || len(c.VTEPs) != 2 {
		t.Errorf("EnableVTEP %v, VTEPs %+v", c.EnableVTEP, c.VTEPs)
	}
	// Enabling them on that node is an overlap.
	c = parse(t, base+guideVTEP)
	e := wantKey(t, c.Validate(), "vtep-cidr")
	if e.Value != "10.1.1.0/24" {
		t.Errorf("Value = %q", e.Value)
	}
}

func TestVTEPMany(t *testing.T) {
	var eps, cidrs, macs []string
	for i := 0; i < 1000; i++ {
		eps = append(eps, fmt.Sprintf("192.0.%d.%d", 2+i/250, 1+i%250))
		cidrs = append(cidrs, fmt.Sprintf("172.%d.%d.0/24", 16+i/256, i%256))
		macs = append(macs, fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff))
	}
	c := parse(t, base)
	for k, v := range map[string]string{
		"enable-vtep": "true", "vtep-endpoint": strings.Join(eps, " "),
		"vtep-cidr": strings.Join(cidrs, "\n"), "vtep-mac": strings.Join(macs, "\t"),
	} {
		if err := c.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Validate(); err != nil || len(c.VTEPs) != 1000 {
		t.Fatalf("%d VTEPs, err %v", len(c.VTEPs), err)
	}
}

// TestVTEPInCode: a Config built in code may list VTEPs directly.
func TestVTEPInCode(t *testing.T) {
	c := parse(t, base)
	c.EnableVTEP = true
	c.VTEPs = []VTEP{{Endpoint: mustAddr("10.169.72.236"), CIDR: mustPrefix("10.3.0.0/16"), MAC: mac("82:36:4c:98:2e:56")}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.VTEPs[0].MAC = nil
	wantKey(t, c.Validate(), "vtep-mac")
	c.VTEPs[0].MAC = mac("82:36:4c:98:2e:56")
	c.VTEPs[0].Endpoint = mustAddr("2001:db8::1")
	wantKey(t, c.Validate(), "vtep-endpoint")
}

// guideNode6 is guideNode on an IPv6 underlay: the pods and the VTEP
// CIDRs stay IPv4, the node and its peer have IPv6 underlay addresses.
const guideNode6 = `
node-name: node1
node-ip: fd69:72::233
pod-cidr: 10.0.1.0/24
cluster-pool-ipv4-cidr: 10.0.0.0/16
nodes:
  - {name: node2, ip: "fd69:72::237", pod-cidr: 10.0.2.0/24}
endpoints:
  - {name: busybox, ip: 10.0.1.2, netns: /run/netns/pod1}
`

// TestVTEPIPv6Underlay: on an IPv6 underlay the VTEP endpoints are IPv6,
// the CIDRs IPv4 as ever; an endpoint of the other family is refused with
// vtep-endpoint named, from the file and from the API's parser alike.
func TestVTEPIPv6Underlay(t *testing.T) {
	const m1, m2 = "82:36:4c:98:2e:56", "82:36:4c:98:2e:58"
	vtep := func(eps, cidrs, macs string) string {
		return fmt.Sprintf("enable-vtep: true\nvtep-endpoint: %q\nvtep-cidr: %q\nvtep-mac: %q\n", eps, cidrs, macs)
	}
	tests := []struct {
		name, doc, parseKey, wantKey string
	}{
		{"IPv6 endpoints", vtep("fd69:72::236 fd69:72::238", "10.1.1.0/24 10.1.2.0/24", m1+" "+m2), "", ""},
		{"IPv4 endpoint", vtep("10.169.72.236", "10.1.1.0/24", m1), "", "vtep-endpoint"},
		{"mixed endpoints", vtep("fd69:72::236 10.169.72.238", "10.1.1.0/24 10.1.2.0/24", m1+" "+m2), "vtep-endpoint", ""},
		{"IPv6 cidr", vtep("fd69:72::236", "fd00:1:5::/64", m1), "vtep-cidr", ""},
		{"link-local endpoint", vtep("fe80::236", "10.1.1.0/24", m1), "", "vtep-endpoint"},
		{"zoned endpoint", vtep("fe80::236%eth0", "10.1.1.0/24", m1), "vtep-endpoint", ""},
		{"mapped endpoint", vtep("::ffff:10.169.72.236", "10.1.1.0/24", m1), "vtep-endpoint", ""},
		{"endpoint is node-ip", vtep("fd69:72::233", "10.1.1.0/24", m1), "", "vtep-endpoint"},
		{"endpoint is a node", vtep("fd69:72::237", "10.1.1.0/24", m1), "", "vtep-endpoint"},
		{"overlaps pod-cidr", vtep("fd69:72::236", "10.0.1.0/24", m1), "", "vtep-cidr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(guideNode6 + tt.doc))
			if tt.parseKey != "" {
				wantKey(t, err, tt.parseKey)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = c.Validate()
			if tt.wantKey != "" {
				e := wantKey(t, err, tt.wantKey)
				t.Logf("refused: %v", e)
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if len(c.VTEPs) != 2 || c.VTEPs[0].Endpoint != mustAddr("fd69:72::236") || c.VTEPs[1].CIDR != mustPrefix("10.1.2.0/24") {
				t.Errorf("VTEPs = %+v", c.VTEPs)
			}
		})
	}

	// The API's path: the same checks against the node's family.
	for _, tt := range []struct {
		nodeIP, endpoint, wantKey string
	}{
		{"fd69:72::233", "fd69:72::236", ""},
		{"fd69:72::233", "10.169.72.236", "vtep-endpoint"},
		{"10.169.72.233", "10.169.72.236", ""},
		{"10.169.72.233", "fd69:72::236", "vtep-endpoint"},
		{"fd69:72::233", "fe80::1", "vtep-endpoint"},
	} {
		l := Local{NodeIP: mustAddr(tt.nodeIP)}
		_, e := l.ParseVTEP("10.1.1.0/24", tt.endpoint, m1)
		switch {
		case tt.wantKey == "" && e != nil:
			t.Errorf("node-ip %s, endpoint %s: %v", tt.nodeIP, tt.endpoint, e)
		case tt.wantKey != "" && (e == nil || e.Key != tt.wantKey):
			t.Errorf("node-ip %s, endpoint %s: error %v, want one naming %s", tt.nodeIP, tt.endpoint, e, tt.wantKey)
		}
	}
}
