# vial's Makefile. `make help` lists the targets.
GO        ?= go
PREFIX    ?= /usr/local
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATE_DIR ?= /var/lib/vial

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install runc, crun, runsc and the image tools (root, Debian/Ubuntu)
	scripts/install-deps.sh

build: ## build bin/vial
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/vial ./cmd/vial

install: build ## install vial into $(PREFIX)/bin
	install -m 0755 bin/vial $(PREFIX)/bin/vial

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## go vet, gofmt, staticcheck and the dependency rules
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -count=1 ./test/deps/

test: ## every test; as root this includes the integration tests on real runtimes
	# -p 1: root tests count host-wide cgroups, so packages must not overlap.
	VIAL_E2E=1 $(GO) test -p 1 -count=1 ./...

test-root: ## only the root integration and end-to-end tests
	$(GO) test -p 1 -count=1 -run 'Test(Hardening|Python|Exit|OOM|Timeout|ForkBomb|CPUQuota|Writes|BadInput|NoLeaks|StartSandbox|CrashRecovery|E2E)' ./runtime/ ./test/...

check: lint test ## what CI runs: lint and every test

bench: build ## cold-start and round-trip benchmarks against the raw runtimes
	@# The stored python image (built once, ~25 s) for the image comparisons.
	bin/vial --state-dir $(STATE_DIR)-bench rootfs inspect python >/dev/null 2>&1 || bin/vial --state-dir $(STATE_DIR)-bench rootfs build python
	bin/vial --state-dir $(STATE_DIR)-bench bench
	$(GO) run ./test/mcpbench -vial bin/vial -runtimes runc,runsc
	$(GO) test -run '^$$' -bench . -benchtime 200x ./runtime/ ./egress/ ./test/... || true

fuzz: ## run each fuzz target for 30 s
	@for t in $$($(GO) test -list 'Fuzz.*' ./... | grep ^Fuzz); do \
		pkg=$$(grep -rl "func $$t" --include=*_test.go . | head -1 | xargs dirname); \
		echo "fuzz $$t in $$pkg"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime 30s $$pkg || exit 1; done

rootfs: build ## build the python image into the store
	bin/vial --state-dir $(STATE_DIR) rootfs build python

clean: ## remove build output and collect orphaned sandboxes
	rm -rf bin
	-bin/vial --state-dir $(STATE_DIR) gc 2>/dev/null

.PHONY: help deps build install lint test test-root check bench fuzz rootfs clean
