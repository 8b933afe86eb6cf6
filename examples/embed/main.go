// Command embed shows vxdp used as a library: an engine built from a
// config struct, two pod endpoints on in-memory devices, and one packet
// moved from one pod to the other. An appliance does the same with real
// devices (dataplane/tun, dataplane/udp) instead of dataplane/fake.
package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run() error {
	log, _ := zap.NewDevelopment()
	defer log.Sync()

	// The devices: an underlay (tunnel payloads to and from addresses),
	// the host device and one per pod (IP packets). The
	// factory is how the engine asks for a pod's device.
	underlay := fake.NewUnderlay("underlay", netip.MustParseAddrPort("192.0.2.1:8472"), 32)
	host := fake.New("host", 32)
	pods := map[string]*fake.Device{}
	factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
		d := fake.New(s.Name, 32)
		pods[s.Name] = d
		return d, nil
	}

	eng, err := dataplane.New(dataplane.Config{
		NodeIP:      netip.MustParseAddr("192.0.2.1"),
		PodCIDR:     netip.MustParsePrefix("10.1.1.0/24"),
		TunnelPort:  encap.VXLANPort,
		UnderlayMTU: 1500,
	}, log, []packetio.Underlay{underlay}, host, factory, nil)
	if err != nil {
		return err
	}
	eng.Start()
	defer eng.Close()

	for _, ep := range []dataplane.EndpointSpec{
		{Name: "web", IP: netip.MustParseAddr("10.1.1.10"), Identity: 1000},
		{Name: "db", IP: netip.MustParseAddr("10.1.1.20"), Identity: 2000},
	} {
		if err := eng.AddEndpoint(ep); err != nil {
			return err
		}
	}
	if err := eng.AddNode(dataplane.NodeSpec{Name: "peer", IP: netip.MustParseAddr("192.0.2.2"), PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}); err != nil {
		return err
	}

	// web sends a UDP datagram to db.
	pkt := udp(netip.MustParseAddr("10.1.1.10"), netip.MustParseAddr("10.1.1.20"), []byte("hello from web"))
	pods["web"].Inject(pkt)
	got := pods["db"].WaitSent(1, 2*time.Second)
	if len(got) != 1 {
		return fmt.Errorf("db received %d packets", len(got))
	}
	ip := encap.IPv4(got[0])
	fmt.Printf("db received %d bytes from %s: %q (ttl %d)\n", len(got[0]), ip.SourceAddr(), got[0][28:], ip.TTL())

	// And to a pod on the peer node: it leaves through the underlay,
	// encapsulated with web's identity as VNI.
	pods["web"].Inject(udp(netip.MustParseAddr("10.1.1.10"), netip.MustParseAddr("10.1.2.5"), []byte("hello, peer")))
	out := underlay.WaitSent(1, 2*time.Second)
	if len(out) != 1 {
		return fmt.Errorf("underlay sent %d packets", len(out))
	}
	fmt.Printf("underlay sent a %d-byte VXLAN payload to %s, VNI %d\n", len(out[0].Payload), out[0].Meta.Remote, encap.VXLAN(out[0].Payload).VNI())

	st := eng.Stats()
	fmt.Printf("drops: %d\n", st.TotalDrops)
	return nil
}

func udp(src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	encap.IPv4(b).Encode(&encap.IPv4Fields{TotalLen: uint16(len(b)), TTL: 64, Protocol: encap.ProtoUDP,
		Source: src.As4(), Destination: dst.As4()})
	encap.UDP(b[20:]).Encode(40000, 7, uint16(8+len(payload)), 0)
	copy(b[28:], payload)
	sum := encap.PseudoHeaderSumV4(src.As4(), dst.As4(), encap.ProtoUDP, uint16(8+len(payload)))
	binary.BigEndian.PutUint16(b[26:], encap.Checksum(b[20:], sum))
	return b
}
