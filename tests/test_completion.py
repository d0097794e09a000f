"""Shell completion: the generated bash script driven in a real bash, as bash does
when the user presses TAB (COMP_WORDS/COMP_CWORD set, the function called, COMPREPLY
read back); the option lists compared with click's own definitions."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from idrun.cli import completion
from idrun.cli.launcher import SUBCOMMANDS, subcommand, launch_command
from idrun.cli.info import commands
from idrun.options import USERNS_MODES, VOLUME_OPTIONS

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The three scripts, written once for the module."""
    out = tmp_path_factory.mktemp("completion")
    completion.write_all(out)
    return out


def installed(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (make deps installs it)")


@pytest.fixture(scope="module")
def script(generated) -> str:
    return str(generated / "bash" / "idrun")


def readline_words(line: str) -> list[str]:
    """COMP_WORDS as bash builds them: split at blanks, and at ':' and '=' (the
    default COMP_WORDBREAKS), the break characters being words of their own."""
    words = []
    for chunk in line.split():
        words += re.findall(r"[:=]+|[^:=]+", chunk)
    if not line or line[-1].isspace():
        words.append("")
    return words


def complete(script: str, line: str, *, with_bash_completion: bool = False,
             cwd: str | None = None) -> list[str]:
    """The candidates bash offers for ``line`` (the cursor at its end)."""
    prelude = f". {BASH_COMPLETION}\n" if with_bash_completion else ""
    words = readline_words(line)
    driver = prelude + f""". {script}
COMP_LINE=$1 COMP_POINT=${{#1}}
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_idrun idrun "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver, "bash", line, *words],
                         capture_output=True, text=True, timeout=30, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return [w for w in res.stdout.split("\n") if w]


def click_option_names(cmd) -> set[str]:
    import click
    ctx = click.Context(cmd, **cmd.context_settings)
    return {n for p in cmd.get_params(ctx) if isinstance(p, click.Option)
            for n in p.opts + p.secondary_opts}


def test_subcommands(script):
    assert complete(script, "idrun ") == list(SUBCOMMANDS)
    assert complete(script, "idrun ma") == ["map"]


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_every_option_of_every_command(script, sub):
    cmd = launch_command if sub is None else subcommand(sub)
    line = "idrun -" if sub is None else f"idrun {sub} -"
    assert set(complete(script, line)) == click_option_names(cmd)


def test_option_prefix(script):
    assert complete(script, "idrun --uidm") == ["--uidmap"]
    assert complete(script, "idrun map --subu") == ["--subuidname", "--subuid-file"]


def test_userns_and_setgroups_values(script):
    assert complete(script, "idrun --userns ") == list(USERNS_MODES)
    assert complete(script, "idrun --userns k") == ["keep-id"]
    assert complete(script, "idrun --userns=") == list(USERNS_MODES)
    assert complete(script, "idrun map --setgroups ") == ["allow", "deny"]
    assert complete(script, "idrun -r --setgroups=d") == ["deny"]


def test_user_names(script):
    assert "root" in complete(script, "idrun map --subuidname ro")
    assert "root" in complete(script, "idrun --subgidname r")
    assert "root" in complete(script, "idrun check --user ro")
    # the launcher's --user takes ids, not names; map's --caller a name (or a uid)
    assert complete(script, "idrun --user ro") == []
    assert "root" in complete(script, "idrun map --caller ro")


def test_files(script, tmp_path):
    (tmp_path / "subuid.test").write_text("")
    (tmp_path / "other").write_text("")
    assert complete(script, "idrun map --subuid-file sub", cwd=str(tmp_path)) == ["subuid.test"]
    assert sorted(complete(script, "idrun map --subgid-file ", cwd=str(tmp_path))) == \
        ["other", "subuid.test"]


def test_volume_and_rootfs(script, tmp_path):
    """-v: host paths for SRC, nothing for DST (inside), then the option words;
    --rootfs: directories only (issue 20 item 10)."""
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("")
    cwd = str(tmp_path)
    assert sorted(complete(script, "idrun -v a-", cwd=cwd)) == ["a-dir", "a-file"]
    assert sorted(complete(script, "idrun map --volume=a-", cwd=cwd)) == ["a-dir", "a-file"]
    assert complete(script, "idrun -v a-dir:", cwd=cwd) == []
    assert complete(script, "idrun -v a-dir:/m", cwd=cwd) == []
    assert complete(script, "idrun -v a-dir:/mnt:", cwd=cwd) == list(VOLUME_OPTIONS)
    assert complete(script, "idrun map -v a-dir:/mnt:i", cwd=cwd) == ["idmap", "idmap="]
    # after a ',' the next option; readline's word starts after the last ':'
    assert complete(script, "idrun -v a-dir:/mnt:ro,u", cwd=cwd) == ["ro,uid="]
    assert complete(script, "idrun -v a-dir:/mnt:uid=5", cwd=cwd) == []
    assert complete(script, "idrun --rootfs a-", cwd=cwd) == ["a-dir"]
    assert complete(script, "idrun map --rootfs=a", cwd=cwd) == ["a-dir"]
    # the command after the volume still completes as a command
    assert "echo" in complete(script, "idrun -r -v a-dir:/mnt -- ech", cwd=cwd)
    # --files[=N] never takes the next word: options follow it
    assert complete(script, "idrun map -r --files --uidm", cwd=cwd) == ["--uidmap"]


def test_volume_options_are_the_parsers():
    """Every option word offered after SRC:DST: is one parse_volume accepts."""
    from idrun.mapping.volumes import parse_volume
    for word in VOLUME_OPTIONS:
        value = word + ("501:1000" if word in ("uid=", "gid=") else
                        "uids=0-1-1" if word == "idmap=" else "")
        parse_volume(f"/a:/b:{value}")


def test_command_after_options(script):
    assert "echo" in complete(script, "idrun --uidmap 0:0:1 -- ech")
    assert "echo" in complete(script, "idrun --uidmap 0:0:1 ech")
    assert "echo" in complete(script, "idrun --userns=host ech")
    # after '--' an idrun option is the command's word, not idrun's
    assert "--uidmap" not in complete(script, "idrun -r -- ls --uid")
    assert complete(script, "idrun -r -- sh --userns ") != list(USERNS_MODES)


def test_pids_for_show(script):
    assert "1" in complete(script, "idrun show ")


@pytest.mark.skipif(not os.path.exists(BASH_COMPLETION),
                    reason="bash-completion is not installed (make deps installs it)")
def test_command_completes_as_itself(script, tmp_path):
    """With bash-completion loaded, the command after '--' gets its own completion."""
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("")
    # cd completes directories only: its own completion, not idrun's nor plain files
    got = complete(script, "idrun -r -- cd a-", with_bash_completion=True, cwd=str(tmp_path))
    assert got == ["a-dir"]


def test_userns_modes_are_the_resolvers():
    """The --userns words offered are the modes the resolver knows (its hint lists them)."""
    from idrun.cli.launcher import main
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["map", "--userns", "bogus"]) == 125
    for mode in USERNS_MODES:
        assert mode in err.getvalue()


def test_cliinfo_covers_click():
    for info in commands():
        cmd = launch_command if info.sub is None else subcommand(info.sub)
        assert {n for o in info.options for n in o.names} == click_option_names(cmd)


@pytest.mark.parametrize("shell,path", [("zsh", "zsh/_idrun"), ("fish", "fish/idrun.fish")])
def test_zsh_fish_scripts(tmp_path, shell, path):
    completion.write_all(tmp_path)
    text = (tmp_path / path).read_text()
    for info in commands():
        for o in info.options:
            spelled = o.long if shell == "zsh" else f"-l {o.long[2:]}"
            assert spelled in text, (shell, o.long)
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed: only the option coverage was checked")
    res = subprocess.run([exe, "-n", str(tmp_path / path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def fish_script(generated) -> str:
    installed("fish")
    return str(generated / "fish" / "idrun.fish")


def fish_complete(script: str, line: str) -> list[str]:
    """fish's own candidates for ``line`` (``complete -C``), without descriptions."""
    res = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C $argv[1]",
                          line], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return [w.split("\t")[0] for w in res.stdout.splitlines()]


def test_fish_completion(fish_script):
    assert fish_complete(fish_script, "idrun ") == sorted(SUBCOMMANDS)
    assert set(fish_complete(fish_script, "idrun --")) >= \
        {n for n in click_option_names(launch_command) if n.startswith("--")}
    assert sorted(fish_complete(fish_script, "idrun --userns ")) == sorted(USERNS_MODES)
    assert fish_complete(fish_script, "idrun map --setgroups ") == ["allow", "deny"]
    assert "root" in fish_complete(fish_script, "idrun map --subuidname ro")
    assert "/etc/subuid" in fish_complete(fish_script, "idrun map --subuid-file /etc/subu")
    assert "echo" in fish_complete(fish_script, "idrun -r -- ech")
    assert "echo" in fish_complete(fish_script, "idrun --uidmap 0:0:1 ech")
    assert "--uidmap" not in fish_complete(fish_script, "idrun -r -- ls --uid")
    # -v SRC:DST[:OPTS] and --rootfs DIR
    assert "/etc/subuid" in fish_complete(fish_script, "idrun -v /etc/subu")
    assert fish_complete(fish_script, "idrun -v /etc:/m") == []
    assert sorted(fish_complete(fish_script, "idrun map -v /etc:/mnt:i")) == \
        ["/etc:/mnt:idmap", "/etc:/mnt:idmap="]
    assert fish_complete(fish_script, "idrun -v /etc:/mnt:ro,u") == ["/etc:/mnt:ro,uid="]
    assert fish_complete(fish_script, "idrun --rootfs /etc/subu") == []
    assert "/etc/" in fish_complete(fish_script, "idrun --rootfs /et")


# zsh completes only inside its line editor: drive an interactive zsh on a pty
# (zsh/zpty), type the line and TAB, and record every match offered through a
# compadd wrapper (compadd -O collects the matches without adding them). zsh skips
# completion while more input is pending, hence the pause after the TAB; the line
# editor handles its input in order, so DONE prints after the completion ended.
ZSH_DRIVER = r'''
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; print READY"
zpty -r z line '*READY*'
zpty -w z "compadd() { local -a _m; builtin compadd -O _m \"\$@\"; print -rl -- \$_m >> $2; builtin compadd \"\$@\"; }; print SET"
zpty -r z line '*SET*'
zpty -wn z "$3"$'\t'
# Wait for the first candidates (a loaded machine may take seconds to run the
# completion), then a little longer for any further compadd calls.
for i in {1..300}; do [[ -s $2 ]] && break; sleep 0.1; done
sleep 0.5
zpty -wn z $'\C-u'
zpty -w z 'print DO""NE'
zpty -r z line '*DONE*'
zpty -d z
'''


@pytest.fixture(scope="module")
def zsh_dir(generated) -> str:
    installed("zsh")
    return str(generated / "zsh")


def zsh_complete(zsh_dir: str, line: str, tmp_path) -> set[str]:
    record = tmp_path / "matches"
    for _ in range(3):  # a loaded machine may still deliver the TAB late: retry
        record.unlink(missing_ok=True)
        subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "zsh", zsh_dir, str(record), line],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TERM="xterm", HOME=str(tmp_path)))
        if record.exists():
            return set(record.read_text().split("\n")) - {""}
    return set()


def test_zsh_completion(zsh_dir, tmp_path):
    assert zsh_complete(zsh_dir, "idrun ma", tmp_path) == {"map"}
    assert zsh_complete(zsh_dir, "idrun --userns ", tmp_path) == set(USERNS_MODES)
    assert zsh_complete(zsh_dir, "idrun map --setgroups ", tmp_path) == {"allow", "deny"}
    assert "root" in zsh_complete(zsh_dir, "idrun map --subuidname ro", tmp_path)
    assert {"--subuidname", "--subuid-file"} <= zsh_complete(zsh_dir, "idrun map --sub", tmp_path)
    assert "echo" in zsh_complete(zsh_dir, "idrun -r -- ech", tmp_path)
    # -v SRC:DST[:OPTS]: files, nothing for DST, then the option words; --rootfs: dirs
    assert "subuid" in zsh_complete(zsh_dir, "idrun -v /etc/subu", tmp_path)
    assert zsh_complete(zsh_dir, "idrun -v /etc:/mnt:", tmp_path) == set(VOLUME_OPTIONS)
    assert zsh_complete(zsh_dir, "idrun map -v /etc:/mnt:ro,i", tmp_path) == {"idmap", "idmap="}
    # --rootfs takes directories (_files -/, as -w); what zsh then filters is its own
    script = open(os.path.join(zsh_dir, "_idrun")).read()
    assert re.search(r"'--rootfs\[[^]]*\]:[^']*:_files -/'", script), script
