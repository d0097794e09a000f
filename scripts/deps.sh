#!/bin/sh
# deps.sh [--dry-run] [--list] PHASE... - install the Debian packages that mk/tools.txt
# lists for the given phases (host, run, package, vm, vagrant; "all" = all of them), only
# the missing ones.
#
# Root runs `apt-get update` and `apt-get install --no-install-recommends` of the missing
# packages, with service starts denied while installing (a libvirtd started by a maintainer
# script would run in the machine's own network namespace). Anyone else gets the
# apt-get command to run and exit status 1.
#
#   --list      print the packages of the phases, one a line, and exit
#   --dry-run   print the apt-get command instead of running it (exit 0)
# Environment:
#   IDRUN_DPKG_ADMINDIR  dpkg database to check presence against (default dpkg's own);
#                        an empty one simulates a fresh machine: tests/test_tools_list.py
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
list=$top/mk/tools.txt
dry=0 only_list=0 phases=
for a in "$@"; do
    case $a in
        --dry-run) dry=1 ;;
        --list) only_list=1 ;;
        all) phases="$phases host run package vm vagrant" ;;
        host|run|package|vm|vagrant) phases="$phases $a" ;;
        *) echo "deps.sh: unknown phase '$a' (host, run, package, vm, vagrant or all)" >&2; exit 2 ;;
    esac
done
[ -n "$phases" ] || { echo "usage: deps.sh [--dry-run] [--list] host|run|package|vm|vagrant|all ..." >&2; exit 2; }

# Column 2 of every line whose phase list (column 3) names a wanted phase.
packages=$(awk -v want="$phases" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ok[w[i]] = 1 }
    { sub(/#.*/, "") }
    NF >= 3 { m = split($3, p, ","); for (i = 1; i <= m; i++) if (p[i] in ok && !seen[$2]++) print $2 }
' "$list")
if [ "$only_list" = 1 ]; then printf '%s\n' $packages; exit 0; fi

admin=${IDRUN_DPKG_ADMINDIR:+--admindir=$IDRUN_DPKG_ADMINDIR}
missing=
for p in $packages; do
    # shellcheck disable=SC2086
    st=$(dpkg-query $admin -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
phases=$(echo $phases)
if [ -z "$missing" ]; then
    echo "deps.sh ($phases): all $(echo $packages | wc -w) packages present"
    exit 0
fi
cmd="apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends$missing"
if [ "$dry" = 1 ]; then
    echo "deps.sh ($phases): would run: apt-get -o DPkg::Lock::Timeout=900 update -q && $cmd"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh ($phases): missing Debian packages:$missing (as root: apt-get update && $cmd)" >&2
    exit 1
fi
echo "deps.sh ($phases): installing:$missing"
policy=/usr/sbin/policy-rc.d made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from idrun scripts/deps.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
rc=0
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=900 update -q && $cmd || rc=$?
[ "$made_policy" = 0 ] || rm -f "$policy"
exit "$rc"
