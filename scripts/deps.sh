#!/usr/bin/env bash
# Installs what `make test`, `make demo` and `make bench` need on Debian, as
# root: redis-server, LuaJIT and PUC Lua 5.1 for the test host, the 32-bit
# LuaJIT and qemu-user for the 32-bit module, mingw-w64 for the Windows
# DLLs. Elsewhere it prints the exact install command and fails.
set -euo pipefail

packages=(
  redis-server redis-tools          # the Redis the tests start
  luajit libluajit-5.1-dev          # GMod's x86-64 LuaJIT, for tests/host
  liblua5.1-0-dev                   # PUC Lua 5.1: proves the Lua 5.1 API only
  gcc-multilib libluajit-5.1-2:i386 # the 32-bit module and host
  qemu-user                         # runs them: this kernel has no i386 support
  gcc-mingw-w64                     # the Windows DLLs
  cppcheck                          # make lint: the C of module/ and tests/host
)

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
((${#missing[@]} == 0)) && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: install them with: sudo dpkg --add-architecture i386 && sudo apt-get update && sudo $cmd" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
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
