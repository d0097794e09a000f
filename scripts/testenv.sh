#!/usr/bin/env bash
# Prepare the rootless test environment (run as root; idempotent; safe to run concurrently):
#   * an unprivileged user (default idrun-test) with /etc/subuid and /etc/subgid ranges;
#   * a venv under /opt (root's home is mode 700, so nothing under /root is usable by that
#     user) built from Debian's /usr/bin/python3 with idrun installed NON-editable.
# It does nothing when the sources, pyproject.toml and this script are unchanged since the
# last run. Prints the venv's python on success.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEST_USER=${IDRUN_TEST_USER:-idrun-test}
PREFIX=${IDRUN_TEST_PREFIX:-/opt/idrun-test}
PY=${IDRUN_PYTHON:-/usr/bin/python3}  # the interpreter the test user runs (as run-suite.sh)
VENV=$PREFIX/venv

if [ "$(id -u)" != 0 ]; then
    echo "testenv.sh: must run as root (creates a user and writes $PREFIX)" >&2
    exit 1
fi
install -d -m 755 "$PREFIX"
exec 9>"$PREFIX/.lock"
flock 9

# The user, with sub-id ranges. useradd usually adds ranges itself (login.defs SUB_UID_*);
# if it did not, delegate a fresh block above every existing range so none overlaps.
if ! getent passwd "$TEST_USER" >/dev/null; then
    useradd -m -s /bin/bash "$TEST_USER"
fi
for f in /etc/subuid /etc/subgid; do
    [ -e "$f" ] || install -m 644 /dev/null "$f"
    if ! grep -q "^$TEST_USER:" "$f"; then
        start=$(awk -F: 'BEGIN { m = 200000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$f")
        start=$(( (start + 65535) / 65536 * 65536 ))
        echo "$TEST_USER:$start:65536" >> "$f"
    fi
done

key=$( (cd "$ROOT" && find src pyproject.toml -type f ! -name '*.pyc' ! -name '*.so' \
        ! -path '*/__pycache__/*' -print0 2>/dev/null | sort -z | xargs -0 sha256sum
        sha256sum "$0") | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/idrun" ] && [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" = "$key" ]; then
    echo "$VENV/bin/python"
    exit 0
fi

deps_key=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$PREFIX/.deps" 2>/dev/null)" != "$deps_key" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    # Dependencies once per pyproject.toml (python-prctl compiles against libcap-dev).
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "$ROOT" setuptools wheel >&2
    echo "$deps_key" > "$PREFIX/.deps"
fi
# The project itself, non-editable, from a private copy of the tree (the build writes
# build/ and *.egg-info, which must not land in the checkout or race other builds).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$ROOT/src" "$ROOT/pyproject.toml" "$work/"
find "$work/src" \( -name '*.so' -o -name '__pycache__' -o -name '*.egg-info' \) -prune \
    -exec rm -rf {} +
for f in README.md; do [ -e "$ROOT/$f" ] && cp "$ROOT/$f" "$work/"; done
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation --force-reinstall "$work" >&2
chmod -R a+rX "$PREFIX"
echo "$key" > "$PREFIX/.stamp"
echo "$VENV/bin/python"
