#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on Debian, as root.
# Elsewhere it prints the exact install command and fails.
#
#   scripts/deps.sh [test|demo]
set -euo pipefail

# Debian package -> a file that proves it is installed.
declare -A need=(
  [redis-server]=/usr/bin/redis-server
  [redis-tools]=/usr/bin/redis-cli
)

missing=()
for pkg in "${!need[@]}"; do
  [[ -e ${need[$pkg]} ]] || missing+=("$pkg")
done

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go 1.26 or newer is required (https://go.dev/dl/); 'go' is not on PATH" >&2
  exit 1
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: install them with: sudo apt-get update && sudo $cmd" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$cmd >/dev/null
