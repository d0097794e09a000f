#!/bin/bash
# debian-rootfs.sh - the one recipe for a Debian root file system, used by both VM
# harnesses (integration/vm/build-image.sh, vagrant/local-box/build-box.sh), and the
# one place that finds the Debian mirrors they download from.
#
# Usage:
#   debian-rootfs.sh mirrors [APT_DIR]
#       Print "MIRROR SECURITY_MIRROR" (one line): $IDRUN_DEBIAN_MIRROR if set
#       ("URI [SECURITY_URI]"; the security URI defaults to URI-security), else the
#       first URIs ending in /debian and /debian-security in the host's apt sources
#       (APT_DIR, default /etc/apt: sources.list, sources.list.d/*.list and *.sources).
#       Exits 1 with a message when there is none: no mirror host is written in the tree.
#   debian-rootfs.sh build SUITE TARGET PACKAGES [MMDEBSTRAP_OPTION...] -- SOURCE...
#       mmdebstrap --variant=minbase in root mode of SUITE with PACKAGES (comma list)
#       into TARGET (a directory or a .tar, as mmdebstrap reads it), from the apt
#       SOURCE lines ("deb URI SUITE main"). Options before "--" are passed on
#       (e.g. --customize-hook=...).
set -euo pipefail

prog=debian-rootfs
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

# host_mirror APT_DIR TAIL: the first URI of the apt sources under APT_DIR whose path
# ends in /TAIL, from one-line .list files and deb822 .sources files.
host_mirror() {
    local dir=$1 want=$2 f line u
    local -a files=("$dir/sources.list")
    shopt -s nullglob
    files+=("$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources)
    shopt -u nullglob
    for f in "${files[@]}"; do
        [[ -r $f ]] || continue
        while IFS= read -r line; do
            line=${line%%#*}
            line=$(sed -e 's/\[[^]]*\]//' -e 's/^[[:space:]]*//' <<<"$line")
            local -a uris=()
            case $line in
                URIs:*) read -ra uris <<<"${line#URIs:}" ;;
                deb\ *) read -ra uris <<<"${line#deb }"; uris=("${uris[0]}") ;;
                *) continue ;;
            esac
            for u in "${uris[@]}"; do
                u=${u%/}
                case $u in */"$want") echo "$u"; return 0 ;; esac
            done
        done <"$f"
    done
    return 1
}

mirrors() {
    local dir=${1:-/etc/apt} mirror security
    if [[ -n ${IDRUN_DEBIAN_MIRROR:-} ]]; then
        read -r mirror security _ <<<"$IDRUN_DEBIAN_MIRROR"
        mirror=${mirror%/}
        security=${security:-$mirror-security}
    else
        mirror=$(host_mirror "$dir" debian) \
            || die "no .../debian URI in the apt sources under $dir; set IDRUN_DEBIAN_MIRROR=\"URI [SECURITY_URI]\""
        security=$(host_mirror "$dir" debian-security) \
            || die "no .../debian-security URI in the apt sources under $dir; set IDRUN_DEBIAN_MIRROR=\"URI SECURITY_URI\""
    fi
    echo "$mirror ${security%/}"
}

build() {
    [[ $# -ge 3 ]] || die "usage: $0 build SUITE TARGET PACKAGES [OPTION...] -- SOURCE..."
    local suite=$1 target=$2 packages=$3
    shift 3
    local -a opts=()
    while [[ $# -gt 0 && $1 != -- ]]; do opts+=("$1"); shift; done
    [[ ${1:-} == -- ]] || die "build: no -- before the apt sources"
    shift
    [[ $# -gt 0 ]] || die "build: no apt source"
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found (make vm-deps / vagrant-deps)"
    # minbase and no documentation: the guests run tests, nobody reads man pages there.
    # Check-Valid-Until off: a snapshot mirror's Release files may have expired.
    mmdebstrap \
        --variant=minbase \
        --mode=root \
        --components=main \
        --include="$packages" \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --aptopt='Acquire::Languages "none"' \
        --dpkgopt=force-unsafe-io \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        "${opts[@]}" \
        "$suite" "$target" "$@"
}

case ${1:-} in
    mirrors) shift; mirrors "$@" ;;
    build) shift; build "$@" ;;
    *) die "usage: $0 mirrors [APT_DIR] | build SUITE TARGET PACKAGES [OPTION...] -- SOURCE..." ;;
esac
