#!/bin/bash
# run-suite.sh - the single entry point for idrun's integration suite.
#
# Usage: run-suite.sh [pytest args]
#
# Runs `python3 -m pytest <tree>/integration` once as root and once as an
# unprivileged user that has subordinate ids, then prints one line
#     SUITE user=<name> kernel=<uname -r> rc=<rc>
# per pass.  Exits 0 only if every pass passed.  It is used unchanged on a
# developer host, inside the QEMU initramfs guests (integration/vm/run.py) and
# inside Vagrant boxes.
#
# Environment:
#   IDRUN_TREE       project checkout (default: two levels above this script)
#   IDRUN_TEST_USER  unprivileged user for the second pass (default idrun-test);
#                    created with `useradd -m` if missing
#   IDRUN            command prefix that runs idrun (default: `idrun` if the
#                    pass's user has it on PATH, else `python3 -m idrun` with
#                    PYTHONPATH=<tree>/src)
#   IDRUN_DEB        a .deb of idrun (`make deb`) to install with dpkg -i, as root,
#                    before the passes; implies IDRUN_INSTALLED=1. Its Depends must
#                    be installed already (the VM images and the Vagrant boxes
#                    have them from their own Debian release)
#   IDRUN_INSTALLED  1: test the installed package, not a source tree: IDRUN is
#                    `idrun` (it must be /usr/bin/idrun), no PYTHONPATH, and the
#                    script fails unless each pass's python3 imports idrun from
#                    /usr/lib/python3/dist-packages
#   IDRUN_PYTHON     interpreter that runs pytest (default python3)
#   CI, IDRUN_*      passed on to pytest (the passes otherwise get a clean
#                    environment); as root it sets IDRUN_IT_FAILING_NEWUIDMAP
#
# Every pass prints which idrun it tests:
#     IDRUN-UNDER-TEST user=<name> command=<path> version=<version> module=<file>
#
# Test paths among the pytest args (relative to the tree, e.g.
# integration/test_smoke_kernel.py or integration/test_maps.py::test_x)
# replace the default <tree>/integration.
#
# When not started as root only one pass runs, as the calling user.
set -euo pipefail

prog=run-suite
say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tree=${IDRUN_TREE:-$(cd "$script_dir/../.." && pwd)}
[[ -d $tree ]] || die "IDRUN_TREE=$tree is not a directory"
tree=$(cd "$tree" && pwd)
[[ -d $tree/integration ]] || die "no integration/ directory in $tree (set IDRUN_TREE to the project checkout)"
test_user=${IDRUN_TEST_USER:-idrun-test}
python=${IDRUN_PYTHON:-python3}
# A PATH an unprivileged user can actually use (root's PATH may point into
# /root, which other users cannot enter).
user_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
kernel=$(uname -r)
installed=${IDRUN_INSTALLED:-0}
[[ -z ${IDRUN_DEB:-} ]] || installed=1
# Where Debian's python3 finds the modules of a .deb (dh_python3's install dir).
dist_packages=/usr/lib/python3/dist-packages

# Scratch space: a copy of the tree if needed, and per-user bytecode caches
# (PYTHONPYCACHEPREFIX keeps .pyc files out of the tree, which may be a
# read-only 9p share, while still caching them across idrun invocations).
scratch=$(mktemp -d /tmp/idrun-suite.XXXXXX)
chmod 755 "$scratch"
cleanup() { rm -rf -- "$scratch"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- header
distro=unknown
if [[ -r /etc/os-release ]]; then
    distro=$(. /etc/os-release && printf '%s' "${PRETTY_NAME:-${NAME:-unknown}}")
fi
echo "==== idrun integration suite ===="
echo "kernel:  $kernel"
echo "distro:  $distro"
echo "python:  $("$python" --version 2>&1 || echo "$python not runnable")"
echo "tree:    $tree"
echo "user:    $(id -un) (uid $(id -u))"

# ------------------------------------------------------ installed package
if [[ -n ${IDRUN_DEB:-} ]]; then
    [[ $(id -u) -eq 0 ]] || die "IDRUN_DEB: installing $IDRUN_DEB needs root (dpkg -i)"
    [[ -f $IDRUN_DEB ]] || die "IDRUN_DEB=$IDRUN_DEB: no such file (make deb builds dist/idrun_VERSION_all.deb)"
    say "installing $IDRUN_DEB (dpkg -i)"
    t0=$SECONDS
    # Its Depends come from the system's own release (preinstalled: no network here).
    dpkg -i "$IDRUN_DEB" \
        || die "dpkg -i $IDRUN_DEB failed; install its Depends from this release first (apt-get install $IDRUN_DEB does both)"
    say "installed in $((SECONDS - t0)) s"
fi
if [[ $installed == 1 ]]; then
    [[ -z ${IDRUN:-} || $IDRUN == idrun ]] \
        || die "IDRUN=$IDRUN: testing the installed package runs 'idrun' (unset IDRUN or IDRUN_INSTALLED)"
    echo "package: $(dpkg-query -W -f '${Package} ${Version} (${Status})' idrun 2>/dev/null || echo 'idrun: not installed by dpkg')"
fi

# ------------------------------------------------------- unprivileged user
ensure_user() {
    local user=$1 uid
    if ! id -u "$user" >/dev/null 2>&1; then
        say "creating user $user"
        useradd -m -s /bin/bash "$user" || die "useradd -m $user failed"
    fi
    uid=$(id -u "$user")
    local f
    for f in /etc/subuid /etc/subgid; do
        [[ -e $f ]] || { : >"$f"; chmod 644 "$f"; }
        if ! grep -Eq "^($user|$uid):" "$f"; then
            say "adding $user:200000:65536 to $f"
            echo "$user:200000:65536" >>"$f"
        fi
    done
    say "$user: uid=$uid subuid=$(grep -E "^($user|$uid):" /etc/subuid | head -n1) subgid=$(grep -E "^($user|$uid):" /etc/subgid | head -n1)"
}

# as_user USER CMD... : run CMD as USER with a clean, usable environment.
as_user() {
    local user=$1; shift
    if [[ $user == "$(id -un)" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$user" -- "$@"
    else
        setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- "$@"
    fi
}

# Sets $utree to the tree as the unprivileged user can read it: either $tree
# itself or a world-readable copy of src/, integration/ and testlib/ (e.g. when
# $tree is under /root, which is mode 700).
utree=
user_tree() {
    local user=$1 unreadable dirs=("$tree/integration" "$tree/testlib") with_src=0
    # the installed package is tested: no copy of src/, so nothing can import it
    [[ -d $tree/src && $installed != 1 ]] && { dirs+=("$tree/src"); with_src=1; }
    if unreadable=$(as_user "$user" find "${dirs[@]}" ! -readable -print -quit 2>/dev/null) \
        && [[ -z $unreadable ]]; then
        utree=$tree
        return
    fi
    local copy=$scratch/tree
    mkdir -p -- "$copy"
    cp -r -- "$tree/integration" "$tree/testlib" "$copy/"
    if [[ $with_src == 1 ]]; then cp -r -- "$tree/src" "$copy/"; fi
    if [[ -f $tree/pyproject.toml ]]; then cp -- "$tree/pyproject.toml" "$copy/"; fi
    find "$copy" -name __pycache__ -prune -exec rm -rf {} +
    chmod -R a+rX,go-w "$copy"
    say "$user cannot read $tree; using a copy in $copy"
    utree=$copy
}

# in_tree USER TREE ENV... -- CMD...: CMD as USER with exactly ENV, in TREE (as pytest runs)
in_tree() {
    local user=$1 run_tree=$2; shift 2
    local -a envv=()
    while [[ $1 != -- ]]; do envv+=("$1"); shift; done
    shift
    # cd inside the child so a tree the user cannot enter is not a problem
    # for the shell itself.
    as_user "$user" env -i "${envv[@]}" sh -c 'cd "$1" && shift && exec "$@"' run-suite "$run_tree" "$@"
}

# under_test USER TREE COMMAND ENV...: print which idrun the pass tests (the
# command's path and version, the module python3 imports); with the installed
# package, fail unless both are the package's.
under_test() {
    local user=$1 run_tree=$2 idrun_cmd=$3; shift 3
    local word=${idrun_cmd%% *} path module version
    path=$(in_tree "$user" "$run_tree" "$@" -- sh -c 'command -v "$1"' sh "$word") || path="not found"
    module=$(in_tree "$user" "$run_tree" "$@" -- "$python" -c 'import idrun; print(idrun.__file__)' 2>&1 | tail -n1) \
        || module="not importable: $module"
    # shellcheck disable=SC2086  # IDRUN is a command prefix
    version=$(in_tree "$user" "$run_tree" "$@" -- $idrun_cmd --version 2>&1 | head -n1) || version="exit $?: $version"
    echo "IDRUN-UNDER-TEST user=$user command=$path version=${version#idrun } module=$module"
    if [[ $installed == 1 ]]; then
        [[ $path == /usr/bin/idrun ]] \
            || die "installed package: 'idrun' is $path for $user, not /usr/bin/idrun"
        [[ $module == "$dist_packages"/idrun/* ]] \
            || die "installed package: $python imports idrun from $module for $user, not from $dist_packages"
    fi
}

# ------------------------------------------------------------------ passes
failed=0
results=()

run_pass() {
    local user=$1 run_tree=$2; shift 2
    local -a envv=(
        "PATH=${user_path}"
        IDRUN_TREE="$run_tree"
        PYTHONUNBUFFERED=1
        LC_ALL=C.UTF-8
    )
    # The installed package runs with the byte-code its postinst compiled.
    [[ $installed == 1 ]] || envv+=(PYTHONPYCACHEPREFIX="$scratch/pycache-$user")
    [[ $user == root || $user == "$(id -un)" ]] && envv[0]="PATH=${PATH}"
    # the suite's own knobs (CI=true, IDRUN_TEST_TIMEOUT, ...)
    local name
    for name in $(compgen -e); do
        case $name in
            IDRUN|IDRUN_TREE|PYTHONPATH) ;;
            CI|IDRUN_*) envv+=("$name=${!name}") ;;
        esac
    done
    local idrun_cmd=${IDRUN:-}
    if [[ $installed == 1 ]]; then
        idrun_cmd=idrun   # from PATH, and python3 finds the package's module
    elif [[ -z $idrun_cmd ]]; then
        # The tree's code, even where a package put an idrun on PATH: a source-tree
        # run tests the checkout (IDRUN_INSTALLED=1 tests the package).
        idrun_cmd="$python -m idrun"
        envv+=("PYTHONPATH=$run_tree/src${PYTHONPATH:+:$PYTHONPATH}")
    elif [[ -n ${PYTHONPATH:-} ]]; then
        envv+=("PYTHONPATH=$PYTHONPATH")
    fi
    envv+=("IDRUN=$idrun_cmd")
    mkdir -p -- "$scratch/pycache-$user"
    if [[ $(id -u) -eq 0 ]]; then chown -- "$user:" "$scratch/pycache-$user"; fi
    local home
    home=$(getent passwd "$user" | cut -d: -f6)
    envv+=("HOME=${home:-/}" "USER=$user" "LOGNAME=$user")

    echo
    echo "==== pass: user=$user ($(id -u "$user")) IDRUN=\"$idrun_cmd\" ===="
    under_test "$user" "$run_tree" "$idrun_cmd" "${envv[@]}"
    local rc=0 a t0=$SECONDS
    local -a default_paths=("$run_tree/integration")
    for a in "$@"; do
        if [[ $a != -* && -e $tree/${a%%::*} ]]; then default_paths=(); break; fi
    done
    in_tree "$user" "$run_tree" "${envv[@]}" -- \
        "$python" -m pytest "${default_paths[@]}" --color=no -p no:cacheprovider "$@" || rc=$?
    if [[ $rc -ne 0 ]] && ! as_user "$user" env -i "${envv[@]}" "$python" -c 'import pytest' >/dev/null 2>&1; then
        say "hint: '$python' cannot import pytest as $user; install python3-pytest" \
            "python3-click python3-prctl python3-pyroute2, or set IDRUN_PYTHON to an interpreter $user can run"
    fi
    say "pass user=$user took $((SECONDS - t0)) s"
    echo "SUITE user=$user kernel=$kernel rc=$rc"
    results+=("SUITE user=$user kernel=$kernel rc=$rc")
    if [[ $rc -ne 0 ]]; then failed=1; fi
}

# --userns=auto as root takes its ids from the user "containers" (podman's
# convention): delegate podman's suggested upper half of the id space if no
# range is there yet (nothing below 2^31 is touched).
ensure_containers_pool() {
    local f
    for f in /etc/subuid /etc/subgid; do
        if ! grep -q "^containers:" "$f"; then
            say "adding containers:2147483647:2147483648 to $f"
            echo "containers:2147483647:2147483648" >>"$f"
        fi
    done
}

# A setuid-root helper that always fails (a copy of false(1)), for the unprivileged
# pass's fail-closed test (integration/test_rootless_helpers.py): only root can make it.
failing_helper() {
    local path=$scratch/helpers/newuidmap-false
    mkdir -p -- "$scratch/helpers"
    chmod 755 -- "$scratch/helpers"
    cp -- "$(type -P false)" "$path"
    chmod 4755 -- "$path"
    export IDRUN_IT_FAILING_NEWUIDMAP=$path
}

if [[ $(id -u) -eq 0 ]]; then
    ensure_user "$test_user"
    ensure_containers_pool
    failing_helper
    run_pass root "$tree" "$@"
    user_tree "$test_user"
    run_pass "$test_user" "$utree" "$@"
else
    say "not root: running a single pass as $(id -un); the root and $test_user passes need root"
    run_pass "$(id -un)" "$tree" "$@"
fi

echo
echo "==== summary ===="
printf '%s\n' "${results[@]}" | sed 's/^/  /'
exit "$failed"
