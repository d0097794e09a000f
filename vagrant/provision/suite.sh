#!/bin/sh
# Vagrant provisioner (runs as root in the guest): report the guest, then run the
# project's single in-guest entry point and pass its exit status on.
# Usage: suite.sh [--deb FILE] TREE ENTRYPOINT [ARGS for the entry point (pytest args)...]
# With --deb the entry point installs FILE (dpkg -i) and tests the installed package
# (IDRUN_DEB, see integration/guest/run-suite.sh).
if [ "${1:-}" = --deb ]; then
    IDRUN_DEB=$2
    export IDRUN_DEB
    shift 2
fi
tree=${1:-/idrun}
entry=${2:-$tree/integration/guest/run-suite.sh}
if [ $# -ge 2 ]; then shift 2; else set --; fi

os=$( . /etc/os-release 2>/dev/null && echo "${ID:-unknown}-${VERSION_ID:-unknown}" )
nuid=$(command -v newuidmap || echo none)
nuid_mode=none
if [ "$nuid" != none ]; then
    nuid_mode=$(stat -c %A "$nuid")
    caps=$(getcap "$nuid" 2>/dev/null | sed 's/^[^ ]* //;s/ //g')
    [ -n "$caps" ] && nuid_mode="$nuid_mode,$caps"
fi
aa=$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo n/a)
echo "GUEST os=$os kernel=$(uname -r) python=$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null || echo none) newuidmap=$nuid_mode apparmor_restrict_unprivileged_userns=$aa"

if [ ! -f "$entry" ]; then
    echo "GUEST-ERROR entry point not found: $entry (is integration/ in the synced tree?)"
    echo "GUEST-SUITE-RC=127"
    exit 127
fi
cd "$tree" || exit 1
[ $# -gt 0 ] && echo "GUEST entry point args: $*"
[ -n "${IDRUN_DEB:-}" ] && echo "GUEST package: $IDRUN_DEB"
if [ -x "$entry" ]; then
    "$entry" "$@"
else
    bash "$entry" "$@"
fi
rc=$?
echo "GUEST-SUITE-RC=$rc"
exit "$rc"
