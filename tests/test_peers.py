"""Peer spellings (issue 20.11): unshare's, bubblewrap's and podman's options either
taken unchanged, where they mean the same and collide with nothing, or refused with one
line giving idrun's spelling (exit 125)."""
from __future__ import annotations

import pytest

from idrun.cli.launcher import _peer_spellings, launch_command, main
from idrun.errors import IdrunError
from idrun.cli.map import map_command


def t(*args: str) -> list[str]:
    return _peer_spellings(launch_command, list(args))


@pytest.mark.parametrize("args,expected", [
    (["-Ur", "--", "id"], ["-r", "--", "id"]),
    (["-U", "-r", "id"], ["-r", "id"]),
    (["-n", "-p", "-m", "-f", "--", "id"], ["--net", "--pid", "--mount", "--fork", "--", "id"]),
    (["-Upf", "id"], ["--pid", "--fork", "id"]),
    (["-iC", "-r"], ["--ipc", "--cgroup", "-r"]),
    (["--unshare-user", "--unshare-pid", "--unshare-net"], ["--pid", "--net"]),
    (["--unshare-all"], ["--net", "--pid", "--ipc", "--uts", "--cgroup"]),
    (["--network", "none", "id"], ["--net", "id"]),
    (["--network=host", "id"], ["id"]),
    (["--net=none", "id"], ["--net", "id"]),
    (["--network=private", "id"], ["--net", "id"]),
    # podman's NAME=host|private namespace modes: host is idrun's default, private its flag.
    (["--pid=host", "--ipc=host", "--uts=host", "--cgroupns=host", "id"], ["id"]),
    (["--pid=private", "--ipc=private", "--uts=private", "--cgroupns=private", "id"],
     ["--pid", "--ipc", "--uts", "--cgroup", "id"]),
    (["--chdir", "/tmp", "id"], ["--workdir", "/tmp", "id"]),
    (["--wd=/tmp", "id"], ["--workdir=/tmp", "id"]),
    # idrun's own short options keep their meaning: -u is --user (podman), not unshare's
    # --uts; a value may follow in the same word or the next.
    (["-Uu", "0", "id"], ["-u", "0", "id"]),
    (["-ru0", "id"], ["-r", "-u", "0", "id"]),
    (["-v", "/a:/b", "-n", "id"], ["-v", "/a:/b", "--net", "id"]),
    # A value that looks like a peer option is a value; the command's words are its own.
    (["--hostname", "-n", "id", "-n", "--bind", "a", "b"],
     ["--hostname", "-n", "id", "-n", "--bind", "a", "b"]),
    (["--", "-U", "--bind"], ["--", "-U", "--bind"]),
])
def test_peer_spellings_taken_unchanged(args, expected):
    assert t(*args) == expected


@pytest.mark.parametrize("args,hint", [
    (["--bind", "/a", "/b"], "-v /a:/b "),
    (["--ro-bind", "/a", "/b"], "-v /a:/b:ro "),
    (["--map-users=1000,0,1"], "--uidmap 0:1000:1 (as root; rootless write 0:@1000:1"),
    (["--map-groups", "0:1000:65536"], "--gidmap 0:1000:65536"),
    (["--map-users", "auto"], "--map-auto"),
    (["--map-user", "1000"], "--uidmap 1000:0:1"),
    (["--uid", "5"], "--user UID[:GID]"),
    (["--root", "/srv"], "--rootfs /srv"),
    (["--network", "bridge"], "--net"),
    (["--proc", "/proc"], "--pid --mount-proc"),
    (["--pid=container:web"], "--pid (or --pid=private)"),
    (["--ipc=ns:/proc/1/ns/ipc"], "--ipc=host (or nothing) keeps the host's"),
])
def test_peer_spellings_point_to_idrun(args, hint):
    with pytest.raises(IdrunError) as e:
        t(*args)
    assert hint in e.value.hint


def test_pointer_is_one_line_exit_125(capsys):
    assert main(["--bind", "/a", "/b", "true"]) == 125
    err = capsys.readouterr().err
    assert err == ("idrun: error: --bind is bubblewrap's spelling; hint: idrun binds with "
                   "-v SRC:DST[:ro], here -v /a:/b (onto the host's tree, not an empty root)\n")


def test_map_takes_the_mapping_spellings_too(capsys):
    assert _peer_spellings(map_command, ["-Ur", "--caller", "-n"]) == ["-r", "--caller", "-n"]
    assert main(["map", "--map-users=1000,0,1"]) == 125


def test_unshare_style_launch_runs():
    """`idrun -Ur id` got "No such option: -U"; it now runs as root inside."""
    import subprocess
    import sys
    from pathlib import Path
    idrun = str(Path(sys.executable).parent / "idrun")
    res = subprocess.run([idrun, "-Ur", "-p", "-f", "id", "-u"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == "0\n" and res.stderr == "", res.stderr


def test_plain_launch_does_not_load_peers():
    """The peer tables load only when a word before the command is not idrun's."""
    import subprocess
    import sys
    code = ("import sys; from idrun.cli.launcher import _peer_spellings, launch_command; "
            "a = ['--uidmap=0:1:2', '-r', '-v', '/a:/b', '--net', '--', '-U']; "
            "assert _peer_spellings(launch_command, a) == a; "
            "print('idrun.cli.peers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "False\n", out.stderr
