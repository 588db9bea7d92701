#!/usr/bin/env bash
# Installs what vial needs on a Debian/Ubuntu host, as root: the OCI
# runtimes (runc, crun, gVisor's runsc), the tools that build images, and
# the interpreters the built-in host image offers, and Chromium for the
# browser test of the operator page. Idempotent.
set -euo pipefail

RUNSC_VERSION=v0.0.0-20260905035102-160fafc42237

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
# chromium is a test dependency: the operator page's browser test drives it
# headless (cmd/vial/browser_test.go).
for pkg in runc crun busybox-static mmdebstrap python3 nodejs zstd iproute2 procps chromium; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# npm installs the test clients and servers (Debian packages it apart from
# nodejs; machines with a newer npm already have it).
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
	echo "install-deps: apt-get install ${need[*]}"
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
	echo "install-deps: Go 1.21 or newer is required (it fetches the toolchain go.mod asks for)" >&2
	exit 1
fi

# runsc must be static (a cgo build re-execs itself in an empty chroot and
# dies) and pinned (later builds may want sidecar binaries).
if ! runsc --version 2>/dev/null | grep -q "spec:" || [ "$(cat /usr/local/lib/vial-runsc-version 2>/dev/null)" != "$RUNSC_VERSION" ]; then
	echo "install-deps: building runsc $RUNSC_VERSION (static)"
	CGO_ENABLED=0 GOBIN=/usr/local/bin go install "gvisor.dev/gvisor/runsc@$RUNSC_VERSION"
	mkdir -p /usr/local/lib && echo "$RUNSC_VERSION" > /usr/local/lib/vial-runsc-version
fi
echo "install-deps: runc $(runc --version | head -1 | awk '{print $3}'), crun $(crun --version | head -1 | awk '{print $3}'), runsc $RUNSC_VERSION"
