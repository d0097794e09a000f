"""The failure report of a launch step: named stages, one wire format, one explanation
(pure: no process is started here)."""
import errno
import os

import pytest

import idrun
from idrun.engine import run, failure
from idrun.system import syscalls
from idrun.engine.spec import Spec
from idrun.engine.failure import STAGES, Stage, StepFailed, decode, encode, explained


def _stages() -> list[str]:
    return [v for k, v in vars(Stage).items() if k.isupper()]


def test_every_stage_has_a_name_and_a_description():
    names = _stages()
    assert len(names) == len(set(names)) == len(STAGES)
    for name in names:
        assert len(name) > 1 and name.isascii() and "\0" not in name, name
        assert name in STAGES


@pytest.fixture
def spec():
    plan = idrun.plan_for(["0:100000:65536"], user="0:0", rootless=False)
    return Spec(plan, run.LaunchOptions(hostname="box"), "/bin/true",
                       ("true",), {}, "/nowhere")


@pytest.mark.parametrize("stage", _stages())
def test_a_report_decodes_to_what_the_same_failure_says_here(spec, stage):
    """A forked process's report is explained exactly as the same StepFailed in this
    process: stage name, errno and detail all survive the pipe."""
    exc = StepFailed(stage, errno.EPERM, "détail")
    report, status = encode(exc)
    assert report.startswith(b"E" + stage.encode() + b"\0")
    got, want = decode(report, spec), explained(exc, spec)
    assert type(got) is type(want) and str(got) == str(want)
    assert status == (126 if stage == Stage.EXEC else 125)


def test_an_idrun_error_and_anything_else_travel_too(spec):
    err = idrun.IdrunError("it broke", "fix it")
    report, status = encode(err)
    assert status == 125 and str(decode(report, spec)) == str(err)
    report, status = encode(RuntimeError("boom"))
    assert "internal error: RuntimeError: boom" in str(decode(report, spec))
    assert "unexpected report" in str(decode(b"Eu", spec))


def test_exec_statuses(spec):
    assert encode(StepFailed(Stage.EXEC, errno.ENOENT))[1] == 127
    assert encode(StepFailed(Stage.EXEC, errno.EACCES))[1] == 126
    assert "cannot change to directory /nowhere" in str(
        explained(StepFailed(Stage.CHDIR, errno.ENOENT), spec))


def test_step_keeps_the_errno():
    with pytest.raises(StepFailed) as e:
        failure.step(Stage.CHDIR, os.chdir, "/nonexistent/really")
    assert (e.value.stage, e.value.errno) == (Stage.CHDIR, errno.ENOENT)


@pytest.mark.parametrize("status,text", [(0, "exit 0"), (3 << 8, "exit 3"), (9, "signal 9"),
                                         (15 | 0x80, "signal 15")])
def test_how_ended(status, text):
    assert syscalls.how_ended(status) == text


def _source() -> dict[str, str]:
    root = os.path.dirname(idrun.__file__)
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith(".py"):
                with open(os.path.join(dirpath, n), encoding="utf-8") as f:
                    out[os.path.relpath(os.path.join(dirpath, n), root)] = f.read()
    return out


def test_each_piece_of_the_process_protocol_exists_once():
    """Issue 21: one signal-forwarding loop, one "exit N / signal N" text, one fork of
    a throwaway user namespace (mounts forks nothing), and stages by name."""
    import re
    src = _source()
    def where(pattern: str) -> list[str]:
        return sorted(f for f, text in src.items() for _ in re.finditer(pattern, text))
    assert where(r"sigwaitinfo\(") == ["engine/init.py"]
    assert where(r'f"exit \{') == ["system/syscalls.py"]
    assert where(r"syscalls\.unshare\b") == ["engine/mounts.py", "engine/run.py"]   # the user namespace
    assert "unshare(syscalls.CLONE_NEWNS)" in src["engine/mounts.py"]  # and attach_early's
    assert "fork(" not in src["engine/mounts.py"] and "Owned" not in src["engine/mounts.py"]
    assert where(r'StepFailed\("') == [] and where(r'step\("') == [], "a stage letter"
