#!/bin/sh
# Vagrant provisioner (runs as root in the guest): report the guest, then run the
# project's single in-guest entry point and pass its exit status on.
# Usage: suite.sh TREE ENTRYPOINT [ARGS for the entry point (pytest args)...]
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
if [ -x "$entry" ]; then
    "$entry" "$@"
else
    bash "$entry" "$@"
fi
rc=$?
echo "GUEST-SUITE-RC=$rc"
exit "$rc"
