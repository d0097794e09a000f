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
#   IDRUN_PYTHON     interpreter that runs pytest (default python3)
#   CI, IDRUN_*      passed on to pytest (the passes otherwise get a clean
#                    environment); as root it sets IDRUN_IT_FAILING_NEWUIDMAP
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
# itself or a world-readable copy of src/ and integration/ (e.g. when $tree is
# under /root, which is mode 700).
utree=
user_tree() {
    local user=$1 unreadable dirs=("$tree/integration")
    [[ -d $tree/src ]] && dirs+=("$tree/src")
    if unreadable=$(as_user "$user" find "${dirs[@]}" ! -readable -print -quit 2>/dev/null) \
        && [[ -z $unreadable ]]; then
        utree=$tree
        return
    fi
    local copy=$scratch/tree
    mkdir -p -- "$copy"
    cp -r -- "$tree/integration" "$copy/"
    if [[ -d $tree/src ]]; then cp -r -- "$tree/src" "$copy/"; fi
    if [[ -f $tree/pyproject.toml ]]; then cp -- "$tree/pyproject.toml" "$copy/"; fi
    find "$copy" -name __pycache__ -prune -exec rm -rf {} +
    chmod -R a+rX,go-w "$copy"
    say "$user cannot read $tree; using a copy in $copy"
    utree=$copy
}

# ------------------------------------------------------------------ passes
failed=0
results=()

run_pass() {
    local user=$1 run_tree=$2; shift 2
    local -a envv=(
        "PATH=${user_path}"
        IDRUN_INTEGRATION=1
        IDRUN_TREE="$run_tree"
        PYTHONPYCACHEPREFIX="$scratch/pycache-$user"
        PYTHONUNBUFFERED=1
        LC_ALL=C.UTF-8
    )
    [[ $user == root || $user == "$(id -un)" ]] && envv[0]="PATH=${PATH}"
    # the suite's own knobs (CI=true, IDRUN_REQUIRE_ALL, IDRUN_TEST_TIMEOUT, ...)
    local name
    for name in $(compgen -e); do
        case $name in
            IDRUN|IDRUN_TREE|PYTHONPATH) ;;
            CI|IDRUN_*) envv+=("$name=${!name}") ;;
        esac
    done
    local idrun_cmd=${IDRUN:-} found
    if [[ -z $idrun_cmd ]]; then
        if found=$(as_user "$user" env "${envv[0]}" sh -c 'command -v idrun' 2>/dev/null) && [[ -n $found ]]; then
            idrun_cmd=$found
        else
            idrun_cmd="$python -m idrun"
            envv+=("PYTHONPATH=$run_tree/src${PYTHONPATH:+:$PYTHONPATH}")
        fi
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
    local rc=0 a t0=$SECONDS
    local -a default_paths=("$run_tree/integration")
    for a in "$@"; do
        if [[ $a != -* && -e $tree/${a%%::*} ]]; then default_paths=(); break; fi
    done
    # cd inside the child so a tree the user cannot enter is not a problem
    # for the shell itself.
    as_user "$user" env -i "${envv[@]}" sh -c 'cd "$1" && shift && exec "$@"' run-suite "$run_tree" \
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
