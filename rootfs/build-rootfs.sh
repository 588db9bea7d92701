#!/usr/bin/env bash
# build-rootfs.sh builds a Debian bookworm root filesystem for vial with
# mmdebstrap.
#
# usage: build-rootfs.sh [--packages p1,p2] [--mirror LINE]... NAME OUTDIR
#        build-rootfs.sh --list
#
# NAME is a recipe: minimal, python, node or data-science. OUTDIR must not
# exist or be empty; it receives the root filesystem as a directory. Import
# it with `vial rootfs import OUTDIR --name NAME`, or let `vial rootfs build
# NAME` do both steps.
#
# The images are small (no docs, man pages, locales or apt lists; the
# "essential" variant without apt) and reproducible where Debian allows it:
# SOURCE_DATE_EPOCH is fixed unless set, and files that differ between runs
# (logs, caches, machine-id, resolv.conf, hostname) are removed. The same
# packages give the same vial digest; a mirror that moved on gives another.
#
# Every image has the mount points vial needs on a read-only root
# (/workspace, /tmp, /proc, /sys, /dev, /opt/vial) and an /etc/passwd with nobody
# (uid 65534), the user sandboxes run as.
#
# Mirrors come from --mirror (full one-line sources entries, repeatable),
# else $VIAL_MIRRORS (newline separated), else the Debian entries of the
# host's /etc/apt/sources.list.d/*.sources and /etc/apt/sources.list, else
# http://deb.debian.org/debian.
#
# This file is embedded in the vial binary as rootfs/build-rootfs.sh (kept
# identical by a test; run `go generate ./rootfs` after editing).
set -euo pipefail

SUITE=bookworm
RECIPES="minimal python node data-science"

die() { echo "build-rootfs: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

# recipe_packages prints the packages a recipe installs on top of the
# essential set.
recipe_packages() {
	case "$1" in
	minimal) echo "ca-certificates" ;;
	# pip and requests: install_package and seed 000's API use case.
	python) echo "ca-certificates,python3,python3-pip,python3-requests" ;;
	node) echo "ca-certificates,nodejs" ;;
	data-science) echo "ca-certificates,python3,python3-pip,python3-requests,python3-numpy,python3-pandas,python3-matplotlib,python3-scipy" ;;
	*) return 1 ;;
	esac
}

# recipe_prune prints packages removed after installation, with dpkg
# --force-depends, because only a hard dependency no program at run time
# needs pulls them in. Bookworm's python3-scipy depends on python3-pythran,
# a compiler that drags in gcc, g++, binutils, boost and the Python headers
# (~550 MB); scipy's compiled modules never call it. The images have no apt
# and a read-only root, so the dangling dependency can never bite.
recipe_prune() {
	case "$1" in
	data-science) echo "python3-pythran python3-beniget python3-gast python3-ply
		g++ g++-12 gcc gcc-12 cpp cpp-12 libstdc++-12-dev libgcc-12-dev libc6-dev libc-dev-bin
		linux-libc-dev libcrypt-dev libnsl-dev libtirpc-dev rpcsvc-proto libexpat1-dev zlib1g-dev
		libboost-dev libboost1.74-dev libxsimd-dev libopenblas-dev libopenblas-pthread-dev
		python3-all python3-all-dev python3-dev python3.11-dev libpython3-all-dev libpython3-dev libpython3.11-dev
		binutils binutils-common binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0 libgprofng0 libjansson4
		libasan8 liblsan0 libtsan2 libubsan1 libhwasan0 libitm1 libcc1-0 libisl23 libmpc3" ;;
	esac
}

# host_mirrors prints one-line sources entries for the host's Debian
# repositories of $SUITE (deb822 files first, then sources.list).
host_mirrors() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v suite="$SUITE" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && uris ~ /debian/) {
					n = split(uris, u, " "); m = split(suites, s, " ")
					for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
						if (s[j] ~ "^" suite) print "deb " u[i] " " s[j] " " comps
				}
				types = uris = suites = comps = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
			/^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
			/^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
			/^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0 }
			END { flush() }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v suite="$SUITE" '$1 == "deb" && $2 !~ /^\[/ && $2 ~ /debian/ && $3 ~ "^" suite { print }' "$f"
	done
}

packages=""
mirrors=()
while [ $# -gt 0 ]; do
	case "$1" in
	--list) echo "$RECIPES"; exit 0 ;;
	--packages) [ $# -ge 2 ] || die "--packages needs a value"; packages="$2"; shift 2 ;;
	--packages=*) packages="${1#--packages=}"; shift ;;
	--mirror) [ $# -ge 2 ] || die "--mirror needs a value"; mirrors+=("$2"); shift 2 ;;
	--mirror=*) mirrors+=("${1#--mirror=}"); shift ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
[ $# -eq 2 ] || die "usage: build-rootfs.sh [--packages p1,p2] [--mirror LINE]... NAME OUTDIR (recipes: $RECIPES)"
name="$1"
out="$2"

include="$(recipe_packages "$name")" || die "unknown recipe \"$name\" (recipes: $RECIPES)"
if [ -n "$packages" ]; then
	# Package names only: no apt patterns, paths or options smuggled in.
	case "$packages" in
	*[!a-z0-9.+,-]*) die "--packages \"$packages\": want comma separated Debian package names" ;;
	esac
	# Sorted and once each: the same set in another order is the same
	# image, and a package the recipe already has adds nothing.
	include="$(printf '%s\n' "${include//,/$'\n'}" "${packages//,/$'\n'}" | LC_ALL=C sort -u | paste -sd, -)"
fi

command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install -y mmdebstrap)"

if [ ${#mirrors[@]} -eq 0 ] && [ -n "${VIAL_MIRRORS:-}" ]; then
	mapfile -t mirrors <<<"$VIAL_MIRRORS"
fi
if [ ${#mirrors[@]} -eq 0 ]; then
	mapfile -t mirrors < <(host_mirrors | awk '!seen[$0]++')
fi
if [ ${#mirrors[@]} -eq 0 ]; then
	mirrors=("deb http://deb.debian.org/debian $SUITE main")
fi

if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
	die "$out exists and is not empty"
fi

mode=auto
[ "$(id -u)" -eq 0 ] && mode=root

# merged-/usr through mmdebstrap's own hook: without it apt satisfies
# init-system-helpers with the usrmerge package, which drags in ~50 MB of perl.
hooks=()
if [ -d /usr/share/mmdebstrap/hooks/merged-usr ]; then
	hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
fi

# A fixed default keeps mtimes stable between builds; vial's digest ignores
# mtimes anyway, but tarballs made from the tree stay comparable.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"

step "[1/3] mmdebstrap $SUITE ($name: $include) into $out"
for m in "${mirrors[@]}"; do echo "    mirror: $m" >&2; done

prune="$(recipe_prune "$name" | tr -s ' \t\n' ' ')"
prune_hook=true
if [ -n "${prune// /}" ]; then
	# Only what is installed: dpkg refuses to purge unknown packages.
	prune_hook='set -e; p=$(chroot "$1" dpkg-query -W -f "\${db:Status-Abbrev} \${Package}\n" '"$prune"' 2>/dev/null | awk "/^ii/ {print \$2}"); [ -z "$p" ] || chroot "$1" dpkg --purge --force-depends $p'
fi

start=$(date +%s)
mmdebstrap \
	--mode="$mode" \
	--variant=essential \
	"${hooks[@]}" \
	--include="$include" \
	--aptopt='Acquire::Languages "none"' \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--dpkgopt='path-exclude=/usr/share/linda/*' \
	--customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
	--customize-hook="$prune_hook" \
	--customize-hook='printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"' \
	--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/var/log/* "$1"/tmp/* "$1"/var/tmp/*' \
	--customize-hook='mkdir -p "$1/workspace" "$1/tmp" "$1/proc" "$1/sys" "$1/dev" "$1/opt/vial" && chmod 1777 "$1/tmp" && chmod 0755 "$1/workspace"' \
	--customize-hook='grep -q "^[^:]*:[^:]*:65534:" "$1/etc/passwd" || echo "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"' \
	--customize-hook='grep -q "^[^:]*:[^:]*:65534:" "$1/etc/group" || echo "nogroup:x:65534:" >> "$1/etc/group"' \
	"$SUITE" "$out" "${mirrors[@]}"

step "[2/3] removing device nodes (sandboxes get their own /dev)"
find "$out/dev" -mindepth 1 -delete

step "[3/3] done: $out, $(du -sh "$out" | cut -f1) in $(( $(date +%s) - start ))s"
