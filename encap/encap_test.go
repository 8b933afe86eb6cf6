package encap

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func init() {
	// gopacket knows VXLAN on IANA's port only; 8472 is Linux's and ours.
	layers.RegisterUDPPortLayerType(VXLANPort, layers.LayerTypeVXLAN)
}

// checkGopacketChecksum fails t unless gopacket computes the checksum the
// outer IPv4 header ip carries.
func checkGopacketChecksum(t *testing.T, ip *layers.IPv4) {
	t.Helper()
	csum := ip.Checksum
	if err := ip.SerializeTo(gopacket.NewSerializeBuffer(), gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
		t.Fatal(err)
	}
	if ip.Checksum != csum {
		t.Errorf("outer ip checksum %#x, gopacket computes %#x", csum, ip.Checksum)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// innerUDP is 10.1.1.154:40000 -> 10.1.2.154:5201, TTL 63, DF, payload
// "vxdp", serialised by gopacket (not by this package).
const innerUDP = "45000020123440003f1111640a01019a0a01029a9c401451000c5c2676786470"

// outerVXLAN is innerUDP encapsulated by node 10.169.72.233 towards
// 10.169.72.238:8472 with VNI 1000 and source port 51234.
const outerVXLAN = "45000052000000004011d3720aa948e90aa948ee" + // IPv4
	"c822211800" + "3e0000" + // UDP (length 62, checksum 0)
	"080000000003e800" + // VXLAN, I flag, VNI 1000
	"02580aa948ee02580aa948e90800" + // inner Ethernet
	innerUDP

var testTunnel = tunnelV4{
	Src:     [4]byte{10, 169, 72, 233},
	Dst:     [4]byte{10, 169, 72, 238},
	DstPort: 8472,
	SrcMAC:  TunnelMAC(netip.MustParseAddr("10.169.72.233")),
	DstMAC:  TunnelMAC(netip.MustParseAddr("10.169.72.238")),
}

func TestEncapVXLANv4Fixture(t *testing.T) {
	inner := mustHex(t, innerUDP)
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	o, err := encapVXLANv4(buf, Headroom, len(inner), &testTunnel, 1000, 51234)
	if err != nil {
		t.Fatal(err)
	}
	if o != Headroom-VXLANOverheadV4 {
		t.Fatalf("outer starts at %d, want %d", o, Headroom-VXLANOverheadV4)
	}
	got := buf[o:]
	if want := mustHex(t, outerVXLAN); !bytes.Equal(got, want) {
		t.Fatalf("encap mismatch\n got %x\nwant %x", got, want)
	}

	// An independent decoder must agree on every field.
	pkt := gopacket.NewPacket(got, layers.LayerTypeIPv4, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ip.SrcIP.Equal(net.IP{10, 169, 72, 233}) || !ip.DstIP.Equal(net.IP{10, 169, 72, 238}) || ip.TTL != 64 || ip.Length != 82 {
		t.Errorf("outer ip: %+v", ip)
	}
	checkGopacketChecksum(t, ip)
	udp := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if udp.SrcPort != 51234 || udp.DstPort != 8472 || udp.Length != 62 || udp.Checksum != 0 {
		t.Errorf("outer udp: %+v", udp)
	}
	vx := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	if !vx.ValidIDFlag || vx.VNI != 1000 {
		t.Errorf("vxlan: %+v", vx)
	}
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth.SrcMAC.String() != "02:58:0a:a9:48:e9" || eth.DstMAC.String() != "02:58:0a:a9:48:ee" || eth.EthernetType != layers.EthernetTypeIPv4 {
		t.Errorf("inner ethernet: %+v", eth)
	}
	if !bytes.Equal(eth.Payload, inner) {
		t.Errorf("inner packet changed")
	}
}

func TestDecapRoundTrip(t *testing.T) {
	pkt := mustHex(t, outerVXLAN)
	o, err := ParseOuterV4(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if o.Src != netip.MustParseAddr("10.169.72.233") || o.Dst != netip.MustParseAddr("10.169.72.238") || o.SrcPort != 51234 || o.DstPort != 8472 {
		t.Fatalf("outer %+v", o)
	}
	vx := VXLAN(pkt[o.Payload : o.Payload+o.PayloadLen])
	if err := vx.Validate(0); err != nil {
		t.Fatal(err)
	}
	if vx.VNI() != 1000 {
		t.Fatalf("vni %d", vx.VNI())
	}
	eth := Ethernet(vx[VXLANLen:])
	if eth.Source() != testTunnel.SrcMAC || eth.Destination() != testTunnel.DstMAC || eth.EtherType() != EtherTypeIPv4 {
		t.Fatalf("eth %s %s %#x", eth.Source(), eth.Destination(), eth.EtherType())
	}
	inner := IPv4(eth[EthernetLen:])
	if !inner.IsValid(len(inner)) || !bytes.Equal(inner, mustHex(t, innerUDP)) {
		t.Fatalf("inner %x", []byte(inner))
	}
	// Re-encapsulating the decapsulated inner packet reproduces the bytes.
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	start, err := encapVXLANv4(buf, Headroom, len(inner), &testTunnel, vx.VNI(), o.SrcPort)
	if err != nil || !bytes.Equal(buf[start:], pkt) {
		t.Fatalf("re-encap differs: %v\n%x\n%x", err, buf[start:], pkt)
	}
}

func TestVXLANValidate(t *testing.T) {
	tests := []struct {
		name     string
		hdr      string
		tolerate uint32
		want     error
	}{
		{"ok", "0800000000000200", 0, nil},
		{"I clear", "0000000000000200", 0, ErrVXLANNoI},
		{"reserved flag", "0c00000000000200", 0, ErrVXLANRsvd},
		{"reserved flag tolerated", "0c00000000000200", 0x04000000, nil},
		{"reserved 24 bits", "0800010000000200", 0, ErrVXLANRsvd},
		{"gbp-like bits tolerated", "88000abc00000200", 0x8000ffff, nil},
		{"last byte", "0800000000000201", 0, ErrVXLANRsvd},
		{"last byte never tolerated", "0800000000000201", 0xffffffff, ErrVXLANRsvd},
		{"truncated", "08000000000002", 0, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := VXLAN(mustHex(t, tt.hdr)).Validate(tt.tolerate); err != tt.want {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
	if err := VXLAN(make([]byte, 8)).Encode(1 << 24); err != ErrVNIRange {
		t.Fatalf("VNI over 24 bits accepted: %v", err)
	}
	b := VXLAN(make([]byte, 8))
	if err := b.Encode(MaxVNI); err != nil || b.VNI() != MaxVNI || b.Validate(0) != nil {
		t.Fatalf("max VNI: %v %d", err, b.VNI())
	}
}

func TestParseOuterV4Rejects(t *testing.T) {
	good := mustHex(t, outerVXLAN)
	mut := func(f func(b []byte)) []byte { b := append([]byte(nil), good...); f(b); return b }
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"short", good[:19]},
		{"version 6", mut(func(b []byte) { b[0] = 0x65 })},
		{"ihl 4", mut(func(b []byte) { b[0] = 0x44 })},
		{"total length beyond packet", mut(func(b []byte) { b[3] = 0xff })},
		{"total length below header", mut(func(b []byte) { b[2], b[3] = 0, 10 })},
		{"not udp", mut(func(b []byte) { b[9] = 6 })},
		{"fragment", mut(func(b []byte) { b[6] = 0x20 })},
		{"udp length beyond ip", mut(func(b []byte) { b[24], b[25] = 0, 200 })},
		{"udp length below header", mut(func(b []byte) { b[24], b[25] = 0, 7 })},
		{"only ip header", good[:20]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseOuterV4(tt.pkt); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestDecrementTTL(t *testing.T) {
	for ttl := 2; ttl < 256; ttl++ {
		ip := IPv4(mustHex(t, innerUDP))
		ip[8] = byte(ttl)
		ip.SetHeaderChecksum()
		ip.DecrementTTL()
		if ip.TTL() != uint8(ttl-1) || !ip.HeaderChecksumValid() {
			t.Fatalf("ttl %d: got ttl %d, checksum valid %v", ttl, ip.TTL(), ip.HeaderChecksumValid())
		}
	}
}

func TestSourcePortRange(t *testing.T) {
	seen := map[uint16]bool{}
	ip := IPv4(mustHex(t, innerUDP))
	for i := 0; i < 4096; i++ {
		ip[20], ip[21] = byte(i>>8), byte(i)
		p := SourcePort(FlowHashV4(ip))
		if p < SourcePortMin {
			t.Fatalf("port %d below range", p)
		}
		seen[p] = true
	}
	if len(seen) < 3500 {
		t.Fatalf("4096 flows used only %d source ports", len(seen))
	}
	// Same flow, same port: what is not the flow (TTL, ID, checksum,
	// payload) does not move it.
	other := IPv4(append([]byte(nil), ip...))
	other.DecrementTTL()
	other.SetID(other.ID() + 1)
	other[len(other)-1]++
	if FlowHashV4(other) != FlowHashV4(ip) {
		t.Fatal("packets of one flow hash differently")
	}
}

func TestICMPv4Error(t *testing.T) {
	orig := IPv4(mustHex(t, innerUDP))
	dst := make([]byte, ICMPv4ErrorMaxLen)
	n := BuildICMPv4Error(dst, orig, [4]byte{10, 1, 1, 1}, ICMPv4DestUnreach, ICMPv4FragNeeded, 1450)
	pkt := gopacket.NewPacket(dst[:n], layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ic, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || ic == nil {
		t.Fatalf("gopacket cannot decode: %v", pkt)
	}
	if !ip.SrcIP.Equal(net.IP{10, 1, 1, 1}) || !ip.DstIP.Equal(net.IP{10, 1, 1, 154}) || ip.Protocol != layers.IPProtocolICMPv4 {
		t.Fatalf("ip %+v", ip)
	}
	if ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || ic.Seq != 1450 {
		t.Fatalf("icmp %v seq/mtu %d", ic.TypeCode, ic.Seq)
	}
	if Checksum(dst[20:n], 0) != 0 || !IPv4(dst).HeaderChecksumValid() {
		t.Fatal("bad checksum")
	}
	if !bytes.Equal(ic.Payload, orig) {
		t.Fatal("quote differs")
	}
	// Never an error about an error.
	if MayAnswerWithICMPv4(IPv4(dst[:n])) {
		t.Fatal("would answer an ICMP error")
	}
	if !MayAnswerWithICMPv4(orig) {
		t.Fatal("would not answer a UDP packet")
	}
}

func TestIPv4IsValid(t *testing.T) {
	b := mustHex(t, innerUDP)
	if !IPv4(b).IsValid(len(b)) {
		t.Fatal("valid packet refused")
	}
	for i := 0; i < len(b); i++ {
		if IPv4(b[:i]).IsValid(i) {
			t.Fatalf("truncated to %d accepted", i)
		}
	}
	if IPv4(b).IsValid(len(b) + 1) {
		t.Fatal("size beyond slice accepted")
	}
}

func TestMACUnicast(t *testing.T) {
	if (MAC{}).IsUnicast() || (MAC{1, 0, 0, 0, 0, 1}).IsUnicast() || !(MAC{2, 0, 0, 0, 0, 1}).IsUnicast() {
		t.Fatal("IsUnicast wrong")
	}
	if s := (MAC{0x82, 0x36, 0x4c, 0x98, 0x2e, 0x56}).String(); s != "82:36:4c:98:2e:56" {
		t.Fatal(s)
	}
}

func TestZeroAllocs(t *testing.T) {
	inner := mustHex(t, innerUDP)
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	outer := mustHex(t, outerVXLAN)
	if n := testing.AllocsPerRun(1000, func() {
		ip := IPv4(buf[Headroom:])
		_, _ = encapVXLANv4(buf, Headroom, len(inner), &testTunnel, 1000, SourcePort(FlowHashV4(ip)))
	}); n != 0 {
		t.Errorf("encap allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		o, err := ParseOuterV4(outer)
		if err != nil {
			panic(err)
		}
		vx := VXLAN(outer[o.Payload:])
		_ = vx.Validate(0)
		_ = IPv4(outer[o.Payload+VXLANLen+EthernetLen:]).IsValid(len(inner))
	}); n != 0 {
		t.Errorf("decap allocates %v times", n)
	}
}
