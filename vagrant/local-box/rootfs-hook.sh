#!/bin/sh
# mmdebstrap --customize-hook for the offline box idrun/debian12-local.
# Usage: rootfs-hook.sh ROOTFS_DIR PUBLIC_KEY_FILE
# Runs on the host, after all packages are installed into ROOTFS_DIR.
set -eu
root=$1
pubkey=$2
in_root() { chroot "$root" "$@"; }

# --- identity -----------------------------------------------------------------
echo idrun-debian12 > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
127.0.1.1	idrun-debian12
::1		localhost ip6-localhost ip6-loopback
HOSTS
: > "$root/etc/resolv.conf"          # no uplink; do not ship the build host's resolver
printf 'LABEL=idrun-root\t/\text4\terrors=remount-ro\t0\t1\n' > "$root/etc/fstab"

# --- network: DHCP on whatever the first NIC is called (ens*, enp*, eth*) -------
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/80-idrun-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
in_root systemctl enable systemd-networkd.service

# --- user vagrant: key-only login, passwordless sudo ---------------------------
in_root useradd --create-home --shell /bin/bash --user-group vagrant
in_root usermod --password '*' vagrant      # no password at all, not "locked"
install -d -m 700 "$root/home/vagrant/.ssh"
install -m 600 "$pubkey" "$root/home/vagrant/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant/.ssh
printf 'vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n' > "$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"

# --- sshd: no host keys in the image; a oneshot unit makes one before ssh -------
# (only ed25519: generating an RSA key takes seconds under TCG)
# (An ExecStartPre drop-in on ssh.service would run after Debian's own
#  "sshd -t" check and fail, so this must be a separate unit.)
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate the SSH host key
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'

[Install]
WantedBy=multi-user.target ssh.service
UNIT
in_root systemctl enable ssh-hostkeys.service
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\nPasswordAuthentication no\n' \
    > "$root/etc/ssh/sshd_config.d/idrun.conf"

# --- boot: GRUB on the serial console too --------------------------------------
mkdir -p "$root/etc/default/grub.d"
cat > "$root/etc/default/grub.d/idrun.cfg" <<'GRUB'
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB
echo 'grub-pc grub-pc/install_devices multiselect /dev/vda' | in_root debconf-set-selections

# --- size ---------------------------------------------------------------------
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/*
