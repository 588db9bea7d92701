#!/usr/bin/env bash
# Installs the npm packages vial's tests use that this project did not
# write: the MCP servers mcp/downstream's tests run against
# (@modelcontextprotocol/server-everything and server-filesystem) and the
# official TypeScript SDK (@modelcontextprotocol/sdk), whose client drives
# the end-to-end approval tests. Pinned versions that run on Node 20 (all
# need Node >= 18; measured on Node 20.20 with npm 11). Idempotent; about
# 6 s and 15 MB.
#
#   scripts/install-test-mcp-servers.sh [DIR]
#
# DIR defaults to $VIAL_TEST_MCP_SERVERS, else ~/.cache/vial/test-mcp-servers,
# which is where the tests look when VIAL_TEST_MCP_SERVERS is unset.
set -euo pipefail

EVERYTHING_VERSION=2026.8.31
FILESYSTEM_VERSION=2026.8.31
SDK_VERSION=1.32.2

dir="${1:-${VIAL_TEST_MCP_SERVERS:-${XDG_CACHE_HOME:-$HOME/.cache}/vial/test-mcp-servers}}"
for tool in node npm; do
	if ! command -v "$tool" >/dev/null; then
		echo "install-test-mcp-servers: $tool is required (Debian: apt-get install nodejs npm)" >&2
		exit 1
	fi
done
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 18 ]; then
	echo "install-test-mcp-servers: Node $(node --version) is too old; the servers need Node 18 or newer" >&2
	exit 1
fi

want="@modelcontextprotocol/server-everything@$EVERYTHING_VERSION @modelcontextprotocol/server-filesystem@$FILESYSTEM_VERSION @modelcontextprotocol/sdk@$SDK_VERSION"
have() { node -p "require('$dir/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(have @modelcontextprotocol/server-everything)" = "$EVERYTHING_VERSION" ] &&
	[ "$(have @modelcontextprotocol/server-filesystem)" = "$FILESYSTEM_VERSION" ] &&
	[ "$(have @modelcontextprotocol/sdk)" = "$SDK_VERSION" ]; then
	echo "install-test-mcp-servers: $want already in $dir"
	exit 0
fi
mkdir -p "$dir"
# shellcheck disable=SC2086 # two package specs, split on purpose
npm install --prefix "$dir" --no-audit --no-fund --save-exact --loglevel=error $want
echo "install-test-mcp-servers: installed $want into $dir"
echo "install-test-mcp-servers: the tests find them there, or with VIAL_TEST_MCP_SERVERS=$dir"
