package encap

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// rfc6040Table3 is RFC 6040's table 3 as printed: a row per arriving inner
// ECN field, a column per arriving outer one (Not-ECT, ECT(0), ECT(1), CE),
// "drop" where the packet is dropped, "!!!" after the combinations the RFC
// asks a decapsulator to log as anomalies and "!" after the one it asks
// not to.
var rfc6040Table3 = map[ECN][4]string{
	ECNNotECT: {"Not-ECT", "Not-ECT !!!", "Not-ECT !!!", "drop !!!"},
	ECNECT0:   {"ECT(0)", "ECT(0)", "ECT(1)", "CE"},
	ECNECT1:   {"ECT(1)", "ECT(1) !", "ECT(1)", "CE"},
	ECNCE:     {"CE", "CE", "CE !!!", "CE"},
}

var rfc6040Columns = [4]ECN{ECNNotECT, ECNECT0, ECNECT1, ECNCE}

func TestDecapECNTable(t *testing.T) {
	for inner, row := range rfc6040Table3 {
		for i, cell := range row {
			outer := rfc6040Columns[i]
			out, drop, anomaly := DecapECN(outer, inner)
			got := out.String()
			if drop {
				got = "drop"
			}
			if anomaly {
				got += " !!!"
			} else if outer == ECNECT0 && inner == ECNECT1 {
				got += " !"
			}
			if got != cell {
				t.Errorf("outer %v, inner %v: %q, RFC 6040 says %q", outer, inner, got, cell)
			}
		}
	}
	// Bits above the field are ignored.
	if out, drop, _ := DecapECN(ECNCE|0xfc, ECNECT0|0x04); out != ECNCE || drop {
		t.Errorf("high bits change the answer: %v %v", out, drop)
	}
}

func TestEncapTOSCopies(t *testing.T) {
	for tos := 0; tos < 256; tos++ {
		o := EncapTOS(uint8(tos))
		if DSCPOf(o) != uint8(tos)>>2 || ECNOf(o) != ECN(tos&3) {
			t.Fatalf("inner %#02x: outer %#02x", tos, o)
		}
	}
}

// Rewriting the ECN of an inner IPv4 packet keeps its header checksum
// valid and touches only the two bits, for every TOS on random headers.
func TestSetECNV4(t *testing.T) {
	r := rand.New(rand.NewPCG(60, 40))
	for i := 0; i < 4096; i++ {
		b := make([]byte, IPv4MinLen)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		b[0] = 0x45
		ip := IPv4(b)
		ip.SetHeaderChecksum()
		e := ECN(r.Uint32() & 3)
		before := bytes.Clone(b)
		ip.SetECN(e)
		if !ip.HeaderChecksumValid() {
			t.Fatalf("%x: checksum wrong after SetECN(%v)", before, e)
		}
		if ip.ECN() != e || ip.DSCP() != IPv4(before).DSCP() || !bytes.Equal(b[:1], before[:1]) || !bytes.Equal(b[2:10], before[2:10]) || !bytes.Equal(b[12:], before[12:]) {
			t.Fatalf("SetECN(%v) changed more than the ECN bits: %x -> %x", e, before, b)
		}
		tos := uint8(r.Uint32())
		ip.SetTOS(tos)
		if ip.TOS() != tos || !ip.HeaderChecksumValid() {
			t.Fatalf("SetTOS(%#x): %#x, checksum valid %v", tos, ip.TOS(), ip.HeaderChecksumValid())
		}
	}
}

func TestDecapECNPackets(t *testing.T) {
	for inner := range ECN(4) {
		for outer := range ECN(4) {
			want, wantDrop, wantAnomaly := DecapECN(outer, inner)

			v4 := mustHex(t, innerUDP)
			IPv4(v4).SetTOS(0xb8 | uint8(inner)) // EF
			before := bytes.Clone(v4)
			drop, anomaly := DecapECNV4(outer, IPv4(v4))
			if drop != wantDrop || anomaly != wantAnomaly {
				t.Fatalf("v4 outer %v inner %v: drop %v anomaly %v", outer, inner, drop, anomaly)
			}
			switch {
			case drop && !bytes.Equal(v4, before):
				t.Fatalf("v4 outer %v inner %v: a dropped packet was changed", outer, inner)
			case !drop && (IPv4(v4).ECN() != want || IPv4(v4).DSCP() != 0xb8>>2 || !IPv4(v4).HeaderChecksumValid()):
				t.Fatalf("v4 outer %v inner %v: tos %#x checksum valid %v", outer, inner, IPv4(v4).TOS(), IPv4(v4).HeaderChecksumValid())
			}

			v6 := udp6(t, []byte("vxdp"))
			IPv6(v6).SetTrafficClass(0xb8 | uint8(inner))
			before = bytes.Clone(v6)
			drop, anomaly = DecapECNV6(outer, IPv6(v6))
			if drop != wantDrop || anomaly != wantAnomaly {
				t.Fatalf("v6 outer %v inner %v: drop %v anomaly %v", outer, inner, drop, anomaly)
			}
			switch {
			case drop && !bytes.Equal(v6, before):
				t.Fatalf("v6 outer %v inner %v: a dropped packet was changed", outer, inner)
			case !drop && (IPv6(v6).ECN() != want || IPv6(v6).DSCP() != 0xb8>>2 || IPv6(v6).FlowLabel() != 0x12345 || IPVersion(v6) != 6):
				t.Fatalf("v6 outer %v inner %v: first word %x", outer, inner, v6[:4])
			}
			if !bytes.Equal(v6[2:], before[2:]) {
				t.Fatalf("v6 outer %v inner %v: more than the traffic class changed", outer, inner)
			}
		}
	}
}

func TestECNString(t *testing.T) {
	for e, s := range map[ECN]string{ECNNotECT: "Not-ECT", ECNECT1: "ECT(1)", ECNECT0: "ECT(0)", ECNCE: "CE"} {
		if e.String() != s {
			t.Errorf("%d: %q", e, e.String())
		}
	}
}

func TestECNAccessors(t *testing.T) {
	v6 := udp6(t, nil)
	IPv6(v6).SetTrafficClass(0xb9)
	v4 := mustHex(t, innerUDP)
	IPv4(v4).SetTOS(0xb9)
	if IPv6(v6).DSCP() != 46 || IPv6(v6).ECN() != ECNECT1 || IPv4(v4).DSCP() != 46 || IPv4(v4).ECN() != ECNECT1 {
		t.Fatalf("EF with ECT(1): v6 %d %v, v4 %d %v", IPv6(v6).DSCP(), IPv6(v6).ECN(), IPv4(v4).DSCP(), IPv4(v4).ECN())
	}
	if DSCPOf(0xb9) != 46 || ECNOf(0xb9) != ECNECT1 {
		t.Fatal("DSCPOf, ECNOf")
	}
}
