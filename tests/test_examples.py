"""Every example of `idrun --help` and of the README runs on a stock host (issue 11).

A stock host: Debian with root and an ordinary user that `useradd` gave one
block of 65536 sub-ids (the test user ``idrun-test``). Root examples run as
root; rootless ones (the README's ``$`` prompt, the help's "rootless" and
"show" lines) run as that user. An example that needs anything else is wrong.
"""
from __future__ import annotations

import re
import shlex

import pytest

from testlib.unit import ROOT, idrun_argv, run

_COMMENT = re.compile(r"\s+#\s.*$")


def _help_examples() -> list[tuple[str, list[str]]]:
    res = run(idrun_argv() + ["--help"], cwd=str(ROOT / "src"))
    block = res.stdout.split("Examples:", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in block.strip().splitlines():
        line = line.strip()
        who = "root" if "# as root" in line else "user"
        out.append((who, shlex.split(_COMMENT.sub("", line))[1:]))
    return out


def _readme_examples() -> list[tuple[str, list[str]]]:
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for prompt, who in (("# idrun ", "root"), ("$ idrun ", "user")):
                if line.startswith(prompt):
                    out.append((who, shlex.split(_COMMENT.sub("", line[len(prompt):]))))
    return out


EXAMPLES = [("help", *e) for e in _help_examples()] + [("README", *e) for e in _readme_examples()]


def test_there_are_examples():
    assert sum(src == "help" for src, _, _ in EXAMPLES) >= 4
    assert sum(src == "README" for src, _, _ in EXAMPLES) >= 6


@pytest.mark.privileged
@pytest.mark.parametrize("source,who,args", EXAMPLES,
                         ids=[f"{s}-{w}-{' '.join(a)[:40]}" for s, w, a in EXAMPLES])
def test_example_works(source, who, args, root, testuser):
    res = run(idrun_argv() + args) if who == "root" else testuser.idrun_run(*args)
    assert res.returncode == 0, (source, args, res.stdout, res.stderr)
    assert "error" not in res.stderr
