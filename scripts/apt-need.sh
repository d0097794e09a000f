#!/usr/bin/env bash
# apt-need.sh PACKAGE... - install the Debian packages that are missing: with
# apt-get as root, otherwise name them and fail. Used by `make deps`,
# `make run-deps` and `make deb-deps`.
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
        || missing+=("$p")
done
(( ${#missing[@]} )) || exit 0
if [[ $(id -u) != 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${missing[@]}"
