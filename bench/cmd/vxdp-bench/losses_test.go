//go:build linux

package main

import (
	"strings"
	"testing"
)

func TestParseUDPCounters(t *testing.T) {
	snmp := `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 100
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 1000 7 30 2000 25 4 1 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 99 99 0 99 99 0 0 0
Ip6InReceives                   	12
Udp6InDatagrams                 	40
Udp6NoPorts                     	2
Udp6InErrors                    	5
Udp6RcvbufErrors                	5
Udp6SndbufErrors                	1
UdpLite6RcvbufErrors            	77
`
	got := parseUDPCounters([]byte(snmp))
	want := dropCounters{UDPRcvbuf: 30, UDPSndbuf: 5, UDPInErrors: 35, UDPNoPorts: 9}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseLinkDrops(t *testing.T) {
	js := `[{"ifname":"lo","stats64":{"rx":{"bytes":0,"dropped":1},"tx":{"dropped":2}}},
{"ifname":"vxdp0","stats64":{"rx":{"dropped":10},"tx":{"dropped":398610}}}]`
	tx, rx, err := parseLinkDrops([]byte(js))
	if err != nil || tx != 398612 || rx != 11 {
		t.Errorf("got tx %d rx %d err %v, want 398612 11", tx, rx, err)
	}
	if _, _, err := parseLinkDrops([]byte("not json")); err == nil {
		t.Error("no error for output that is not JSON")
	}
}

func TestLossLine(t *testing.T) {
	before := lossSnapshot{NS: map[string]dropCounters{
		"pod1": {LinkTxDropped: 100},
		"pod2": {UDPRcvbuf: 5, UDPInErrors: 6, UDPNoPorts: 1},
	}, AgentDrops: []uint64{3, 4}}
	after := lossSnapshot{NS: map[string]dropCounters{
		"pod1":  {LinkTxDropped: 500},
		"node1": {},
		"node2": {},
		"pod2":  {UDPRcvbuf: 25, UDPInErrors: 27, UDPNoPorts: 11},
	}, AgentDrops: []uint64{3, 9}}
	got := lossLine(1000, 450, after.sub(before))
	for _, want := range []string{"of 1000 sent, 450 received", "pod1: link tx 400",
		"pod2: UDP receive buffer 20, UDP other input errors 1", "node2 agent: 5 dropped"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "node1") {
		t.Errorf("%q names node1, whose counters did not move", got)
	}
	if got := lossLine(10, 10, &lossSnapshot{NS: map[string]dropCounters{}}); got != "of 10 sent, 10 received, none lost on a counter" {
		t.Errorf("nothing lost: %q", got)
	}
}
