# shellcheck shell=bash
# Helpers shared by vagrant/run-vagrant-test.sh and vagrant/local-box/build-box.sh.
# Source it; it defines functions only.

# The box, its SSH key and kept logs (the Vagrantfile computes the same directory).
idrun_vagrant_cache=${IDRUN_CACHE:-/var/cache}/idrun-vagrant

idrun_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
idrun_die() { idrun_log "ERROR: $*"; exit 1; }

idrun_require_root() {
    [ "$(id -u)" = 0 ] || idrun_die "must run as root (it installs packages, uses loop devices, libvirtd and network namespaces)"
}

# Hash of a list of files plus extra strings (stdin), first 16 hex digits.
idrun_hash_inputs() {
    { for f in "$@"; do printf '== %s\n' "$(basename "$f")"; cat "$f"; done; cat; } \
        | sha256sum | cut -c1-16
}
