"""Machine-readable output: every --json document carries "schema": 1 and matches the
shipped schema.json; a failing --json run prints one error object on stdout as well
as its line on stderr. Also -V/--version."""
from __future__ import annotations

import json
import os

import jsonschema
import pytest

from testlib import idrun_json
from idrun.cli.launcher import main
from idrun.jsonout import SCHEMA_VERSION, schema_path, validate


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_schema_file_is_a_valid_schema():
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert SCHEMA_VERSION == 1


def test_dry_run_json(capsys):
    rc, out, _ = run_main(capsys, ["--uidmap", "0:1000:1", "--dry-run", "--json", "--", "id"])
    assert rc == 0
    doc = idrun_json(out)
    assert doc["schema"] == 1 and doc["uid_map"] == [[0, 1000, 1]]


def test_rootless_map_json(capsys, tmp_path):
    sub = tmp_path / "sub"
    sub.write_text("4242:200000:65536\n")
    rc, out, _ = run_main(capsys, ["map", "--rootless", "--caller", "4242:4242", "--uidmap",
                                   "0:1:10", "--subuid-file", str(sub), "--subgid-file", str(sub),
                                   "--json"])
    assert rc == 0
    doc = idrun_json(out)
    assert doc["newuidmap"][2:] == ["0", "200000", "10"]


def test_show_json_has_process_and_namespace(capsys):
    rc, out, _ = run_main(capsys, ["show", "--json", "--translate", "0"])
    assert rc == 0
    doc = idrun_json(out)
    assert doc["pid"] == os.getpid()
    with open("/proc/self/comm") as f:
        assert doc["process"] == f.read().strip()
    assert doc["userns"]["inode"] == os.stat("/proc/self/ns/user").st_ino
    assert doc["userns"]["link"] == f"user:[{doc['userns']['inode']}]"


def test_check_json_ids(capsys):
    rc, out, _ = run_main(capsys, ["check", "--json"])
    doc = idrun_json(out)
    assert rc == (0 if doc["ok"] else 1)
    ids = [c["id"] for c in doc["checks"]]
    assert "kernel" in ids and "user_namespaces" in ids
    assert all(i.isidentifier() for i in ids)


@pytest.mark.parametrize("argv", [
    ["map", "--uidmap", "0:x", "--json"],                 # bad value
    ["map", "--no-such-option", "--json"],               # click's usage error
    ["--json", "--dry-run", "--setgroups", "maybe"],      # bad choice, launcher
    ["show", "notapid", "--json"],
    ["check", "--user", "no-such-user-idrun", "--json"],
])
def test_errors_as_json(capsys, argv):
    rc, out, err = run_main(capsys, argv)
    assert rc == 125
    assert err.startswith("idrun: error: ") and err.count("\n") == 1
    doc = idrun_json(out)
    assert doc["error"]["exit_status"] == 125
    assert doc["error"]["message"] in err
    assert doc["error"]["hint"] is None or doc["error"]["hint"] in err


def test_no_json_no_stdout_on_error(capsys):
    rc, out, err = run_main(capsys, ["map", "--uidmap", "0:x"])
    assert rc == 125 and out == "" and err


def test_json_after_double_dash_is_the_commands(capsys):
    rc, out, err = run_main(capsys, ["--uidmap", "0:x", "--", "prog", "--json"])
    assert rc == 125 and out == "" and err


def test_validator_can_fail():
    with pytest.raises(jsonschema.ValidationError):
        validate({"error": {"message": "m", "hint": None, "exit_status": 125}})  # no schema
    with pytest.raises(jsonschema.ValidationError):
        validate({"schema": 1, "ok": True, "user": {"name": "x", "uid": 1, "gid": 1},
                  "checks": [{"id": "Display Name", "name": "n", "status": "OK", "detail": "",
                              "fix": ""}]})


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(capsys, flag):
    import platform

    import idrun
    rc, out, _ = run_main(capsys, [flag])
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == f"idrun {idrun.__version__}"
    assert lines[1].startswith(f"Python {platform.python_version()} (")
    assert lines[2] == "native part: none (pure Python)"


def test_mounts_json(capsys, tmp_path):
    """--volume/--tmpfs: each mount, and for id-mapped ones the mapping namespace's maps."""
    rc, out, _ = run_main(capsys, ["map", "--uidmap", "0:100000:65536", "--json",
                                   "--volume", f"{tmp_path}:/mnt:ro,uid=501:1000",
                                   "--tmpfs", "/tmp:size=1m"])
    assert rc == 0
    doc = idrun_json(out)
    vol, tmp = doc["mounts"]
    assert vol["idmap"] == {"uid_map": [[501, 101000, 1]], "gid_map": [[0, 100000, 65536]]}
    assert vol["options"] == ["ro", "idmap"] and tmp["idmap"] is None


# --- --json-status-fd: the two line shapes, and the descriptor checked before anything --

def test_status_lines_match_the_schema():
    from idrun.engine import statusfd
    from idrun.system import syscalls
    ns = os.open("/proc/self/ns", os.O_RDONLY | os.O_DIRECTORY)
    try:
        ids = statusfd.namespace_ids(syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWNET, ns)
    finally:
        os.close(ns)
    assert ids == {"user-namespace": os.stat("/proc/self/ns/user").st_ino,
                   "net-namespace": os.stat("/proc/self/ns/net").st_ino}
    started = statusfd.started_line(os.getpid(), ids)
    exited = statusfd.exited_line(137)
    assert started.endswith(b"\n") and started.count(b"\n") == 1
    doc = idrun_json(started.decode())
    assert list(doc)[:2] == ["schema", "child-pid"] and doc["child-pid"] == os.getpid()
    assert idrun_json(exited.decode()) == {"schema": 1, "exit-code": 137}


def test_status_schema_refuses_bad_lines():
    for doc in ({"schema": 1, "exit-code": 256}, {"schema": 1, "child-pid": 0},
                {"schema": 1, "child-pid": 5, "user-namespace": "4026531837"},
                {"child-pid": 5}):
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)


def test_status_send_survives_a_vanished_reader():
    from idrun.engine.statusfd import send
    r, w = os.pipe()
    os.close(r)
    try:
        send(w, b'{"schema": 1, "exit-code": 0}\n')      # EPIPE: ignored, no exception
    finally:
        os.close(w)


def _free_fd() -> int:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd


def test_status_fd_not_open(capsys):
    fd = _free_fd()
    rc, out, err = run_main(capsys, ["--uidmap", "0:1000:1", "--json-status-fd", str(fd),
                                     "--", "true"])
    assert rc == 125 and out == ""
    assert err.count("\n") == 1 and f"descriptor {fd} is not open; hint: " in err


def test_status_fd_read_only(capsys):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        rc, _, err = run_main(capsys, ["--uidmap", "0:1000:1", "--json-status-fd", str(fd),
                                       "--", "true"])
    finally:
        os.close(fd)
    assert rc == 125 and f"descriptor {fd} is open read-only" in err


@pytest.mark.parametrize("value", ["-1", "x", "3.0", "99999999999"])
def test_status_fd_not_a_number(capsys, value):
    rc, _, err = run_main(capsys, ["--uidmap", "0:1000:1", "--json-status-fd", value,
                                   "--", "true"])
    assert rc == 125 and err.count("\n") == 1 and "--json-status-fd" in err


def test_status_fd_with_dry_run_refused(capsys):
    rc, out, err = run_main(capsys, ["--uidmap", "0:1000:1", "--dry-run", "--json",
                                     "--json-status-fd", "1"])
    assert rc == 125 and "--dry-run starts none" in err
    assert idrun_json(out)["error"]["exit_status"] == 125


def test_status_fd_keeps_the_wrapper():
    from idrun.engine.steps import LaunchOptions
    assert LaunchOptions(json_status_fd=1).wrapper and not LaunchOptions().wrapper
