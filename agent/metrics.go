package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// collector turns the engine's counters into Prometheus metrics when
// scraped: the packet path keeps its plain atomic counters and pays
// nothing for metrics.
type collector struct{ a *Agent }

var (
	descPackets     = prometheus.NewDesc("vxdp_device_packets_total", "Packets per device and direction (rx: read by vxdp, tx: written by vxdp).", []string{"device", "kind", "direction"}, nil)
	descBytes       = prometheus.NewDesc("vxdp_device_bytes_total", "Bytes per device and direction.", []string{"device", "kind", "direction"}, nil)
	descBatches     = prometheus.NewDesc("vxdp_device_rx_batches_total", "Reads that returned packets; packets/batches is the mean batch size.", []string{"device", "kind"}, nil)
	descTxErrors    = prometheus.NewDesc("vxdp_device_tx_errors_total", "Packets a device refused.", []string{"device", "kind"}, nil)
	descKernelDrops = prometheus.NewDesc("vxdp_device_kernel_dropped_total",
		"Packets the kernel dropped before vxdp read them: a pod's TUN queue, an underlay socket's buffer or an AF_XDP queue's ring full.", []string{"device", "kind"}, nil)
	descDrops     = prometheus.NewDesc("vxdp_drops_total", "Dropped packets by reason.", []string{"reason"}, nil)
	descEndpoints = prometheus.NewDesc("vxdp_endpoints", "Pod endpoints on this node.", nil, nil)
	descNodes     = prometheus.NewDesc("vxdp_nodes", "Remote nodes known.", nil, nil)
	descVTEPs     = prometheus.NewDesc("vxdp_vteps", "VTEP CIDRs configured.", nil, nil)
	descFIB       = prometheus.NewDesc("vxdp_fib_entries", "Prefixes in the FIB.", nil, nil)
	descICMP      = prometheus.NewDesc("vxdp_icmp_errors_sent_total", "ICMP errors the dataplane generated.", nil, nil)
	descARP       = prometheus.NewDesc("vxdp_arp_replies_sent_total", "ARP replies sent to VTEPs.", nil, nil)
	descECN       = prometheus.NewDesc("vxdp_ecn_anomalies_total", "Tunnel packets with an outer and inner ECN combination RFC 6040 calls currently unused.", nil, nil)
	descHealthy   = prometheus.NewDesc("vxdp_healthy", "1 when the packet path is alive.", nil, nil)
	descOffload   = prometheus.NewDesc("vxdp_offload_active", "1 when a device's kernel offload is in use, 0 when it is off (refused or failed).", []string{"device", "kind", "offload"}, nil)
	descOffloadN  = prometheus.NewDesc("vxdp_offload_units_total", "Work done through an offload: super-packets read, segments merged, multi-datagram sends or receives.", []string{"device", "kind", "offload"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descBatches, descTxErrors, descKernelDrops, descDrops,
		descEndpoints, descNodes, descVTEPs, descFIB, descICMP, descARP, descECN, descHealthy, descOffload, descOffloadN} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	e := c.a.eng
	st := e.Stats()
	for _, d := range st.Devices {
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(d.RxPackets), d.Device, d.Kind, "rx")
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(d.TxPackets), d.Device, d.Kind, "tx")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(d.RxBytes), d.Device, d.Kind, "rx")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(d.TxBytes), d.Device, d.Kind, "tx")
		ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(d.RxBatches), d.Device, d.Kind)
		ch <- prometheus.MustNewConstMetric(descTxErrors, prometheus.CounterValue, float64(d.TxErrors+d.DriverTxErrors), d.Device, d.Kind)
		if d.KernelDropErr == "" {
			ch <- prometheus.MustNewConstMetric(descKernelDrops, prometheus.CounterValue, float64(d.KernelDropped), d.Device, d.Kind)
		}
		for _, o := range d.Offloads {
			active := 0.0
			if o.Active {
				active = 1
			}
			ch <- prometheus.MustNewConstMetric(descOffload, prometheus.GaugeValue, active, d.Device, d.Kind, o.Name)
			ch <- prometheus.MustNewConstMetric(descOffloadN, prometheus.CounterValue, float64(o.Count), d.Device, d.Kind, o.Name)
		}
	}
	for reason, v := range st.Drops {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(v), reason)
	}
	n := e.Counts()
	ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, float64(n.Endpoints))
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(n.Nodes))
	ch <- prometheus.MustNewConstMetric(descVTEPs, prometheus.GaugeValue, float64(n.VTEPs))
	ch <- prometheus.MustNewConstMetric(descFIB, prometheus.GaugeValue, float64(n.FIBEntries))
	ch <- prometheus.MustNewConstMetric(descICMP, prometheus.CounterValue, float64(st.ICMPErrors))
	ch <- prometheus.MustNewConstMetric(descARP, prometheus.CounterValue, float64(st.ARPReplies))
	ch <- prometheus.MustNewConstMetric(descECN, prometheus.CounterValue, float64(st.ECNAnomalies))
	healthy := 0.0
	if c.a.alive() {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy)
}

// alive reports whether the packet path works: no stuck worker, no
// stopped underlay or host worker.
func (a *Agent) alive() bool {
	return len(a.eng.Stuck(stuckLimit)) == 0 && len(a.eng.Problems()) == 0
}

// listenMetrics takes the metrics address (none when addr is empty).
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("prometheus-serve-addr %s: %w", addr, err)
	}
	return ln, nil
}

// serveMetrics serves /metrics and /healthz on ln (nil: nothing to serve).
func (a *Agent) serveMetrics(ln net.Listener) {
	if ln == nil {
		return
	}
	reg := prometheus.NewRegistry()
	// The runtime's and the process's own (go_goroutines,
	// process_open_fds, process_resident_memory_bytes...): what a leak
	// grows, for operators as for the tests.
	reg.MustRegister(collector{a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !a.alive() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	a.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := a.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("metrics server", zap.Error(err))
		}
	}()
	a.log.Info("metrics", zap.String("address", ln.Addr().String()))
}

func (a *Agent) stopMetrics() {
	if a.metrics == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = a.metrics.Shutdown(ctx)
	a.metrics = nil
}
