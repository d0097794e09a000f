# shellcheck shell=bash
# Helpers shared by vagrant/run-vagrant-test.sh and vagrant/local-box/build-box.sh.
# Source it; it defines functions only.

idrun_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
idrun_die() { idrun_log "ERROR: $*"; exit 1; }

idrun_require_root() {
    [ "$(id -u)" = 0 ] || idrun_die "must run as root (it installs packages, uses loop devices, libvirtd and network namespaces)"
}

# Install the given Debian packages with --no-install-recommends, only the ones
# that are not installed yet.  Services are not started while installing: if the
# machine has no policy-rc.d, a temporary one that denies every start is put in
# place and removed again (a libvirtd started by a maintainer script would run in
# the machine's own network namespace, which must not happen).
idrun_ensure_packages() {
    local missing=() p status
    for p in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$status" = installed ] || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    idrun_log "installing missing host packages: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from idrun vagrant/lib.sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -q >&2; then
        idrun_log "apt-get update failed (continuing with existing package lists)"
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || idrun_die "apt-get install failed (rc=$rc)"
}

# Hash of a list of files plus extra strings (stdin), first 16 hex digits.
idrun_hash_inputs() {
    { for f in "$@"; do printf '== %s\n' "$(basename "$f")"; cat "$f"; done; cat; } \
        | sha256sum | cut -c1-16
}
