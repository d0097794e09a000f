"""The `idrun map` contract, through click's runner and the installed console script."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from testlib import idrun_json
from idrun.cli.launcher import main
from idrun.cli.map import map_command

IDRUN = str(Path(sys.executable).parent / "idrun")


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([IDRUN, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def subid(tmp_path):
    def make(text: str, name: str = "subuid") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return make


def rootless_args(subuid: str, subgid: str | None = None) -> list[str]:
    return ["--rootless", "--caller", "1000:1000", "--subuid-file", subuid,
            "--subgid-file", subgid or subuid]


def test_json_rootless_contract(subid):
    f = subid("1000:200000:50\n1000:100000:100\n")
    res = run(["map", "--json", "--uidmap", "+5:@200000:3", *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    d = idrun_json(res.stdout)
    expected = [[0, 1000, 1], [1, 100000, 4], [5, 200000, 3], [8, 100004, 96], [104, 200003, 47]]
    assert d["uid_map"] == expected and d["gid_map"] == expected
    assert d["mode"] == "rootless"
    assert d["intermediate"]["uid"] == [[0, 1000, 1], [1, 100000, 100], [101, 200000, 50]]
    assert d["container_map"]["uid"] == [[0, 0, 5], [5, 101, 3], [8, 5, 96], [104, 104, 47]]
    assert d["newuidmap"][2:] == "0 1000 1 1 100000 4 5 200000 3 8 100004 96 104 200003 47".split()
    assert d["newgidmap"][0].endswith("newgidmap")


def test_json_root_mode_follows_euid():
    if os.geteuid() != 0:
        pytest.skip("needs root: the mode follows the effective uid")
    res = run(["map", "--json", "--uidmap", "0:1000:1"])
    assert res.returncode == 0, res.stderr
    d = idrun_json(res.stdout)
    assert d["mode"] == "rootful" and d["uid_map"] == [[0, 1000, 1]] == d["gid_map"]


def test_table_shows_both_steps(subid):
    f = subid("1000:100000:65536\n")
    res = run(["map", "--uidmap", "0:1:65536", *rootless_args(f)])
    assert res.returncode == 0
    assert "container → intermediate → host" in res.stdout
    assert "newuidmap PID 0 100000 65536" in res.stdout


BAD = [
    (["map", "--uidmap", "0:x"], "not a decimal"),
    (["map", "--uidmap", "0:1:0"], "amount is 0"),
    (["map", "--uidmap", "0:0:10", "--uidmap", "5:100:1"], "both map container uids 5"),
    (["map", "--userns", "keep-id", "--uidmap", "0:0:1"], "cannot be combined"),
    (["map", "--userns", "bogus"], "unknown --userns mode"),
    (["map", "--bogus"], "No such option"),
    (["map", "-r", "-c"], "exclude each other"),
    (["id", "--uidmap", "0:1:1"], "hint: put idrun's options before the command: "
                                  "idrun --uidmap 0:1:1 -- id (or, if the command takes "
                                  "--uidmap itself: idrun -- id --uidmap 0:1:1)"),
    (["--pid", "sh", "-c", "true", "-r", "--userns=keep-id"],
     "idrun --pid --userns=keep-id -- sh -c true -r"),
    (["map", "--setgroups", "maybe", "--uidmap", "0:0:1"], "Invalid value"),
    (["map", "--caller", "x", "--uidmap", "0:0:1"], "UID:GID"),
    (["--bogus", "--", "true"], "No such option"),
    (["--userns", "nomap", "--uidmap", "0:0:1", "--", "true"], "cannot be combined"),
]


@pytest.mark.parametrize("args,match", BAD)
def test_bad_input_exits_125_with_one_line(args, match):
    res = run(args)
    assert res.returncode == 125, (res.stdout, res.stderr)
    assert match in res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idrun: error: ")
    assert res.stdout == ""


def test_options_after_command_belong_to_it_with_dash_dash():
    """Issue 20.12: after an explicit '--' the command's own --uidmap is not idrun's."""
    res = run(["--", "sh", "-c", 'echo "$@"', "sh", "--uidmap", "0:1:1"])
    assert res.returncode == 0 and res.stdout == "--uidmap 0:1:1\n", res.stderr
    # -c (and -r) are the command's: sh -c runs under the default mapping.
    res = run(["sh", "-c", 'echo "$@"', "sh", "-r"])
    assert res.returncode == 0 and res.stdout == "-r\n" and res.stderr == "", res.stderr


def test_default_mapping_shown_by_map(subid):
    """Issue 20.13: no mapping was refused; rootless the default is podman unshare's
    (0 = you, 1… = your sub-ids), without sub-ids just 0 = you."""
    f = subid("1000:100000:65536\n")
    res = run(["map", "--json", *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    d = idrun_json(res.stdout)
    assert d["uid_map"] == d["gid_map"] == [[0, 1000, 1], [1, 100000, 65536]]
    assert d["user"] == {"uid": 0, "gid": 0}
    assert any("podman unshare's: 0 = you (uid 1000), 1… = your sub-ids" in n
               for n in d["notes"])
    res = run(["map", "--json", *rootless_args(subid("other:100000:65536\n"))])
    assert res.returncode == 0, res.stderr
    d = idrun_json(res.stdout)
    assert d["uid_map"] == d["gid_map"] == [[0, 1000, 1]] and d["setgroups"] == "deny"
    assert any("no sub-ids are delegated to you" in n for n in d["notes"])


def test_subid_file_problems(subid, tmp_path):
    missing = str(tmp_path / "nope")
    # a missing file: own-id mappings still resolve; sub-ids are refused
    assert run(["map", "-r", *rootless_args(missing)]).returncode == 0
    res = run(["map", "--uidmap", "0:0:2", *rootless_args(missing)])
    assert res.returncode == 125 and "beyond" in res.stderr
    bad = subid("1000:0x100:10\n")
    res = run(["map", "--uidmap", "0:0:1", *rootless_args(bad)])
    assert res.returncode == 125 and f"{bad} line 1" in res.stderr
    own = subid("1000:900:200\n")
    res = run(["map", "--uidmap", "0:0:1", *rootless_args(own)])
    assert res.returncode == 125 and "contains your own uid 1000" in res.stderr
    if os.geteuid() != 0:
        unreadable = subid("1000:100000:10\n")
        os.chmod(unreadable, 0)
        res = run(["map", "--uidmap", "0:0:1", *rootless_args(unreadable)])
        assert res.returncode == 125 and "cannot read" in res.stderr


def test_unreadable_subid_file_as_other_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    p = tmp_path / "subuid"
    p.write_text("65534:100000:10\n")
    os.chmod(p, 0o600)
    os.chmod(tmp_path, 0o755)
    res = subprocess.run(
        # Every idrun module is imported before dropping to nobody: the interpreter and
        # the checkout may live where nobody cannot read (a clone under /root), and the
        # CLI imports its parts lazily.
        [sys.executable, "-c", "import os, sys, json, pwd, locale, importlib, pkgutil, idrun; "
         "[importlib.import_module('idrun.' + m.name) for m in pkgutil.iter_modules(idrun.__path__) "
         "if m.name != '__main__']; from idrun.cli.launcher import main; "
         "os.setgid(65534); os.setuid(65534); sys.exit(main(sys.argv[1:]))",
         "map", "--uidmap", "0:0:1", "--rootless", "--subuid-file", str(p),
         "--subgid-file", str(p)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert res.returncode == 125, res.stderr
    assert "cannot read" in res.stderr and str(p) in res.stderr


def test_warnings_go_to_stderr(capsys):
    rc = main(["map", "--uidmap", "0:1000:1", "--uidmap", "g5:5:1", "--gidmap", "0:1000:1",
               "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert idrun_json(out)["gid_map"]
    assert "idrun: warning:" in err and "move it to --gidmap" in err


def test_click_runner_help():
    result = CliRunner().invoke(map_command, ["--help"])
    assert result.exit_code == 0
    assert "--uidmap" in result.output and "--rootless" in result.output


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "idrun", "map", "--uidmap", "0:0:1", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and idrun_json(res.stdout)["uid_map"]


def _rows(text: str, title: str) -> list[list[int]]:
    """The numeric rows of the table under ``title`` in `idrun map` text."""
    lines = text.splitlines()
    i = lines.index(title) + 2
    rows = []
    while i < len(lines) and lines[i].startswith("  ") and lines[i].split()[0].isdigit():
        rows.append([int(x) for x in lines[i].split()])
        i += 1
    return rows


def test_three_step_table_splits_where_the_host_side_jumps(subid):
    """Issue 11: a row spanning several sub-id ranges showed one host range."""
    f = subid("1000:100000:10\n1000:300000:10\n")
    res = run(["map", "--uidmap", "0:0:21", *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    rows = _rows(res.stdout, "uid map (container → intermediate → host):")
    assert rows == [[0, 0, 1000, 1], [1, 1, 100000, 10], [11, 11, 300000, 10]]
    # Every row agrees with the lines written: same (container, host, count).
    written = [[int(x) for x in ln.split()] for ln in
               res.stdout.split("uid_map to write (helper):\n")[1].splitlines()[:3]]
    assert [[c, h, n] for c, _, h, n in rows] == written
    # The default rootless mapping: the caller's row stays apart from the sub-ids.
    res = run(["map", "--userns", "host", *rootless_args(subid("1000:1001:65536\n"))])
    assert _rows(res.stdout, "uid map (container → intermediate → host):") == [
        [0, 0, 1000, 1], [1, 1, 1001, 65536]]


def test_sub_id_hint_proposes_a_free_block_for_the_real_user(subid):
    """Issue 11: the hint proposed 100000-165535 (already someone's) and a literal USER."""
    import pwd
    f = subid("someone:100000:65536\n")
    res = run(["map", "--uidmap", "0:0:2", *rootless_args(f)])
    assert res.returncode == 125
    try:
        who = pwd.getpwuid(1000).pw_name
    except KeyError:
        who = "1000"
    assert f"usermod --add-subuids 165536-231071 {who}" in res.stderr
    assert "USER" not in res.stderr


def test_sub_id_file_lines_with_blanks_or_garbage(subid):
    """Issue 11: read the file as shadow does; say which line is wrong."""
    f = subid("junk line\n 1000:100000:65536\n")
    res = run(["map", "--uidmap", "0:0:2", *rootless_args(f)])
    assert res.returncode == 125
    assert f"{f} line 2" in res.stderr and "blanks" in res.stderr
    f = subid("junk line\n1000:100000:65536\n")
    res = run(["map", "--uidmap", "0:0:2", *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    assert f'warning: {f} line 1: "junk line" is not OWNER:START:COUNT' in res.stderr


@pytest.mark.parametrize("caller,uid,gid", [("1003:1003", 1003, 1003), ("1003", 1003, None),
                                            ("nobody", 65534, None)])
def test_caller_other_than_root_means_rootless(caller, uid, gid):
    """Issue 11: --caller 1003:1003 resolved rootful; --caller NAME was refused."""
    import pwd
    res = run(["map", "--json", "--caller", caller, "-r"])
    assert res.returncode == 0, res.stderr
    d = idrun_json(res.stdout)
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    assert d["mode"] == "rootless" and d["caller"] == {"uid": uid, "gid": gid}
    assert d["uid_map"] == [[0, uid, 1]]


def test_own_id_as_rootless_from_id_gets_a_note_and_host_id_a_hint(subid):
    f = subid("1000:100000:65536\n")
    res = run(["map", "--uidmap", "0:1000:1", *rootless_args(f)])
    assert res.returncode == 0
    assert "note: --uidmap \"0:1000:1\": rootless, from uid/gid 1000 is intermediate 1000 " \
           "(host id 100999), not your own id, which is intermediate 0" in res.stdout
    res = run(["map", "--uidmap", "0:100000:1", *rootless_args(f)])
    assert res.returncode == 125 and "hint: write @100000 to mean host uid 100000" in res.stderr


@pytest.mark.parametrize("value", ["0:1:65536", "0:1:1000", "1000:1:1", "0:0:1", "1:1001:2"])
def test_rootless_sub_id_ranges_get_no_host_id_note(subid, value):
    """Issue 20.1: 0:1:65536 (podman's standard map) contains the caller's uid 1000 as an
    intermediate id and got two notes about it; only a likely host id gets one."""
    f = subid("1000:100000:65536\n")
    res = run(["map", "--uidmap", value, *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    assert "note:" not in res.stdout and "rootless, from" not in res.stdout + res.stderr


def test_rootless_range_starting_at_own_id_and_host_account_get_the_note(subid):
    """Issue 20.1: a range that starts at the caller's own id, or one id that is a host
    account's, is likely meant as a host id."""
    import pwd
    f = subid("1000:100000:65536\n")
    res = run(["map", "--uidmap", "0:1000:100", *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    assert "from uid/gid 1000 is intermediate 1000" in res.stdout
    account = pwd.getpwuid(65534).pw_name           # nobody: in every passwd
    res = run(["map", "--uidmap", "0:65534:1", *rootless_args(f)])
    assert res.returncode == 0, res.stderr
    assert f"from uid/gid 65534 is intermediate 65534 (host id 165533), not host uid 65534 " \
           f"({account}) or not host gid 65534" in res.stdout
    assert "@65534 names a host id" in res.stdout


HUGE = "9" * 5000


@pytest.mark.parametrize("args", [
    ["map", "--uidmap", f"0:{HUGE}:1"], ["map", "-r", "--user", HUGE],
    ["map", "-r", "--user", f"0:{HUGE}"], ["map", "--caller", f"{HUGE}:0", "-r"],
    ["map", "--caller", "99999999999999999999:0", "-r"], ["map", "--userns", f"keep-id:uid={HUGE}"],
    ["map", "-r", "--group-add", HUGE], ["show", HUGE], ["show", "--translate", HUGE],
    ["--uidmap", f"0:{HUGE}:1", "--", "true"],
])
def test_huge_numbers_are_one_line_errors(args):
    """Issue 11: 5000-digit numbers ended in tracebacks (Python's int-conversion limit)."""
    res = run(args)
    assert res.returncode == 125, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idrun: error: "), res.stderr
    assert len(lines[0]) < 400
