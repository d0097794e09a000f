#!/bin/sh
# init.sh - PID 1 of the idrun test VM (copied to /init in the initramfs that
# integration/vm/build-image.sh makes).
#
# It mounts the pseudo file systems, loads the virtio/9p modules, mounts the
# project tree (9p tag idrun_tree, read-only) at /host/tree and the results
# directory (9p tag idrun_out) at /host/out, runs
# /host/tree/integration/guest/run-suite.sh, prints GUEST-EXIT-STATUS=<rc> on
# the console, writes <rc> to /host/out/exit-status and powers off.
#
# Kernel command line switches:
#   idrun.shell   start a shell on the console instead of the suite (debugging)
# Files the host may put in the out directory before the boot:
#   pytest-args   one extra pytest argument per line
#   guest-env     KEY=VALUE lines; CI and IDRUN_* (except IDRUN_TREE) are exported
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

mount -t devtmpfs -o mode=0755 devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

power_off() {
    sync
    # minbase has no init system, so there may be no poweroff(8).
    if command -v poweroff >/dev/null 2>&1; then poweroff -f; fi
    python3 -c 'import ctypes; ctypes.CDLL(None, use_errno=True).reboot(0x4321fedc)' 2>/dev/null
    echo o >/proc/sysrq-trigger
    sleep 5
    exit 1  # PID 1 exiting panics the kernel; panic=-1 + qemu -no-reboot stop the VM
}

finish() {
    rc=$1
    [ -n "${2:-}" ] && echo "init: $2"
    if mountpoint -q /host/out 2>/dev/null; then
        echo "$rc" >/host/out/exit-status
        sync
        umount /host/out 2>/dev/null
    fi
    echo "GUEST-EXIT-STATUS=$rc"
    power_off
}

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
# systemd makes every mount shared; so does this init, so the guests test idrun's mounts
# on the realistic host (integration/test_volumes.py also makes / private in a namespace
# of its own for the other case).
mount --make-rshared / || echo "GUEST-WARNING cannot make / rshared"
hostname idrun-vm 2>/dev/null
ip link set lo up 2>/dev/null

echo "GUEST-UP kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)s"

if ! modprobe -a virtio_pci 9pnet_virtio 9p; then
    finish 120 "modprobe virtio_pci 9pnet_virtio 9p failed"
fi
mkdir -p /host/tree /host/out
opts=trans=virtio,version=9p2000.L,msize=262144
tries=0
until mount -t 9p -o "$opts,ro" idrun_tree /host/tree 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -ge 50 ] && finish 121 "cannot mount 9p tag idrun_tree at /host/tree"
    sleep 0.1
done
mount -t 9p -o "$opts" idrun_out /host/out || finish 122 "cannot mount 9p tag idrun_out at /host/out"

case " $(cat /proc/cmdline) " in
    *" idrun.shell "*) echo "init: idrun.shell: starting a shell, exit it to power off"
                       setsid -c /bin/bash -l; finish 0 ;;
esac

set --
if [ -f /host/out/pytest-args ]; then
    while IFS= read -r arg || [ -n "$arg" ]; do set -- "$@" "$arg"; done </host/out/pytest-args
fi
if [ -f /host/out/guest-env ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            IDRUN_TREE=*) ;;
            CI=*|IDRUN_*=*) export "$line" ;;
        esac
    done </host/out/guest-env
fi

suite=/host/tree/integration/guest/run-suite.sh
[ -f "$suite" ] || finish 123 "$suite not found in the shared tree"
cd /
( IDRUN_TREE=/host/tree /bin/bash "$suite" "$@"; echo "$?" >/run/suite-rc ) 2>&1 | tee /host/out/guest.log
rc=$(cat /run/suite-rc 2>/dev/null || echo 124)
finish "$rc"
