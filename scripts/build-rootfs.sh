#!/usr/bin/env bash
# The image build script lives in rootfs/ so that vial can embed it (go:embed
# cannot reach outside its package); this is its command-line entry point.
exec "$(dirname "$0")/../rootfs/build-rootfs.sh" "$@"
