#!/usr/bin/env bash
# Installs what `make test`, `make demo` and `make bench` need on Debian, as
# root: redis-server, LuaJIT and PUC Lua 5.1 for the test host, the 32-bit
# LuaJIT and qemu-user for the 32-bit module, mingw-w64 for the Windows
# DLLs. Elsewhere it prints the exact install command and fails.
#
# `deps.sh test` (make test) also installs Wine 8 (wine, wine64,
# wine32:i386), which runs the Windows DLLs in the tests, and Chromium, in
# which the tests load realtimectl web's page; and adds a deb-src line for
# this Debian release so that the Makefile can fetch LuaJIT's source
# package (apt-get source luajit) and cross-build it for Windows.
set -euo pipefail

test=0
case "${1:-}" in
  "") ;;
  test) test=1 ;;
  *) echo "usage: deps.sh [test]" >&2; exit 2 ;;
esac

packages=(
  redis-server redis-tools          # the Redis the tests start
  luajit libluajit-5.1-dev          # GMod's x86-64 LuaJIT, for tests/host
  liblua5.1-0-dev                   # PUC Lua 5.1: proves the Lua 5.1 API only
  gcc-multilib libluajit-5.1-2:i386 # the 32-bit module and host
  qemu-user                         # runs them: this kernel has no i386 support
  gcc-mingw-w64                     # the Windows DLLs
  cppcheck                          # make lint: the C of module/ and tests/host
)
if ((test)); then
  packages+=(
    chromium                # loads realtimectl web's page in make test
    wine wine64 wine32:i386 # runs the Windows DLLs in make test
    dpkg-dev                # apt-get source unpacks LuaJIT's source with it
  )
fi

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go 1.26 or newer is required (https://go.dev/dl/); 'go' is not on PATH" >&2
  exit 1
fi

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: not a Debian system; install the equivalents of: ${packages[*]}" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
# LuaJIT's source package, for the Windows build: a deb-src line for this
# release (Debian's own sources file, as the deb lines are written).
src_file=/etc/apt/sources.list.d/realtime-deb-src.sources
need_src=0
if ((test)) && ! apt-cache showsrc luajit 2>/dev/null | grep -q '^Package: luajit'; then
  need_src=1
fi
((${#missing[@]} == 0 && need_src == 0)) && exit 0

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
src_entry="Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  ((${#missing[@]} > 0)) && echo "deps: missing packages: ${missing[*]}" >&2
  if ((need_src)); then
    echo "deps: no deb-src for luajit; add to $src_file:" >&2
    echo "$src_entry" >&2
  fi
  echo "deps: then: sudo dpkg --add-architecture i386 && sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
if ((need_src)); then
  if [[ -z $codename ]]; then
    echo "deps: no VERSION_CODENAME in /etc/os-release: add a deb-src line for luajit by hand" >&2
    exit 1
  fi
  echo "deps: adding $src_file (deb-src $codename main)" >&2
  echo "$src_entry" >"$src_file"
fi
((${#missing[@]} == 0)) && cmd=true

((${#missing[@]} > 0)) && echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx i386; then
  dpkg --add-architecture i386
fi
# A mirror in the middle of a sync fails one index now and then; the
# install below says whether what we need was found.
for attempt in 1 2 3; do
  apt-get update -qq && break
  echo "deps: apt-get update failed (attempt $attempt); retrying" >&2
  sleep $((attempt * 5))
done
$cmd >/dev/null
