#!/usr/bin/env bash
# Run the integration suite in the offline Vagrant box idrun/debian12-local with
# vagrant-libvirt on this machine (no KVM: TCG), fully sandboxed and cleaned up.
#
#   1. installs vagrant, vagrant-libvirt, libvirt and QEMU if missing (scripts/deps.sh vagrant)
#   2. builds the box if the cache has none for the current inputs (build-box.sh)
#   3. creates a network namespace and starts virtlogd + libvirtd inside it, so
#      vagrant-libvirt's 192.168.121.0/24 network exists only there
#   4. vagrant box add; uploads the box image into the libvirt pool with virsh
#      (much faster than vagrant-libvirt's own upload); vagrant up local
#      (driver qemu) / provision (uploads the .deb of `make deb`; the suite installs
#      it with dpkg -i and runs against the installed /usr/bin/idrun)
#   5. prints the SUITE lines and one "MATRIX vagrant-debian12-local ..." line
#   6. always (trap): vagrant destroy, removes domains, volumes, networks, pool and
#      box it created, stops the daemons it started (by PID), deletes the netns
#
# Exit status: 0 if the suite passed, non-zero otherwise.
#
# Environment:
#   IDRUN_DEB              the idrun .deb to test (default: dist/idrun_VERSION_all.deb
#                          of debian/changelog's version; `make vagrant-test` builds it)
#   IDRUN_CACHE            box / key cache in $IDRUN_CACHE/idrun-vagrant (default /var/cache)
#   IDRUN_VAGRANT_TIMEOUT  hard limit in seconds for the whole run (default 3600:
#                          the whole suite takes 10+ min per pass under TCG);
#                          cleanup runs after it, with its own short timeouts
#   IDRUN_VAGRANT_PYTEST_ARGS  arguments for run-suite.sh (pytest args / test paths),
#                          shell-quoted; e.g. "-m 'kernel and not permutation'"
#   IDRUN_VAGRANT_NETNS    name of the network namespace (default idrun-vagrant-<pid>)
#   IDRUN_VAGRANT_SUITE    host path of a stand-in for integration/guest/run-suite.sh
#   IDRUN_VAGRANT_KEEP_LOGS=1  keep the run's logs in $IDRUN_CACHE/idrun-vagrant/logs/
#                          (they are kept there anyway when the run fails)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=lib.sh
. "$HERE/lib.sh"

CACHE=$idrun_vagrant_cache
TIMEOUT=${IDRUN_VAGRANT_TIMEOUT:-3600}
NETNS=${IDRUN_VAGRANT_NETNS:-idrun-vagrant-$$}
MACHINE=local
MATRIX_NAME=vagrant-debian12-local
BOX_VERSION=1                    # versioned box: a fixed libvirt volume name
DOMAIN=vagrant_$MACHINE          # vagrant-libvirt: <dir of the Vagrantfile>_<machine>
LIBVIRT_URI=qemu:///system

DEB=${IDRUN_DEB:-$ROOT/dist/idrun_$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$ROOT/debian/changelog")_all.deb}

T_START=$(date +%s)
DEADLINE=$((T_START + TIMEOUT))

idrun_require_root
export LC_ALL=C.UTF-8
[ -f "$DEB" ] || idrun_die "no package $DEB: run 'make deb' first (or set IDRUN_DEB)"
DEB=$(realpath "$DEB")
DEB_VERSION=$(dpkg-deb --field "$DEB" Version) || idrun_die "$DEB is not a Debian package"
idrun_log "testing package idrun $DEB_VERSION ($DEB, sha256 $(sha256sum "$DEB" | cut -c1-16)); the box installs it with dpkg -i"

# ---- state for cleanup ------------------------------------------------------------
TMP=
NETNS_MADE=0
LIBVIRTD_PID=
VIRTLOGD_PID=
VAGRANT_STARTED=0
POOL_PREEXISTED=1
RUNDIR_PREEXISTED=1
NETS_BEFORE=
VOLS_BEFORE=
DOMS_BEFORE=
RESULT=FAIL

remaining() { echo $((DEADLINE - $(date +%s))); }

# Run a command with what is left of the overall time budget.  It runs in the
# background and is waited for, so that INT/TERM reach our trap at once (bash
# runs traps only after a foreground command ends); the trap stops it via
# timeout, which passes the signal on and kills after 20 s.
CHILD=
bounded() {
    local left rc
    left=$(remaining)
    if [ "$left" -le 0 ]; then
        idrun_log "overall timeout (${TIMEOUT}s) reached before: $*"
        return 124
    fi
    timeout --kill-after=20 "$left" "$@" &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CHILD=
    [ "$rc" = 124 ] && idrun_log "overall timeout (${TIMEOUT}s) reached in: $*"
    return "$rc"
}

# Copy of a command's output for the console: without vagrant's progress bar.
console() { sed -u -E 's/(\x1b\[K)?Progress: [0-9]+%( \([^)]*\))?//g; /^\s*$/d' >&2; }

# run_logged LOGFILE CMD...: bounded CMD, its output in LOGFILE and on stderr.
run_logged() {
    local log=$1 fd tee_pid rc i
    shift
    exec {fd}> >(tee "$log" | console)
    tee_pid=$!
    bounded "$@" >&"$fd" 2>&1
    rc=$?
    exec {fd}>&-
    for i in $(seq 1 50); do kill -0 "$tee_pid" 2>/dev/null || break; sleep 0.2; done
    return "$rc"
}

virsh_() { timeout 60 virsh -q -c "$LIBVIRT_URI" "$@"; }

# The environment of every vagrant command (an array, so it can be exec'd by
# timeout and ip netns exec). Filled in once TMP, BOX_NAME and SSH_KEY are known.
VAGRANT_ENV=()
set_vagrant_env() {
    VAGRANT_ENV=(env VAGRANT_HOME="$TMP/vagrant-home"
        VAGRANT_DOTFILE_PATH="$TMP/dotfile"
        VAGRANT_CWD="$HERE"
        VAGRANT_DEFAULT_PROVIDER=libvirt
        VAGRANT_CHECKPOINT_DISABLE=1
        VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
        IDRUN_VM_ACCEL="${IDRUN_VM_ACCEL:-tcg}"
        IDRUN_VAGRANT_BOX="$BOX_NAME"
        IDRUN_VAGRANT_SSH_KEY="$SSH_KEY"
        IDRUN_VAGRANT_SERIAL_LOG="$TMP/serial.log"
        IDRUN_DEB="$DEB")
    if [ -n "${IDRUN_VAGRANT_PYTEST_ARGS:-}" ]; then
        VAGRANT_ENV+=(IDRUN_VAGRANT_PYTEST_ARGS="$IDRUN_VAGRANT_PYTEST_ARGS")
    fi
    if [ -n "${IDRUN_VAGRANT_SUITE:-}" ]; then
        VAGRANT_ENV+=(IDRUN_VAGRANT_SUITE="$(realpath "$IDRUN_VAGRANT_SUITE")")
    fi
}

# Stop a daemon we started: TERM, wait up to 20 s, then KILL.
stop_pid() {
    local pid=$1 name=$2 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || { idrun_log "stopped $name (pid $pid)"; return 0; }
        sleep 0.5
    done
    idrun_log "$name (pid $pid) ignored TERM, killing"
    kill -KILL "$pid" 2>/dev/null
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        idrun_log "stopping running command (pid $CHILD)"
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    idrun_log "cleanup (exit status so far: $rc)"
    if [ "$VAGRANT_STARTED" = 1 ]; then
        timeout --kill-after=10 180 ip netns exec "$NETNS" "${VAGRANT_ENV[@]}" vagrant destroy -f "$MACHINE" >> "$TMP/destroy.log" 2>&1 \
            || idrun_log "vagrant destroy failed (see destroy.log); removing the domain with virsh"
    fi
    if [ -n "$LIBVIRTD_PID" ] && kill -0 "$LIBVIRTD_PID" 2>/dev/null; then
        local d n v
        # Domains, volumes and networks that did not exist before this run.
        for d in $(virsh_ list --all --name); do
            grep -qxF "$d" <<<"$DOMS_BEFORE" && continue
            idrun_log "removing leftover domain $d"
            virsh_ destroy "$d" >/dev/null 2>&1
            virsh_ undefine "$d" --remove-all-storage >/dev/null 2>&1 || virsh_ undefine "$d" >/dev/null 2>&1
        done
        if virsh_ pool-info default >/dev/null 2>&1; then
            for v in $(virsh_ vol-list default | awk '{print $1}'); do
                grep -qxF "$v" <<<"$VOLS_BEFORE" && continue
                idrun_log "deleting pool volume $v"
                virsh_ vol-delete --pool default "$v" >/dev/null
            done
            if [ "$POOL_PREEXISTED" = 0 ]; then
                virsh_ pool-destroy default >/dev/null 2>&1
                virsh_ pool-undefine default >/dev/null 2>&1
                idrun_log "removed storage pool 'default' (created by this run)"
            fi
        fi
        # Stop every network this libvirtd runs (they all live in our netns), and
        # forget the ones this run defined.
        for n in $(virsh_ net-list --name); do
            virsh_ net-destroy "$n" >/dev/null
        done
        for n in $(virsh_ net-list --all --name); do
            grep -qxF "$n" <<<"$NETS_BEFORE" && continue
            virsh_ net-undefine "$n" >/dev/null && idrun_log "removed network $n (created by this run)"
        done
    fi
    stop_pid "$LIBVIRTD_PID" libvirtd
    stop_pid "$VIRTLOGD_PID" virtlogd
    # Runtime state of the daemons we ran (pid files, "autostarted" markers).
    if [ "$RUNDIR_PREEXISTED" = 0 ] && ! pgrep -x libvirtd >/dev/null && ! pgrep -x virtlogd >/dev/null; then
        rm -rf /run/libvirt
    fi
    # The domain's QEMU log: into our logs, not left in /var/log/libvirt.
    if [ -n "$TMP" ] && [ -f "/var/log/libvirt/qemu/$DOMAIN.log" ]; then
        mv "/var/log/libvirt/qemu/$DOMAIN.log" "$TMP/qemu-$DOMAIN.log"
    fi
    if [ "$NETNS_MADE" = 1 ]; then
        # Anything still running in our namespace was started by this run.
        local p
        for p in $(ip netns pids "$NETNS" 2>/dev/null); do
            idrun_log "killing leftover process $p in $NETNS: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-80)"
            kill -KILL "$p" 2>/dev/null
        done
        sleep 0.5
        ip netns delete "$NETNS" && idrun_log "deleted network namespace $NETNS"
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$RESULT" != PASS ] || [ "${IDRUN_VAGRANT_KEEP_LOGS:-0}" = 1 ]; then
            mkdir -p "$CACHE/logs"
            rm -rf "$CACHE/logs/last-run"
            mkdir -p "$CACHE/logs/last-run"
            cp "$TMP"/*.log "$CACHE/logs/last-run/" 2>/dev/null
            idrun_log "logs kept in $CACHE/logs/last-run/"
        fi
        rm -rf "$TMP"
    fi
    idrun_log "cleanup done; total $(( $(date +%s) - T_START )) s"
    [ "$rc" = 0 ] && [ "$RESULT" != PASS ] && rc=1
    exit "$rc"
}
trap cleanup EXIT
trap 'idrun_log "interrupted"; exit 130' INT
trap 'idrun_log "terminated"; exit 143' TERM

phase() { PHASE_T0=$(date +%s); idrun_log "== $*"; }
phase_done() { echo $(( $(date +%s) - PHASE_T0 )); }

TMP=$(mktemp -d /tmp/idrun-vagrant.XXXXXX) || exit 1
chmod 755 "$TMP"   # libvirt opens the serial log in here

# ---- 1. host packages -------------------------------------------------------------
phase "host packages"
bounded "$ROOT/scripts/deps.sh" vagrant || exit 1
T_PKG=$(phase_done)

# ---- 2. box ---------------------------------------------------------------------------
phase "box"
bounded "$HERE/local-box/build-box.sh" > "$TMP/box-path" || { idrun_log "box build failed"; exit 1; }
BOX=$(tail -n1 "$TMP/box-path")
# shellcheck disable=SC1090
. "$BOX.env"          # BOX_NAME, SSH_KEY, KERNEL
T_BOX=$(phase_done)

# ---- 3. sandbox: netns + daemons ---------------------------------------------------------
phase "network namespace $NETNS + libvirtd"
for d in libvirtd virtlogd; do
    if [ -s "/run/$d.pid" ] && kill -0 "$(cat "/run/$d.pid")" 2>/dev/null; then
        idrun_die "$d is already running (pid $(cat "/run/$d.pid")), not started by this script; refusing to use it"
    fi
done
ip netns list | grep -qw "^$NETNS" && idrun_die "network namespace $NETNS already exists"
ip netns add "$NETNS" || exit 1
NETNS_MADE=1
ip -n "$NETNS" link set lo up
[ -e /etc/libvirt/storage/default.xml ] || POOL_PREEXISTED=0
[ -e /run/libvirt ] || RUNDIR_PREEXISTED=0

ip netns exec "$NETNS" /usr/sbin/virtlogd -d || idrun_die "virtlogd did not start"
for _ in $(seq 1 50); do [ -s /run/virtlogd.pid ] && break; sleep 0.1; done
VIRTLOGD_PID=$(cat /run/virtlogd.pid)
# libvirtd also gets a private mount namespace in which /dev/kvm is an
# unreadable regular file.  This machine's /dev/kvm (PVM) cannot run stock
# kernels anyway, and without the mask libvirt finds KVM "usable" when probing
# QEMU but not when checking its capabilities cache, so it re-probes QEMU on
# every capabilities call (8-13 s each on a busy 2-core machine, several
# times per vagrant up).  The mask is a mount under /dev, which libvirt cannot
# move into a domain's private /dev ("Unable to move ... mount to /dev/kvm"),
# so that namespace is turned off, with a qemu.conf seen only by this libvirtd.
: > "$TMP/no-kvm"
chmod 000 "$TMP/no-kvm"
cp -p /etc/libvirt/qemu.conf "$TMP/qemu.conf"
printf '\n# idrun run-vagrant-test.sh\nnamespaces = [ ]\n' >> "$TMP/qemu.conf"
ip netns exec "$NETNS" unshare --mount --propagation private -- sh -c '
    [ -e /dev/kvm ] && mount --bind "$1" /dev/kvm
    mount --bind "$2" /etc/libvirt/qemu.conf || exit 1
    exec /usr/sbin/libvirtd -d' sh "$TMP/no-kvm" "$TMP/qemu.conf" \
    || idrun_die "libvirtd did not start"
for _ in $(seq 1 50); do [ -s /run/libvirtd.pid ] && break; sleep 0.1; done
LIBVIRTD_PID=$(cat /run/libvirtd.pid)
idrun_log "virtlogd pid $VIRTLOGD_PID, libvirtd pid $LIBVIRTD_PID (netns $NETNS)"
# ("virsh list" answers in 0.03 s; "virsh version" takes 4 s here.)
for _ in $(seq 1 120); do virsh_ list >/dev/null 2>&1 && break; sleep 0.5; done
virsh_ list >/dev/null || idrun_die "libvirtd does not answer on $LIBVIRT_URI"
DOMS_BEFORE=$(virsh_ list --all --name)
NETS_BEFORE=$(virsh_ net-list --all --name)
VOLS_BEFORE=$(virsh_ vol-list default 2>/dev/null | awk '{print $1}')
T_NS=$(phase_done)

# ---- 4. vagrant ---------------------------------------------------------------------------
phase "vagrant box add $BOX_NAME (version $BOX_VERSION)"
set_vagrant_env
VAGRANT_STARTED=1    # from here on, cleanup runs vagrant destroy
# Through a small catalogue file, so the box has a version: vagrant-libvirt
# then names its pool volume <name>_vagrant_box_image_<version>_box.img
# (without a version it appends the box file's mtime).
printf '{"name":"%s","versions":[{"version":"%s","providers":[{"name":"libvirt","url":"file://%s"}]}]}\n' \
    "$BOX_NAME" "$BOX_VERSION" "$BOX" > "$TMP/box-catalogue.json"
bounded ip netns exec "$NETNS" "${VAGRANT_ENV[@]}" vagrant box add "$TMP/box-catalogue.json" > "$TMP/box-add.log" 2>&1 \
    || { cat "$TMP/box-add.log" >&2; exit 1; }

phase "box volume into the libvirt pool (virsh vol-upload)"
# vagrant-libvirt would upload the image itself in 250 KiB steps from Ruby,
# which takes over a minute on a busy 2-core machine.  If this fails, vagrant
# uploads as usual.
VOL="${BOX_NAME//\//-VAGRANTSLASH-}_vagrant_box_image_${BOX_VERSION}_box.img"
IMG=$(find "$TMP/vagrant-home/boxes" -name box.img -print -quit)
if ! virsh_ pool-info default >/dev/null 2>&1; then
    virsh_ pool-define-as default dir --target /var/lib/libvirt/images >/dev/null \
        && virsh_ pool-build default >/dev/null && virsh_ pool-start default >/dev/null
elif ! virsh_ pool-info default | grep -q 'State: *running'; then
    virsh_ pool-start default >/dev/null
fi
if [ -n "$IMG" ] && virsh_ vol-create-as default "$VOL" 4G --format qcow2 >/dev/null \
    && bounded virsh -q -c "$LIBVIRT_URI" vol-upload --pool default "$VOL" "$IMG" \
    && virsh_ pool-refresh default >/dev/null; then
    idrun_log "uploaded $(du -h "$IMG" | cut -f1) as pool volume $VOL"
else
    idrun_log "could not pre-upload the box volume; vagrant-libvirt will upload it"
    virsh_ vol-delete --pool default "$VOL" >/dev/null 2>&1
fi
T_VOL=$(phase_done)

phase "vagrant up $MACHINE (libvirt, driver qemu = TCG)"
run_logged "$TMP/up.log" ip netns exec "$NETNS" "${VAGRANT_ENV[@]}" \
    vagrant up "$MACHINE" --provider=libvirt --no-provision --no-color
UP_RC=$?
T_UP=$(phase_done)
[ "$UP_RC" = 0 ] || { idrun_log "vagrant up failed (rc=$UP_RC)"; tail -n 40 "$TMP/serial.log" 2>/dev/null >&2; exit 1; }

phase "vagrant provision $MACHINE (integration suite)"
run_logged "$TMP/provision.log" ip netns exec "$NETNS" "${VAGRANT_ENV[@]}" \
    vagrant provision "$MACHINE" --no-color
PROV_RC=$?
T_SUITE=$(phase_done)

# ---- 5. report ---------------------------------------------------------------------------
strip() { sed -E 's/\r//; s/^ *'"$MACHINE"': ?//' "$1"; }
GUEST_LINE=$(strip "$TMP/provision.log" | grep -m1 '^GUEST ' || true)
SUITE_LINES=$(strip "$TMP/provision.log" | grep '^SUITE ' || true)
SUITE_RC=$(strip "$TMP/provision.log" | sed -n 's/^GUEST-SUITE-RC=\([0-9]*\).*/\1/p' | tail -n1)
GUEST_KERNEL=$(sed -n 's/.* kernel=\([^ ]*\).*/\1/p' <<<"$GUEST_LINE")
UNDER_TEST=$(strip "$TMP/provision.log" | grep -m1 '^IDRUN-UNDER-TEST ' || true)
if [ "$PROV_RC" = 0 ] && [ "${SUITE_RC:-x}" = 0 ]; then RESULT=PASS; fi

echo
[ -n "$GUEST_LINE" ] && echo "$GUEST_LINE"
[ -n "$UNDER_TEST" ] && echo "$UNDER_TEST"
[ -n "$SUITE_LINES" ] && echo "$SUITE_LINES"
echo "MATRIX $MATRIX_NAME kernel=${GUEST_KERNEL:-unknown} box=$(basename "$BOX" .box) driver=qemu" \
     "deb=$(basename "$DEB") idrun=$(sed -n 's/.* command=\([^ ]*\) version=\([^ ]*\) module=\([^ ]*\).*/\2 \1 module=\3/p' <<<"$UNDER_TEST")" \
     "suite_rc=${SUITE_RC:-none} vagrant_rc=$PROV_RC" \
     "t_pkgs=${T_PKG}s t_box=${T_BOX}s t_upload=${T_VOL}s t_up=${T_UP}s t_suite=${T_SUITE}s $RESULT"
[ "$RESULT" = PASS ]
