"""mk/tools.txt names every external program the build and test runners call.

The runners (Makefile, mk/*.mk, .ci/run, scripts/*.sh, integration/guest/*.sh,
integration/vm/*.sh and *.py, vagrant/**/*.sh) are scanned for the programs they call, and
each must be on the list, with the Debian package that provides it; where that package is
installed here, `dpkg -S` must agree. `scripts/deps.sh` against an empty dpkg database (a
fresh machine) must install every listed package of the host, vm and vagrant phases.

The scanner is a small shell tokenizer, not a shell. What it sees: the first word of each
simple command (after `;`, `|`, `&&`, `||`, `&`, newlines, `(`, `!`, `then`/`do`/...), inside
`$(...)`, backquotes, double quotes and `sh -c '...'`/`bash -c '...'`; past assignments and
the wrappers `env`, `exec`, `timeout`, `nice`, `xargs`, `chroot DIR`, `ip netns exec NS`,
`runuser -u U --`, `setpriv ... --`, `unshare ... --` and the runners' own `bounded`,
`as_user U`, `run_logged LOG`, `phase NAME`; `command -v X` counts X; after an expansion
in command position (`"${VAGRANT_ENV[@]}" vagrant up`) a plain lowercase word is taken
as the program. A path under /bin, /sbin, /usr/bin, /usr/sbin counts as its base name. Make recipes are read as shell
after `$$` -> `$` (make variables become an opaque word). In Python runners it counts the
first string of list/tuple literals passed to subprocess-like calls and `shutil.which(...)`.
Its limits: programs named through a variable (`"$python" -m ...`, `$PKG_INSTALL`) are not
seen (those are listed by hand), nor commands inside heredocs, eval, or function names
passed as strings; case patterns are skipped by tracking `case ... in`/`;;`/`esac`. A word
that is a shell builtin or keyword, a function defined in the scanned file (or the
vagrant/lib.sh it sources), or a path (contains `/`) is not an external program.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "mk" / "tools.txt"
PHASES = {"host", "run", "package", "vm", "vagrant", "guest"}
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # not root's PATH: pyenv shims are no package

BUILTINS = set("""
. : [ [[ ]] alias bg break builtin caller cd command compgen complete continue declare
dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill
let local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt
source suspend test times trap true type typeset ulimit umask unalias unset wait
if then else elif fi case esac for while until do done in function select time { } !
""".split())
WRAPPERS_NO_ARG = {"env", "exec", "nice", "xargs", "sudo", "time", "command", "!"}


# ---------------------------------------------------------------- shell tokenizer

def _skip_quoted(text: str, i: int, quote: str) -> int:
    """Index after the closing quote of a quoted string starting at text[i] == quote."""
    j = i + 1
    while j < len(text) and text[j] != quote:
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j + 1


def _matching_paren(text: str, i: int) -> int:
    """Index of the ')' closing the '(' at text[i], aware of quotes."""
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c in "'\"":
            j = _skip_quoted(text, j, c)
            continue
        if c == "\\":
            j += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return len(text)


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell text as word lists (quotes removed; see the docstring)."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] | None = None
    heredocs: list[str] = []
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal word
        if word is not None:
            words.append("".join(word))
            word = None

    def end_command() -> None:
        end_word()
        if words:
            commands.append(words.copy())
            words.clear()

    while i < n:
        c = text[i]
        if c == "\n":
            end_command()
            i += 1
            for tag in heredocs:  # skip heredoc bodies
                while i < n:
                    nl = text.find("\n", i)
                    line = text[i:nl if nl >= 0 else n]
                    i = nl + 1 if nl >= 0 else n
                    if line.strip() == tag:
                        break
            heredocs.clear()
        elif c == "\\":
            if text[i + 1:i + 2] != "\n":
                word = (word or []) + [text[i + 1:i + 2]]
            i += 2
        elif c == "#" and word is None:
            while i < n and text[i] != "\n":
                i += 1
        elif c in " \t":
            end_word()
            i += 1
        elif c == "'":
            j = _skip_quoted(text, i, "'")
            word = (word or []) + ["\0SQ" + text[i + 1:j - 1]]
            i = j
        elif c == '"':
            j = _skip_quoted(text, i, '"')
            inner = text[i + 1:j - 1]
            for k in [m.start() for m in re.finditer(r"\$\(", inner)]:
                if inner[k + 2:k + 3] != "(":
                    commands.extend(shell_commands(inner[k + 2:_matching_paren(inner, k + 1)]))
            word = (word or []) + ["\0DQ"]
            i = j
        elif c == "`":
            j = text.find("`", i + 1)
            j = n if j < 0 else j
            commands.extend(shell_commands(text[i + 1:j]))
            word = (word or []) + ["\0SUB"]
            i = j + 1
        elif c == "$" and text[i + 1:i + 3] == "((":
            i = _matching_paren(text, i + 1) + 1
            word = (word or []) + ["\0ARITH"]
        elif c == "$" and text[i + 1:i + 2] == "(":
            j = _matching_paren(text, i + 1)
            commands.extend(shell_commands(text[i + 2:j]))
            word = (word or []) + ["\0SUB"]
            i = j + 1
        elif c == "$" and text[i + 1:i + 2] == "{":
            j = text.find("}", i)
            word = (word or []) + ["\0VAR"]
            i = n if j < 0 else j + 1
        elif c == "<" and text[i:i + 2] == "<<" and text[i + 2:i + 3] != "<":
            m = re.match(r"<<-?\s*(['\"]?)(\w+)\1", text[i:])
            if m:
                heredocs.append(m.group(2))
                i += m.end()
            else:
                i += 2
        elif c == "&" and (text[i + 1:i + 2] == ">" or (word and word[-1].endswith(("<", ">")))):
            word = (word or []) + [c]  # a redirection: >&2, &>/dev/null
            i += 1
        elif c in ";&|()":
            if c == "(" and word and word[-1] in "<>":  # process substitution <(...) >(...)
                j = _matching_paren(text, i)
                commands.extend(shell_commands(text[i + 1:j]))
                i = j + 1
                continue
            if c == "(" and word is not None:  # function definition "name()" or "a=(...)"
                word.append("()")
                i = _matching_paren(text, i) + 1
                continue
            end_command()
            if c == ")":
                commands.append([")"])
            if text[i:i + 2] == ";;":
                words.append(";;")
                end_command()
                i += 2
                continue
            i += 1
        else:
            word = (word or []) + [c]
            i += 1
    end_command()
    return commands


EXTERNAL_WRAPPERS = {"env", "nice", "xargs", "sudo", "timeout", "chroot", "ip", "runuser",
                     "setpriv", "unshare"}


def _strip_wrappers(words: list[str], seen: set[str]) -> list[str]:
    """Drop assignments and command wrappers so that words[0] is the program that runs;
    the wrappers that are programs themselves go into seen."""
    while words:
        if words[0] in EXTERNAL_WRAPPERS:
            seen.add(words[0])
        w = words[0]
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=", w):
            words = words[1:]
        elif w in ("timeout",):
            rest = [x for x in words[1:] if not x.startswith("-")]
            words = rest[1:]  # the duration, then the command
        elif w in WRAPPERS_NO_ARG - {"command"}:
            words = [x for x in words[1:]]
            while words and (words[0].startswith("-") or "=" in words[0]):
                words = words[1:]
        elif w in ("chroot", "as_user", "run_logged", "phase"):
            words = [x for x in words[1:] if not x.startswith("-")][1:]
        elif w == "bounded":
            words = words[1:]
        elif w == "ip" and words[1:3] == ["netns", "exec"]:
            words = words[4:]
        elif w in ("runuser", "setpriv", "unshare") and "--" in words:
            words = words[words.index("--") + 1:]
        elif (w.startswith("$") or w.startswith("\0DQ")) and len(words) > 1 \
                and re.fullmatch(r"[a-z][\w.+-]*", words[1]):
            words = words[1:]  # "${ENV_ARRAY[@]}" vagrant up: guess the program after it
        else:
            return words
    return words


KEYWORD_PREFIX = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"}


def called_programs(text: str) -> tuple[set[str], set[str]]:
    """(program words, functions defined) of a shell text."""
    programs: set[str] = set()
    functions: set[str] = set()
    in_case = 0
    expect_pattern = False
    for words in shell_commands(text):
        while words and words[0] in KEYWORD_PREFIX:
            words = words[1:]
        if not words:
            continue
        if words[0] == ";;":
            expect_pattern = in_case > 0
            continue
        if expect_pattern and words[0] != "esac":
            expect_pattern = words[0] != ")"  # a case pattern runs up to its ')'
            continue
        expect_pattern = False
        if words[0] == ")":
            continue
        if words[0] == "case":
            in_case += 1
            expect_pattern = True
            continue
        if words[0] == "esac":
            in_case -= 1
            continue
        if words[0] in ("for", "select", "fi", "done", "}", "function"):
            if words[0] == "function" and len(words) > 1:
                functions.add(words[1].removesuffix("()"))
            continue
        if words[0].endswith("()"):
            functions.add(words[0][:-2])
            words = [w for w in words[1:] if w != "{"]  # "f() { body"
            if not words:
                continue
        if words[:2] == ["command", "-v"] and len(words) > 2:
            programs.add(words[2])
            continue
        words = _strip_wrappers(words, programs)
        if not words:
            continue
        prog = words[0]
        if prog in ("sh", "bash") and "-c" in words:
            k = words.index("-c") + 1
            if k < len(words) and words[k].startswith("\0SQ"):
                p, f = called_programs(words[k][3:])
                programs |= p
                functions |= f
        programs.add(prog)
    return programs, functions


def make_shell(text: str) -> str:
    """The shell text of a makefile: recipes and $(shell ...), with make variables opaque."""
    text = text.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        shells = [line[m.end():_matching_paren(line, m.start() + 1)]
                  for m in re.finditer(r"\$\(shell ", line)]
        if line.startswith("\t"):
            shells.append(line.lstrip("\t").lstrip("@-+"))
        for s in shells:
            s = s.replace("$$", "\1")
            while (t := re.sub(r"\$\([^$()]*\)|\$[@<^*]", "MAKEVAR", s)) != s:
                s = t
            out.append(s.replace("\1", "$"))
    return "\n".join(out)


SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "Child", "_run"}


def python_programs(text: str) -> set[str]:
    programs: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        if name == "which":
            programs |= {a.value for a in node.args if isinstance(a, ast.Constant)}
        elif name in SUBPROCESS_CALLS and node.args:
            first = node.args[0]
            if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
                first = first.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                programs.add(first.value)
    for node in ast.walk(ast.parse(text)):  # cmd = ["qemu-system-x86_64", ...]
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and node.value.elts
                and any(getattr(t, "id", "") in ("cmd", "argv") for t in node.targets)):
            first = node.value.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                programs.add(first.value)
    # tools checked by a comprehension over a tuple: [t for t in ("cpio", "zstd") if not which(t)]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)) and any(
                getattr(c.func, "attr", getattr(c.func, "id", "")) == "which"
                for c in ast.walk(node) if isinstance(c, ast.Call)):
            for gen in node.generators:
                if isinstance(gen.iter, ast.Tuple):
                    programs |= {e.value for e in gen.iter.elts if isinstance(e, ast.Constant)}
    return programs


def runner_files() -> list[Path]:
    files = [ROOT / "Makefile", ROOT / ".ci" / "run", *sorted((ROOT / "mk").glob("*.mk"))]
    files += sorted((ROOT / "scripts").glob("*.sh"))
    files += sorted((ROOT / "integration" / "guest").glob("*.sh"))
    files += sorted((ROOT / "integration" / "vm").glob("*.sh"))
    files += sorted((ROOT / "integration" / "vm").glob("*.py"))
    files += sorted((ROOT / "vagrant").rglob("*.sh"))
    return [f for f in files if f.is_file()]


def scanned_programs() -> dict[str, set[str]]:
    """program -> the runner files that call it."""
    lib_functions = called_programs((ROOT / "vagrant" / "lib.sh").read_text())[1]
    found: dict[str, set[str]] = {}
    for f in runner_files():
        text = f.read_text()
        if f.suffix == ".py":
            progs, funcs = python_programs(text), set()
        else:
            if f.name == "Makefile" or f.suffix == ".mk":
                text = make_shell(text)
            progs, funcs = called_programs(text)
        for p in progs:
            if re.match(r"/(usr/)?s?bin/", p):
                p = p.rsplit("/", 1)[1]
            if (p in BUILTINS or p in funcs or p in lib_functions or "/" in p or "\0" in p
                    or p == "MAKEVAR" or not re.fullmatch(r"[A-Za-z0-9][\w.+-]*", p)):
                continue
            found.setdefault(p, set()).add(str(f.relative_to(ROOT)))
    return found


# ---------------------------------------------------------------- the list

def tools_list() -> dict[str, tuple[str, set[str]]]:
    """program -> (package, phases); '-' rows (packages without a program) are left out."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for lineno, raw in enumerate(TOOLS.read_text().splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        assert len(fields) == 3, f"{TOOLS}:{lineno}: want 'program package phases': {raw!r}"
        prog, pkg, phases = fields
        assert set(phases.split(",")) <= PHASES, f"{TOOLS}:{lineno}: unknown phase in {phases}"
        if prog != "-":
            assert prog not in rows, f"{TOOLS}:{lineno}: {prog} listed twice"
            rows[prog] = (pkg, set(phases.split(",")))
    return rows


def test_scanner_sees_commands_in_the_usual_places() -> None:
    text = (
        'x=$(date +%s) && foo | bar; if baz; then qux "$(quux -a)"; fi\n'
        "case $a in -x|--y|-z) corge ;; *) grault ;; esac\n"
        "diff <(sort a) b >&2; exec {fd}> >(tee log | console) 2>&1\n"
        "timeout 5 garply; ip netns exec ns waldo -d; command -v fred >/dev/null\n"
        "cat <<'EOF'\nnot_a_command here\nEOF\n"
        "sh -c 'plugh && xyzzy' _\nf() { thud; }\n"
        "echo 'not; a command' # comment; nor this\n"
    )
    progs, funcs = called_programs(text)
    assert progs >= {"date", "foo", "bar", "baz", "qux", "quux", "corge", "grault", "garply",
                     "waldo", "fred", "plugh", "xyzzy", "thud", "cat", "echo",
                     "sort", "diff", "tee", "console"}
    assert not progs & {"not_a_command", "not", "a", "nor", "-x", "--y", "-z", "*", "5", "ns", "2", "1"}
    assert "f" in funcs
    assert called_programs(make_shell("t:\n\t@foo $(X) && bar$$(baz)\n"))[0] >= {"foo", "baz"}


def test_every_called_program_is_listed() -> None:
    listed = tools_list()
    missing = {p: sorted(fs) for p, fs in scanned_programs().items() if p not in listed}
    assert not missing, ("programs the runners call that mk/tools.txt does not list "
                         f"(add 'program package phases'): {missing}")


def test_every_listed_program_is_called() -> None:
    """No stale rows: make deps installs exactly what the runners need."""
    found = scanned_programs()
    assert not [p for p in tools_list() if p not in found]


def test_the_scan_finds_what_the_runners_are_known_to_call() -> None:
    """Guards the scanner itself: if it stopped seeing commands, the test above would pass."""
    found = scanned_programs()
    for prog in ("apt-get", "mmdebstrap", "cpio", "zstd", "qemu-system-x86_64", "vagrant",
                 "virsh", "ip", "sfdisk", "runuser", "useradd"):
        assert prog in found, f"the scanner no longer sees {prog}"


def _owners(paths: set[str]) -> dict[str, set[str]]:
    """path -> packages that ship it, from one `dpkg -S` (diversion lines ignored)."""
    p = subprocess.run(["dpkg", "-S", *sorted(paths)], capture_output=True, text=True)
    owners: dict[str, set[str]] = {}
    for line in p.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        if not line.startswith("diversion by"):
            owners.setdefault(path.strip(), set()).update(
                x.strip().split(":")[0] for x in pkgs.split(","))
    return owners


def test_listed_packages_provide_the_programs() -> None:
    """Where the listed package is installed here, dpkg must say it ships the program."""
    if not shutil.which("dpkg"):
        pytest.skip("no dpkg here: not a Debian machine")
    wrong, candidates = [], {}
    for prog, (pkg, _) in tools_list().items():
        st = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg],
                            capture_output=True, text=True).stdout
        if st != "installed":
            continue
        where = shutil.which(prog, path=SYSTEM_PATH)
        if where is None:
            wrong.append(f"{prog}: {pkg} is installed but {prog} is not on {SYSTEM_PATH}")
            continue
        paths = {where, os.path.realpath(where)}
        for c in list(paths):  # merged /usr: dpkg knows the path the package ships
            for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/")):
                if c.startswith(a):
                    paths.add(b + c[len(a):])
                elif c.startswith(b):
                    paths.add(a + c[len(b):])
        candidates[prog] = (pkg, where, paths)
    owners = _owners(set().union(*(c[2] for c in candidates.values())))
    for prog, (pkg, where, paths) in candidates.items():
        found = set().union(*(owners.get(c, set()) for c in paths))
        if pkg not in found:
            wrong.append(f"{prog} ({where}): listed as {pkg}, dpkg -S says {sorted(found)}")
    assert not wrong, wrong


def test_deps_installs_every_listed_package_on_a_fresh_machine(tmp_path: Path) -> None:
    """An empty dpkg database stands in for a fresh machine (nothing is installed)."""
    (tmp_path / "status").touch()
    (tmp_path / "info").mkdir()
    want = {pkg for pkg, phases in _all_rows() if phases - {"guest"}}
    out = subprocess.run([str(ROOT / "scripts" / "deps.sh"), "--dry-run", "all"],
                         env={**os.environ, "IDRUN_DPKG_ADMINDIR": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    installed = set(out.split("--no-install-recommends", 1)[1].split())
    assert installed == want


def test_make_targets_use_the_list() -> None:
    """Each deps target installs its phase's packages from mk/tools.txt, and the targets
that need them depend on it."""
    for target, phase in (("deps", "host"), ("run-deps", "run"), ("deb-deps", "package"),
                          ("vm-deps", "vm"), ("vagrant-deps", "vagrant")):
        out = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), target],
                             capture_output=True, text=True, check=True).stdout
        assert re.search(rf"scripts/deps.sh'? {phase}\b", out), (target, out)
    for target, needs in (("test", "vm-deps"), ("test", "deb-deps"), ("test", "deps"),
                          ("vagrant-test", "vagrant-deps"), ("vm-test", "vm-deps"),
                          ("integration", "deps"), ("run", "run-deps")):
        out = subprocess.run(["make", "-p", "-n", "-C", str(ROOT), "help"],
                             capture_output=True, text=True).stdout
        rule = re.search(rf"^{re.escape(target)}:(.*)$", out, re.M)
        assert rule and needs in _prerequisites(out, target), (target, needs)


def _prerequisites(db: str, target: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    for line in re.findall(rf"^{re.escape(target)}:(.*)$", db, re.M):
        for dep in line.replace("|", " ").split():
            if dep not in seen:
                seen.add(dep)
                _prerequisites(db, dep, seen)
    return seen


def _all_rows() -> list[tuple[str, set[str]]]:
    rows = []
    for raw in TOOLS.read_text().splitlines():
        fields = raw.split("#", 1)[0].split()
        if fields:
            rows.append((fields[1], set(fields[2].split(","))))
    return rows
