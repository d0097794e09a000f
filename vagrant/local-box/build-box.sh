#!/usr/bin/env bash
# Build the offline Vagrant box idrun/debian12-local (libvirt, qcow2) from Debian
# packages only: mmdebstrap -> raw disk -> GRUB -> qcow2 -> .box.
#
# The box is cached in $IDRUN_CACHE/idrun-vagrant (IDRUN_CACHE defaults to /var/cache)
# under a name keyed by a hash of the build inputs (this script, the rootfs hook,
# the embedded Vagrantfile, scripts/debian-rootfs.sh, the package list, the mirrors
# and the SSH public key);
# it is rebuilt only when one of them changes, or when IDRUN_VAGRANT_REBUILD=1.
#
# Output: the path of the .box on stdout (everything else goes to stderr).
# Also writes <box>.env next to it (BOX_PATH, BOX_NAME, SSH_KEY, KERNEL).
#
# Environment:
#   IDRUN_CACHE                    cache parent dir (default /var/cache)
#   IDRUN_VAGRANT_REBUILD=1        ignore a cached box
#   IDRUN_VAGRANT_EXTRA_PACKAGES   extra Debian packages, comma or space separated
#   IDRUN_DEBIAN_MIRROR            "URI [SECURITY_URI]" (default: the host's apt sources;
#                                  see scripts/debian-rootfs.sh)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

CACHE=$idrun_vagrant_cache
BOX_NAME=idrun/debian12-local
SUITE=bookworm
DISK_GIB=4
PACKAGES=(
    linux-image-amd64 grub-pc systemd-sysv udev dbus openssh-server sudo
    python3 uidmap libcap2-bin python3-click python3-prctl python3-pyroute2 python3-pytest
    rsync ifupdown isc-dhcp-client iproute2 procps kmod util-linux
    busybox-static
)
# shellcheck disable=SC2206
EXTRA=${IDRUN_VAGRANT_EXTRA_PACKAGES:-}
PACKAGES+=(${EXTRA//,/ })

# The Debian mirrors: $IDRUN_DEBIAN_MIRROR, else the host's apt sources (no host
# name in the tree); scripts/debian-rootfs.sh says what to set when there is none.
read -r MIRROR SEC_MIRROR < <(bash "$HERE/../../scripts/debian-rootfs.sh" mirrors) || exit 1
SOURCES=(
    "deb $MIRROR $SUITE main"
    "deb $MIRROR $SUITE-updates main"
    "deb $SEC_MIRROR $SUITE-security main"
)

idrun_require_root
"$HERE/../../scripts/deps.sh" vagrant >&2
mkdir -p "$CACHE/boxes" "$CACHE/ssh"
chmod 700 "$CACHE/ssh"

# Serialise builds (and the key generation) on this cache.
exec 9> "$CACHE/.build.lock"
flock -w 1800 9 || idrun_die "could not lock $CACHE/.build.lock"

# --- SSH key pair (replaces Vagrant's public insecure key) ----------------------
SSH_KEY=$CACHE/ssh/idrun_vagrant_ed25519
if [ ! -s "$SSH_KEY" ] || [ ! -s "$SSH_KEY.pub" ]; then
    rm -f "$SSH_KEY" "$SSH_KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C idrun-vagrant-local -f "$SSH_KEY"
    idrun_log "generated SSH key pair $SSH_KEY"
fi
chmod 600 "$SSH_KEY"

# --- cache key -------------------------------------------------------------------
KEY=$(printf '%s\n' "suite=$SUITE" "disk=$DISK_GIB" "packages=${PACKAGES[*]}" "${SOURCES[@]}" \
      | idrun_hash_inputs "$HERE/build-box.sh" "$HERE/rootfs-hook.sh" "$HERE/box.Vagrantfile" \
        "$HERE/../../scripts/debian-rootfs.sh" "$SSH_KEY.pub")
BOX=$CACHE/boxes/idrun-debian12-local-$KEY.box

if [ -s "$BOX" ] && [ -s "$BOX.env" ] && [ "${IDRUN_VAGRANT_REBUILD:-0}" != 1 ]; then
    idrun_log "using cached box $BOX"
    echo "$BOX"
    exit 0
fi

t0=$(date +%s)

BUILD=$(mktemp -d "$CACHE/build.XXXXXX")
MNT=$BUILD/mnt
LOOP=
MADE_NODE=
cleanup() {
    local rc=$?
    set +e
    for m in "$MNT/sys" "$MNT/proc" "$MNT/dev" "$MNT"; do
        mountpoint -q "$m" 2>/dev/null && umount "$m"
    done
    if [ -n "$LOOP" ]; then
        partx -d "$LOOP" 2>/dev/null
        losetup -d "$LOOP"
    fi
    [ -n "$MADE_NODE" ] && rm -f "$MADE_NODE"
    rm -rf "$BUILD"
    [ "$rc" = 0 ] || idrun_log "box build FAILED (rc=$rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. root file system ----------------------------------------------------------
idrun_log "mmdebstrap $SUITE (${#PACKAGES[@]} packages) from $MIRROR + $SEC_MIRROR"
INCLUDE=$(IFS=,; echo "${PACKAGES[*]}")
bash "$HERE/../../scripts/debian-rootfs.sh" build "$SUITE" "$BUILD/rootfs.tar" "$INCLUDE" \
    --customize-hook="'$HERE/rootfs-hook.sh' \"\$1\" '$SSH_KEY.pub'" \
    -- "${SOURCES[@]}" >&2
t1=$(date +%s)
idrun_log "rootfs.tar: $(du -h "$BUILD/rootfs.tar" | cut -f1) in $((t1 - t0)) s"

# --- 2. disk image ----------------------------------------------------------------
RAW=$BUILD/disk.raw
truncate -s "${DISK_GIB}G" "$RAW"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$RAW" >&2
LOOP=$(losetup --find --show --partscan "$RAW")
PART=${LOOP}p1
if [ ! -b "$PART" ]; then
    # No udev here: the kernel knows the partition, but nobody made the node.
    partx -a "$LOOP" 2>/dev/null || partx -u "$LOOP" 2>/dev/null || true
fi
if [ ! -b "$PART" ]; then
    sysdev=/sys/block/$(basename "$LOOP")/$(basename "$PART")/dev
    [ -r "$sysdev" ] || idrun_die "kernel did not register $PART ($sysdev missing)"
    IFS=: read -r maj min < "$sysdev"
    mknod "$PART" b "$maj" "$min"
    MADE_NODE=$PART
fi
UUID=$(cat /proc/sys/kernel/random/uuid)
mkfs.ext4 -q -L idrun-root -U "$UUID" "$PART"
mkdir -p "$MNT"
mount "$PART" "$MNT"
tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' -xpf "$BUILD/rootfs.tar"
rm -f "$BUILD/rootfs.tar"
# A private /dev for the chroot (nothing is added to the host's /dev): the disk,
# its partition, the usual character devices, and the by-uuid link that
# update-grub needs to write root=UUID=... rather than root=/dev/loopNp1.
mount -t tmpfs -o mode=755,size=1m idrun-dev "$MNT/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom "$MNT/dev/"
cp -a "$LOOP" "$PART" "$MNT/dev/"
mkdir -p "$MNT/dev/disk/by-uuid"
ln -s "../../$(basename "$PART")" "$MNT/dev/disk/by-uuid/$UUID"
mount -t proc proc "$MNT/proc"
mount -t sysfs sysfs "$MNT/sys"
chroot "$MNT" grub-install --target=i386-pc "$LOOP" >&2
chroot "$MNT" update-grub >&2
grep -q "root=UUID=$UUID" "$MNT/boot/grub/grub.cfg" || idrun_die "grub.cfg does not boot root=UUID=$UUID"
grep -q 'console=ttyS0' "$MNT/boot/grub/grub.cfg" || idrun_die "grub.cfg has no serial console"
KERNEL=$(basename "$(ls -d "$MNT"/lib/modules/* | sort -V | tail -n1)")
umount "$MNT/sys" "$MNT/proc" "$MNT/dev" "$MNT"
partx -d "$LOOP" 2>/dev/null || true
losetup -d "$LOOP"
LOOP=
[ -n "$MADE_NODE" ] && rm -f "$MADE_NODE" && MADE_NODE=
t2=$(date +%s)
idrun_log "disk image with GRUB in $((t2 - t1)) s (kernel $KERNEL)"

# --- 3. box -----------------------------------------------------------------------
# zstd clusters (QEMU >= 5.1) and out-of-order writes: 6 s instead of 25 s here.
qemu-img convert -c -W -o compression_type=zstd -O qcow2 "$RAW" "$BUILD/box.img"
rm -f "$RAW"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GIB" > "$BUILD/metadata.json"
cp "$HERE/box.Vagrantfile" "$BUILD/Vagrantfile"
tar -C "$BUILD" -cf "$BUILD/box.tar" metadata.json Vagrantfile box.img

# Keep only the newest box in the cache.
rm -f "$CACHE"/boxes/idrun-debian12-local-*.box "$CACHE"/boxes/idrun-debian12-local-*.box.env
mv "$BUILD/box.tar" "$BOX"
cat > "$BOX.env" <<ENV
BOX_PATH=$BOX
BOX_NAME=$BOX_NAME
SSH_KEY=$SSH_KEY
KERNEL=$KERNEL
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ENV
t3=$(date +%s)
idrun_log "box $BOX ($(du -h "$BOX" | cut -f1)) built in $((t3 - t0)) s"
echo "$BOX"
