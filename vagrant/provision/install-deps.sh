#!/bin/sh
# Vagrant provisioner for the public boxes (runs as root in the guest, needs a
# network): install what integration/guest/run-suite.sh needs.
#   python3, newuidmap/newgidmap (uidmap / shadow-utils), and the Python modules
#   click, prctl, pyroute2, pytest -- from distro packages, falling back to pip
#   for any module the distro does not ship.
# Usage: install-deps.sh [DEB]
#   DEB (Debian/Ubuntu): the idrun .deb; apt-get installs it with its Depends from
#   the box's own release (the suite then reinstalls it with dpkg -i and tests it).
set -eu
deb=${1:-}

MODULES="click prctl pyroute2 pytest"

missing_modules() {
    for m in $MODULES; do
        python3 -c "import $m" 2>/dev/null || printf '%s ' "$m"
    done
}

pip_name() {
    case $1 in
        prctl) echo python-prctl ;;
        *) echo "$1" ;;
    esac
}

if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3 uidmap libcap2-bin rsync
    for p in python3-click python3-prctl python3-pyroute2 python3-pytest; do
        apt-get install -y -q --no-install-recommends "$p" || echo "install-deps: no distro package $p"
    done
    if [ -n "$deb" ]; then
        apt-get install -y -q --no-install-recommends "$deb"
    fi
    BUILD_DEPS="python3-pip python3-dev gcc libc6-dev libcap-dev"
    PKG_INSTALL="apt-get install -y -q --no-install-recommends"
elif command -v dnf >/dev/null; then
    dnf install -y -q python3 shadow-utils libcap rsync
    for p in python3-click python3-prctl python3-pyroute2 python3-pytest; do
        dnf install -y -q "$p" || echo "install-deps: no distro package $p"
    done
    BUILD_DEPS="python3-pip python3-devel gcc libcap-devel"
    PKG_INSTALL="dnf install -y -q"
else
    echo "install-deps: neither apt-get nor dnf found" >&2
    exit 1
fi

missing=$(missing_modules)
if [ -n "$missing" ]; then
    echo "install-deps: falling back to pip for: $missing"
    # shellcheck disable=SC2086
    $PKG_INSTALL $BUILD_DEPS
    for m in $missing; do
        # PEP 668 distros need --break-system-packages; older pips do not know it.
        python3 -m pip install --break-system-packages "$(pip_name "$m")" \
            || python3 -m pip install "$(pip_name "$m")"
    done
fi

missing=$(missing_modules)
[ -z "$missing" ] || { echo "install-deps: still missing Python modules: $missing" >&2; exit 1; }
command -v newuidmap >/dev/null && command -v newgidmap >/dev/null \
    || { echo "install-deps: newuidmap/newgidmap missing" >&2; exit 1; }
echo "install-deps: OK ($(python3 --version), $(command -v newuidmap))"
