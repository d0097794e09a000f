#!/bin/bash
# build-image.sh - build one guest image for integration/vm/run.py.
#
# Usage:
#   build-image.sh --suite SUITE --out DIR --init FILE --packages PKG,PKG,...
#                  --source "deb URI SUITE COMPONENT" [--source ...]
#                  --kernel-deb FILE [--kernel-deb ...]
#                  --modules "MOD ..." [--optional-modules "MOD ..."]
#                  [--rootfs-tar FILE]
#
# Makes DIR/initramfs.cpio.zst (the whole Debian minbase rootfs of SUITE plus
# the listed packages, a subset of the kernel's modules and FILE as /init),
# DIR/vmlinuz and DIR/kernel-release.  DIR must not exist yet.  With --rootfs-tar,
# the userland (mmdebstrap's result, before any kernel is added) is taken from FILE
# if it exists, else saved there: guests with the same userland and another kernel
# (bookworm and bullseye's 5.10, trixie and trixie-backports) and a new kernel upload
# skip mmdebstrap.  Needs root
# (mmdebstrap in root mode, chroot, ownership in the cpio archive).
set -euo pipefail

prog=build-image
say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

suite= out= init= packages= modules= optional_modules= rootfs_tar=
sources=() kernel_debs=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --suite) suite=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        --packages) packages=$2; shift 2 ;;
        --source) sources+=("$2"); shift 2 ;;
        --kernel-deb) kernel_debs+=("$2"); shift 2 ;;
        --modules) modules=$2; shift 2 ;;
        --optional-modules) optional_modules=$2; shift 2 ;;
        --rootfs-tar) rootfs_tar=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[[ -n $suite && -n $out && -n $init && -n $modules ]] || die "--suite, --out, --init and --modules are required"
[[ ${#sources[@]} -gt 0 ]] || die "at least one --source is required"
[[ ${#kernel_debs[@]} -gt 0 ]] || die "at least one --kernel-deb is required"
[[ -f $init ]] || die "init script $init not found"
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap root mode, chroot, cpio ownership)"
[[ ! -e $out ]] || die "$out already exists"
for tool in mmdebstrap dpkg-deb cpio zstd chroot; do
    command -v "$tool" >/dev/null || die "$tool not found (run: make -f mk/vm.mk vm-deps)"
done

out_parent=$(dirname -- "$out")
mkdir -p -- "$out_parent"
work=$(mktemp -d "$out_parent/.build-$suite.XXXXXX")
chmod 755 "$work"  # apt's _apt sandbox user must be able to enter it
rootfs=$work/rootfs

# Remove the work directory, but never through a mount point: if mmdebstrap
# was killed it may have left /proc, /sys or /dev mounted in the rootfs.
cleanup() {
    local rc=$? m
    if [[ -d $work ]]; then
        while read -r m; do
            umount -l -- "$m" 2>/dev/null || true
        done < <(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
        if awk -v w="$work/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
            say "warning: mounts remain under $work; not deleting it" >&2
        else
            rm -rf --one-file-system -- "$work"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
# ------------------------------------------------------------ 1. rootfs
if [[ -n $rootfs_tar && -f $rootfs_tar ]]; then
    say "rootfs of $suite from $rootfs_tar (the same userland, built before)"
    mkdir -p -- "$rootfs"
    tar -C "$rootfs" --numeric-owner -xpf "$rootfs_tar" || die "cannot unpack $rootfs_tar"
else
    say "mmdebstrap $suite ($packages)"
    # the one Debian rootfs recipe, shared with the Vagrant box (vagrant/local-box/)
    bash "$(dirname -- "${BASH_SOURCE[0]}")/../../scripts/debian-rootfs.sh" build \
        "$suite" "$rootfs" "$packages" --format=directory -- "${sources[@]}"
    if [[ -n $rootfs_tar ]]; then
        mkdir -p -- "$(dirname -- "$rootfs_tar")"
        tar -C "$rootfs" --numeric-owner -cpf "$rootfs_tar.partial" . \
            && mv -- "$rootfs_tar.partial" "$rootfs_tar" \
            || { rm -f -- "$rootfs_tar.partial"; die "cannot save the rootfs in $rootfs_tar"; }
    fi
fi
say "rootfs done in $((SECONDS - t0)) s"

# ------------------------------------------------------- 2. kernel + modules
kroot=$rootfs/tmp/kroot   # inside the rootfs so the suite's own kmod can read it
mkdir -p -- "$kroot"
for deb in "${kernel_debs[@]}"; do
    [[ -f $deb ]] || die "kernel package $deb not found"
    dpkg-deb -x "$deb" "$kroot"
done
# Debian up to bookworm ships modules in /lib/modules, trixie and later in
# /usr/lib/modules; make both paths work whatever kmod's default is.
if [[ -d $kroot/usr/lib/modules && ! -e $kroot/lib ]]; then
    ln -s usr/lib "$kroot/lib"
elif [[ -d $kroot/lib/modules && ! -e $kroot/usr/lib/modules ]]; then
    mkdir -p "$kroot/usr/lib"
    ln -s ../../lib/modules "$kroot/usr/lib/modules"
fi
shopt -s nullglob
kvs=()
for d in "$kroot"/lib/modules/*/; do
    d=${d%/}
    [[ -d $d/kernel ]] && kvs+=("${d##*/}")
done
shopt -u nullglob
[[ ${#kvs[@]} -eq 1 ]] || die "expected one kernel in ${kernel_debs[*]}, found: ${kvs[*]:-none}"
kv=${kvs[0]}
kmoddir=$kroot/lib/modules/$kv
vmlinuz=
for f in "$kroot/boot/vmlinuz-$kv" "$kmoddir/vmlinuz"; do
    if [[ -f $f ]]; then vmlinuz=$f; break; fi
done
[[ -n $vmlinuz ]] || die "no vmlinuz for $kv in ${kernel_debs[*]}"
say "kernel $kv ($(basename -- "$vmlinuz"))"

chroot "$rootfs" depmod -b /tmp/kroot "$kv" || die "depmod of $kv failed"

# show_depends MOD... -> module file paths relative to the modules dir
# (builtin modules print nothing)
show_depends() {
    local deps path
    deps=$(chroot "$rootfs" modprobe -a -d /tmp/kroot -S "$kv" --show-depends "$@") || return 1
    while read -r verb path _; do
        [[ $verb == insmod ]] && printf '%s\n' "${path#*/lib/modules/"$kv"/}"
    done <<<"$deps"
    return 0
}
wanted=$(show_depends $modules) || die "cannot resolve modules: $modules"
for m in $optional_modules; do
    if extra=$(show_depends "$m" 2>/dev/null); then
        wanted+=$'\n'$extra
    else
        say "note: optional module $m not available in $kv"
    fi
done
dest=$rootfs/lib/modules/$kv
mkdir -p -- "$dest"
n=0
while read -r rel; do
    [[ -n $rel ]] || continue
    mkdir -p -- "$dest/$(dirname -- "$rel")"
    cp -- "$kmoddir/$rel" "$dest/$rel"
    n=$((n + 1))
done < <(sort -u <<<"$wanted")
for f in modules.order modules.builtin modules.builtin.modinfo; do
    if [[ -f $kmoddir/$f ]]; then cp -- "$kmoddir/$f" "$dest/"; fi
done
cp -- "$vmlinuz" "$work/vmlinuz"
rm -rf --one-file-system -- "$kroot"
chroot "$rootfs" depmod "$kv" || die "depmod in the rootfs failed"
say "$n module files for: $modules $optional_modules"

# ------------------------------------------------------------ 3. customise
install -m 0755 -- "$init" "$rootfs/init"
echo idrun-vm >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tidrun-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
: >"$rootfs/etc/resolv.conf"
mkdir -p -- "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/run" "$rootfs/tmp" "$rootfs/host"
[[ -e $rootfs/dev/console ]] || mknod -m 600 "$rootfs/dev/console" c 5 1
[[ -e $rootfs/dev/null ]] || mknod -m 666 "$rootfs/dev/null" c 1 3
chmod 1777 "$rootfs/tmp"
rm -rf --one-file-system -- "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log

# ----------------------------------------------------------- 4. initramfs
say "packing initramfs"
(
    cd "$rootfs"
    find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet
) | zstd -q -3 -T0 -o "$work/initramfs.cpio.zst"
echo "$kv" >"$work/kernel-release"
unpacked=$(du -sm --apparent-size "$rootfs" | cut -f1)
rm -rf --one-file-system -- "$rootfs"

mkdir -- "$out"
mv -- "$work/initramfs.cpio.zst" "$work/vmlinuz" "$work/kernel-release" "$out/"
say "image $out: kernel $kv, $(( $(stat -c %s "$out/initramfs.cpio.zst") / 1048576 )) MiB compressed, ${unpacked} MiB unpacked, $((SECONDS - t0)) s"
