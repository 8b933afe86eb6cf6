# vxdp — make demo, make test, make bench.
SHELL := /bin/bash
GO ?= go
BIN := bin/vxdp
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/vxdp/vxdp/agent.Version=$(VERSION)
# Parsers get a short fuzz run on every `make test`.
FUZZTIME ?= 8s
# Debian packages the end-to-end tests and the demo use.
PACKAGES := iproute2 nftables iputils-ping iperf3 tcpdump tshark kmod systemd curl etcd-server podman runc busybox-static
COMMANDS := nft ip ping iperf3 tcpdump tshark systemd-analyze curl etcd podman runc busybox
# What only the end-to-end benchmark needs: its Open vSwitch modes (ovs,
# ovs-afxdp) run private ovsdb-server/ovs-vswitchd instances and turn pod
# offloads off with ethtool. Kept apart so that make test does not install
# them.
BENCH_PACKAGES := openvswitch-switch ethtool
BENCH_COMMANDS := ovs-vswitchd ovsdb-server ovs-vsctl ethtool
# The Kubernetes end-to-end test runs a real kube-apiserver, built once from
# the module proxy by its own module in test/kube/apiserver (about 4 minutes
# on 2 CPUs) and kept in a cache outside the tree. gitVersion must be set:
# clients cannot parse the version the server reports otherwise.
KUBE_VERSION := v1.37.2
KUBE_CACHE ?= $(HOME)/.cache/vxdp
KUBE_APISERVER ?= $(KUBE_CACHE)/kube-apiserver-$(KUBE_VERSION)
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean
export VXDP_KUBE_APISERVER := $(KUBE_APISERVER)

.PHONY: all build deps kube-apiserver bench-deps demo demo-native test install uninstall bench bench-micro bench-e2e unit race fuzz e2e lint bench clean soak soak-short

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vxdp
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/vxdp-cni ./cmd/vxdp-cni

# Install what the tests need on a fresh machine (root, Debian).
deps:
	@missing=0; for c in $(COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing $(PACKAGES)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $(PACKAGES) >/dev/null; \
	fi
	$(GO) mod download
	@$(MAKE) --no-print-directory kube-apiserver

# Built only when missing; delete the file to rebuild.
kube-apiserver: $(KUBE_APISERVER)
$(KUBE_APISERVER):
	@mkdir -p $(dir $@)
	@echo "building kube-apiserver $(KUBE_VERSION) into $@ (a few minutes, once)"
	cd test/kube/apiserver && $(GO) build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

# The benchmark's extra packages. The Debian package may try to start the
# system's own OVS service; the benchmark does not use it.
bench-deps: deps
	@missing=0; for c in $(BENCH_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing $(BENCH_PACKAGES)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $(BENCH_PACKAGES) >/dev/null; \
	fi

demo: build
	@if ! command -v ping >/dev/null || ! command -v ip >/dev/null; then $(MAKE) --no-print-directory deps; fi
	./scripts/demo.sh tunnel

# The same cluster in native routing mode.
demo-native: build
	@if ! command -v ping >/dev/null || ! command -v ip >/dev/null; then $(MAKE) --no-print-directory deps; fi
	./scripts/demo.sh native

lint:
	./scripts/check-tracked.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	VXDP_REQUIRE_ETCD=1 $(GO) test -count=1 -skip '^TestSoak$$' $$($(GO) list ./... | grep -v /test/e2e)

race:
	VXDP_REQUIRE_ETCD=1 $(GO) test -race -count=1 ./dataplane/... ./fib ./encap ./agent/... ./kvstore ./k8s

# Every parser, a short run each; `make fuzz FUZZTIME=10m` for a long one.
FUZZ_TARGETS := encap:FuzzChecksum encap:FuzzDecap encap:FuzzIPv4 encap:FuzzGeneve encap:FuzzARP encap:FuzzICMPv4 encap:FuzzTCP \
	encap:FuzzIPv6Ext encap:FuzzICMPv6 encap:FuzzOuterV6 encap:FuzzECN encap:FuzzTransportSum \
	dataplane:FuzzReceivePath dataplane:FuzzSuperPacket dataplane/afxdp:FuzzFrame dataplane/tun:FuzzSuperLayout fib:FuzzTable config:FuzzParse agent:FuzzDecodeRequest
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh $(FUZZ_TARGETS)

e2e: build kube-apiserver
	$(GO) test -count=1 -timeout 15m -v ./test/e2e/ 2>&1 | tee e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

test: deps lint unit race fuzz e2e soak-short

# Go microbenchmarks, then the end-to-end comparison with the kernel's
# vxlan and Open vSwitch's userspace datapath (two-node namespace topology,
# kernel / vxdp-udp / vxdp-afxdp / ovs / ovs-afxdp and the IPv6 modes, needs
# root).
bench: bench-micro bench-e2e

bench-micro:
	$(GO) test -run XXX -bench . -benchmem ./encap ./fib ./dataplane ./dataplane/tun ./bench

bench-e2e: build bench-deps
	$(GO) run ./bench/cmd/vxdp-bench --reps 3 --duration 5 --json bench-results.json --md bench-results.md

# The soak: three nodes under load and a schedule of faults for SOAK (any
# Go duration), a Markdown report on stdout and soak-results.json; logs of
# a broken invariant are kept under soak-logs/. Needs root.
SOAK ?= 10m
SOAK_TIMEOUT ?= 48h
soak: build
	$(GO) test -c -o bin/soak.test ./test/soak
	cd test/soak && SOAK=$(SOAK) VXDP_BIN=$(CURDIR)/$(BIN) SOAK_JSON=$(CURDIR)/soak-results.json SOAK_LOGS=$(CURDIR)/soak-logs \
		$(CURDIR)/bin/soak.test -test.run '^TestSoak$$' -test.v -test.timeout $(SOAK_TIMEOUT)

# The same program for about a minute (part of `make test`: 85-131 s with
# the build on a shared 2-CPU machine, longer under other load).
soak-short:
	$(MAKE) --no-print-directory soak SOAK=1m SOAK_TIMEOUT=10m

PREFIX ?= /usr/local
DESTDIR ?=
# Binary, systemd unit and a commented example configuration (never
# overwriting a configuration that is already there); the CNI plugin where
# runtimes look for it, with an example network (not overwritten either).
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/vxdp
	install -D -m 0755 bin/vxdp-cni $(DESTDIR)/opt/cni/bin/vxdp-cni
	@if [ ! -e $(DESTDIR)/etc/cni/net.d/10-vxdp.conflist ]; then install -D -m 0644 packaging/cni/10-vxdp.conflist $(DESTDIR)/etc/cni/net.d/10-vxdp.conflist; fi
	install -D -m 0644 packaging/systemd/vxdp.service $(DESTDIR)/etc/systemd/system/vxdp.service
	install -D -m 0644 config/example.yaml $(DESTDIR)/etc/vxdp/vxdp.yaml.example
	@if [ ! -e $(DESTDIR)/etc/vxdp/vxdp.yaml ]; then install -m 0644 config/example.yaml $(DESTDIR)/etc/vxdp/vxdp.yaml; fi
	@echo "installed; edit /etc/vxdp/vxdp.yaml, then: systemctl daemon-reload && systemctl enable --now vxdp"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/vxdp $(DESTDIR)/etc/systemd/system/vxdp.service $(DESTDIR)/etc/vxdp/vxdp.yaml.example \
		$(DESTDIR)/opt/cni/bin/vxdp-cni

clean:
	rm -rf bin e2e.log bench-results.json bench-results.md soak-results.json soak-logs
