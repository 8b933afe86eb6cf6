//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// dropCounters are the counters of one namespace that rise when a
// datagram is lost there: the links' drops and the UDP sockets' errors
// (IPv4 and IPv6 summed).
type dropCounters struct {
	LinkTxDropped uint64 `json:"link_tx_dropped"`
	LinkRxDropped uint64 `json:"link_rx_dropped"`
	UDPRcvbuf     uint64 `json:"udp_rcvbuf_errors"`
	UDPSndbuf     uint64 `json:"udp_sndbuf_errors"`
	UDPInErrors   uint64 `json:"udp_in_errors"` // includes RcvbufErrors
	// UDPNoPorts counts datagrams to a port nobody listens on: at the
	// receiving pod, those that came after the receiver closed. It is
	// left out of the report's line: a UDP GSO super-packet (as vxdp
	// writes into a pod) counts once, so it undercounts.
	UDPNoPorts uint64 `json:"udp_no_ports"`
}

func (c dropCounters) sub(b dropCounters) dropCounters {
	return dropCounters{
		LinkTxDropped: c.LinkTxDropped - b.LinkTxDropped,
		LinkRxDropped: c.LinkRxDropped - b.LinkRxDropped,
		UDPRcvbuf:     c.UDPRcvbuf - b.UDPRcvbuf,
		UDPSndbuf:     c.UDPSndbuf - b.UDPSndbuf,
		UDPInErrors:   c.UDPInErrors - b.UDPInErrors,
		UDPNoPorts:    c.UDPNoPorts - b.UDPNoPorts,
	}
}

// lossSnapshot holds the counters of the four namespaces of the picture
// and the agents' own drop totals (vxdp modes).
type lossSnapshot struct {
	NS         map[string]dropCounters `json:"namespaces"`
	AgentDrops []uint64                `json:"agent_drops,omitempty"`
}

// sub is the rise of every counter from b to s: where the datagrams of
// one packet-rate test were lost.
func (s lossSnapshot) sub(b lossSnapshot) *lossSnapshot {
	d := &lossSnapshot{NS: map[string]dropCounters{}}
	for ns, c := range s.NS {
		d.NS[ns] = c.sub(b.NS[ns])
	}
	if len(s.AgentDrops) == len(b.AgentDrops) {
		for i := range s.AgentDrops {
			d.AgentDrops = append(d.AgentDrops, s.AgentDrops[i]-b.AgentDrops[i])
		}
	}
	return d
}

// lossNamespaces are the namespaces read, in the order of the path.
func lossNamespaces() []string {
	return []string{nodes[0].podNS, nodes[0].name, nodes[1].name, nodes[1].podNS}
}

// snapshotLosses reads the drop counters, the agents' with the vxdp
// modes; any counter that cannot be read fails the whole snapshot, and
// the report gives the error instead of the losses.
func (r *runner) snapshotLosses(ctx context.Context) (lossSnapshot, error) {
	s := lossSnapshot{NS: map[string]dropCounters{}}
	for _, ns := range lossNamespaces() {
		out, err := r.e.lab.exec(ctx, ns, cmdTimeout, "cat", "/proc/net/snmp", "/proc/net/snmp6")
		if err != nil {
			return s, fmt.Errorf("%s: snmp: %w", ns, err)
		}
		c := parseUDPCounters(out)
		links, err := r.e.lab.exec(ctx, ns, cmdTimeout, "ip", "-s", "-j", "link", "show")
		if err != nil {
			return s, fmt.Errorf("%s: links: %w", ns, err)
		}
		tx, rx, err := parseLinkDrops(links)
		if err != nil {
			return s, fmt.Errorf("%s: links: %w", ns, err)
		}
		c.LinkTxDropped, c.LinkRxDropped = tx, rx
		s.NS[ns] = c
	}
	if len(r.e.agents) == 0 {
		return s, nil // no vxdp agents: r.e.sockets are not theirs
	}
	for _, sock := range r.e.sockets {
		out, err := runLocal(ctx, cmdTimeout, r.opts.vxdpBin, "--socket", sock, "stats", "-o", "json")
		if err != nil {
			return s, fmt.Errorf("agent stats: %w", err)
		}
		var st struct {
			TotalDrops uint64 `json:"total_drops"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return s, fmt.Errorf("agent stats: %w", err)
		}
		s.AgentDrops = append(s.AgentDrops, st.TotalDrops)
	}
	return s, nil
}

// parseUDPCounters reads the Udp lines of /proc/net/snmp (a header line
// of names, then one of values) and the Udp6 lines of /proc/net/snmp6
// (one name and value a line).
func parseUDPCounters(b []byte) dropCounters {
	var c dropCounters
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "Udp:" && header == nil:
			header = f
		case f[0] == "Udp:":
			for i := 1; i < len(f) && i < len(header); i++ {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				addUDPCounter(&c, header[i], v)
			}
		case len(f) == 2 && strings.HasPrefix(f[0], "Udp6"):
			v, _ := strconv.ParseUint(f[1], 10, 64)
			addUDPCounter(&c, strings.TrimPrefix(f[0], "Udp6"), v)
		}
	}
	return c
}

func addUDPCounter(c *dropCounters, name string, v uint64) {
	switch name {
	case "InErrors":
		c.UDPInErrors += v
	case "RcvbufErrors":
		c.UDPRcvbuf += v
	case "SndbufErrors":
		c.UDPSndbuf += v
	case "NoPorts":
		c.UDPNoPorts += v
	}
}

// parseLinkDrops sums the tx and rx drops of every link in `ip -s -j link
// show`.
func parseLinkDrops(b []byte) (tx, rx uint64, err error) {
	var links []struct {
		Stats struct {
			RX struct {
				Dropped uint64 `json:"dropped"`
			} `json:"rx"`
			TX struct {
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return 0, 0, err
	}
	for _, l := range links {
		tx += l.Stats.TX.Dropped
		rx += l.Stats.RX.Dropped
	}
	return tx, rx, nil
}

// lossLine says where the datagrams of one test were lost, the
// namespaces in the order of the path, leaving out the counters that did
// not move. The sender runs on after the receiver stops counting, so
// sent is more than received and the losses together.
func lossLine(sent, received uint64, l *lossSnapshot) string {
	if l == nil {
		return ""
	}
	var parts []string
	for _, ns := range lossNamespaces() {
		c := l.NS[ns]
		var f []string
		if c.LinkTxDropped > 0 {
			f = append(f, fmt.Sprintf("link tx %d", c.LinkTxDropped))
		}
		if c.LinkRxDropped > 0 {
			f = append(f, fmt.Sprintf("link rx %d", c.LinkRxDropped))
		}
		if c.UDPSndbuf > 0 {
			f = append(f, fmt.Sprintf("UDP send buffer %d", c.UDPSndbuf))
		}
		if c.UDPRcvbuf > 0 {
			f = append(f, fmt.Sprintf("UDP receive buffer %d", c.UDPRcvbuf))
		}
		if o := c.UDPInErrors - min(c.UDPInErrors, c.UDPRcvbuf); o > 0 {
			f = append(f, fmt.Sprintf("UDP other input errors %d", o))
		}

		if len(f) > 0 {
			parts = append(parts, ns+": "+strings.Join(f, ", "))
		}
	}
	for i, d := range l.AgentDrops {
		if d > 0 {
			parts = append(parts, fmt.Sprintf("%s agent: %d dropped", nodes[i].name, d))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("of %d sent, %d received, none lost on a counter", sent, received)
	}
	return fmt.Sprintf("of %d sent, %d received; %s", sent, received, strings.Join(parts, "; "))
}

// lossText is lossLine of u, or why its counters could not be read.
func (u *udpResult) lossText() string {
	if u.Losses == nil {
		return "losses not read: " + u.LossError
	}
	return lossLine(u.Sent.Sent, u.Recv.Total, u.Losses)
}
