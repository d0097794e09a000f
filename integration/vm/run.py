#!/usr/bin/env python3
"""Boot real Debian kernels under QEMU and run idrun's kernel-dependent tests in them.

For every environment in kernels.txt (bookworm 6.1, trixie 6.12, sid: the newest) this

1. download:  refreshes a private apt index of that suite (its own lists and cache under
   the cache dir; the host's apt configuration is not touched), resolves the suite's
   kernel package and downloads the kernel .debs;
2. build:     builds a guest image with build-image.sh (mmdebstrap minbase rootfs +
   packages.txt + the kernel's virtio/9p modules + guest/init.sh as /init, packed as a
   zstd cpio initramfs), unless an image with the same inputs is cached;
3. boot+test: boots it with qemu-system-x86_64 (TCG, no NIC, hard timeout), shares the
   .deb of `make deb` (--deb) and a snapshot of integration/ read-only over 9p; the
   guest runs integration/guest/run-suite.sh, which installs the .deb with dpkg -i and
   runs the suite (root pass + unprivileged pass) against the installed /usr/bin/idrun,
   and reports on the console. The image has the .deb's Depends from the suite's own
   release preinstalled (packages.txt + the .deb's Depends), so the guest needs no network.

Downloads and builds of all environments run in parallel (network and disk bound); at
most --jobs guests run at a time (CPU bound under TCG), the full-suite guests first. At the end it prints one MATRIX
line per environment and exits 1 if any failed. Why this and not virtme-ng: README.md.

Usage: run.py --deb FILE [--suite NAME ...] [--timeout S] [--jobs N] [-- PYTEST ARGS]

Environment (README.md's "Environment variables" lists every IDRUN_* name): IDRUN_CACHE
(default /var/cache: images, rootfs tars and private apt live in $IDRUN_CACHE/idrun-vm
unless --cache names another directory), IDRUN_VM_ACCEL (tcg, or kvm where KVM can boot
stock kernels), IDRUN_DEBIAN_MIRROR ("URI [SECURITY_URI]"; default: the host's own apt
sources, see scripts/debian-rootfs.sh). CI and the suite's IDRUN_* variables are passed
on to the guest.
Standard library only; Python 3.11+.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent.parent
BUILD_SCRIPT = HERE / "build-image.sh"
ROOTFS_SCRIPT = TREE / "scripts" / "debian-rootfs.sh"  # the Debian rootfs recipe, the mirrors
INIT_SCRIPT = HERE.parent / "guest" / "init.sh"
KERNELS_FILE = HERE / "kernels.txt"
PACKAGES_FILE = HERE / "packages.txt"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

ACCELS = ("tcg", "kvm")  # IDRUN_VM_ACCEL's words, the same for vagrant/Vagrantfile
IMAGE_FORMAT = 1  # bump when the image layout changes in a way the hash cannot see
REQUIRED_MODULES = "virtio_pci 9pnet_virtio 9p"
OPTIONAL_MODULES = "veth dummy overlay"
# dependencies of the kernel meta package that make up the kernel: the image
# (bookworm, trixie) or binary + modules + base (modules.builtin etc., sid)
KERNEL_DEP_RE = re.compile(r"^linux-(image|binary|modules|base)-\d")
MEMORY_MIB = 1024  # below this the initramfs does not unpack
DEFAULT_TIMEOUT = 300
# init.sh prints GUEST-UP within 5-15 s of guest uptime, 70-80 s on a loaded machine. A
# guest with nothing on its console after this long hung in early boot (seen once under
# TCG: "Booting from ROM..." and then 11 minutes of CPU, while the same image booted in
# 30 s standalone): it is booted once more.
BOOT_DEADLINE = 300
BUILD_TIMEOUT = 1200

ANSI_RE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_]|c)")
SUITE_RE = re.compile(r"^SUITE user=(\S+) kernel=(\S+) rc=(-?\d+)\s*$")
STATUS_RE = re.compile(r"^GUEST-EXIT-STATUS=(-?\d+)\s*$")
# pytest's final line, with or without the ==== decoration (-q drops it)
PYTEST_SUMMARY_RE = re.compile(
    r"^=*\s*((?:\d+ [a-z]+(?:, )?)+ in [\d.]+s\b.*?|no tests ran in [\d.]+s\b.*?)\s*=*\s*$")
UNDER_TEST_RE = re.compile(r"^IDRUN-UNDER-TEST user=(\S+) command=(\S+) version=(\S+) module=(\S+)")
COUNT_RE = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")
_print_lock = threading.Lock()


class Failure(Exception):
    """An environment failed in a way that is explained by the message."""


def log(msg: str) -> None:
    with _print_lock:
        print(f"run.py: {msg}", flush=True)


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


# --------------------------------------------------------------------------
# configuration


@dataclasses.dataclass
class Environment:
    name: str
    suite: str
    extra_suites: list[str]
    kernel_package: str
    # where the kernel comes from when not from the userland's suites (5.10: bullseye's
    # kernel under a bookworm userland, whose Python idrun supports); empty: the userland's
    kernel_suites: list[str] = dataclasses.field(default_factory=list)
    # the test files this guest runs when the pytest arguments name none; empty: all
    tests: list[str] = dataclasses.field(default_factory=list)


def _comma_list(field: str) -> list[str]:
    return [] if field in ("-", "all") else [s for s in field.split(",") if s]


def load_environments(path: Path = KERNELS_FILE) -> dict[str, Environment]:
    envs: dict[str, Environment] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (4, 6):
            raise SystemExit(f"{path}:{lineno}: expected 4 or 6 fields, got {len(fields)}: {raw!r}")
        name, suite, extra, kpkg = fields[:4]
        ksuites, tests = fields[4:] or ["-", "all"]
        for t in _comma_list(tests):
            if not (TREE / t).is_file():
                raise SystemExit(f"{path}:{lineno}: test file {t} does not exist")
        envs[name] = Environment(name, suite, _comma_list(extra), kpkg, _comma_list(ksuites),
                                 _comma_list(tests))
    if not envs:
        raise SystemExit(f"{path}: no environments")
    return envs


def load_packages(path: Path = PACKAGES_FILE) -> list[str]:
    pkgs = [l.split("#", 1)[0].strip() for l in path.read_text().splitlines()]
    return [p for p in pkgs if p]


@dataclasses.dataclass(frozen=True)
class Package:
    """The .deb the guests install and test."""
    path: Path
    name: str
    version: str
    depends: list[str]  # package names, the first of each alternative


def deb_fields(path: Path, *fields: str) -> dict[str, str]:
    p = subprocess.run(["dpkg-deb", "--field", str(path), *fields],
                       capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    if p.returncode != 0:
        raise SystemExit(f"run.py: --deb {path}: not a Debian package: {p.stderr.strip()}")
    out: dict[str, str] = {}
    for line in p.stdout.splitlines():
        key, _, val = line.partition(":")
        out[key.strip()] = val.strip()
    return out


def dependency_names(depends: str) -> list[str]:
    """'python3-click, python3:any (>= 3.11~), a | b' -> ['python3-click', 'python3', 'a']"""
    names = []
    for group in depends.split(","):
        first = group.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name:
            names.append(name)
    return names


def load_package(path: Path) -> Package:
    if not path.is_file():
        raise SystemExit(f"run.py: --deb {path}: no such file (make deb builds dist/idrun_VERSION_all.deb)")
    f = deb_fields(path, "Package", "Version", "Depends", "Pre-Depends")
    if f.get("Package") != "idrun":
        raise SystemExit(f"run.py: --deb {path}: package {f.get('Package')!r}, expected 'idrun'")
    deps = dependency_names(",".join(f.get(k, "") for k in ("Pre-Depends", "Depends")))
    return Package(path.resolve(), f["Package"], f.get("Version", "?"), deps)


def image_packages(listed: list[str], pkg: Package) -> list[str]:
    """packages.txt plus the .deb's Depends: the guest installs it with dpkg -i offline.
    The order of packages.txt is kept, so an unchanged list keeps the cached images."""
    return listed + [d for d in pkg.depends if d not in listed]


def mirrors(apt_dir: str = "/etc/apt") -> tuple[str, str]:
    """(Debian mirror, security mirror), as scripts/debian-rootfs.sh finds them for both
    VM harnesses: IDRUN_DEBIAN_MIRROR, else the host's apt sources. No host name is
    written into the tree."""
    p = subprocess.run(["bash", str(ROOTFS_SCRIPT), "mirrors", apt_dir],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"run.py: {p.stderr.strip()}")
    mirror, security = p.stdout.split()
    return mirror, security


def _lines(suites: list[str]) -> list[str]:
    mirror, security = mirrors()
    return [f"deb {security if s.endswith('-security') else mirror} {s} main" for s in suites]


def source_lines(env: Environment) -> list[str]:
    """The userland's apt sources."""
    return _lines([env.suite, *env.extra_suites])


def kernel_source_lines(env: Environment) -> list[str]:
    """Where the kernel package is resolved: its own suites, or the userland's."""
    return _lines(env.kernel_suites) if env.kernel_suites else source_lines(env)


# --------------------------------------------------------------------------
# private apt


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists, cache and dpkg status."""

    def __init__(self, root: Path, sources: list[str]):
        self.root = root
        for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                    "etc/preferences.d", "debs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "status").touch()
        signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
        text = "".join(l.replace("deb ", f"deb {signed}", 1) + "\n" for l in sources)
        sl = root / "etc" / "sources.list"
        if not sl.exists() or sl.read_text() != text:
            sl.write_text(text)
        self.debs = root / "debs"

    def _opts(self) -> list[str]:
        r = self.root
        o = {
            "Dir::Etc::SourceList": r / "etc/sources.list",
            "Dir::Etc::SourceParts": r / "etc/sources.list.d",
            "Dir::Etc::Preferences": r / "etc/preferences",
            "Dir::Etc::PreferencesParts": r / "etc/preferences.d",
            "Dir::State::Lists": r / "lists",
            "Dir::State::status": r / "status",
            "Dir::Cache": r / "cache",
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "APT::Sandbox::User": "root",
            "Acquire::Check-Valid-Until": "false",
            "Acquire::Languages": "none",
        }
        out = []
        for k, v in o.items():
            out += ["-o", f"{k}={v}"]
        return out

    def _run(self, tool: str, *args: str, cwd: Path | None = None, timeout: int = 600) -> str:
        cmd = [tool, *self._opts(), *args]
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "LC_ALL": "C.UTF-8"})
        if p.returncode != 0:
            raise Failure(f"{tool} {' '.join(args)} failed (rc {p.returncode}): "
                          f"{(p.stderr or p.stdout).strip()[-1500:]}")
        return p.stdout + p.stderr

    def update(self) -> None:
        out = self._run("apt-get", "-q", "update")
        bad = [l for l in out.splitlines() if l.startswith(("E:", "W: Failed", "Err:"))]
        if bad:
            raise Failure("apt-get update: " + " / ".join(bad[:4]))

    def show(self, pkg: str) -> dict[str, str]:
        out = self._run("apt-cache", "show", "--no-all-versions", pkg)
        fields: dict[str, str] = {}
        key = None
        for line in out.split("\n\n", 1)[0].splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, val = line.partition(":")
                fields[key] = val.strip()
        if "Package" not in fields or "Version" not in fields:
            raise Failure(f"apt-cache show {pkg}: no candidate")
        return fields

    def resolve_kernel(self, pkg: str) -> list[dict[str, str]]:
        """pkg and its linux-image/binary/modules dependencies, recursively."""
        seen: dict[str, dict[str, str]] = {}
        todo = [pkg]
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            st = self.show(name)
            seen[name] = st
            deps = ",".join(st.get(f, "") for f in ("Pre-Depends", "Depends"))
            for group in deps.split(","):
                first = group.split("|")[0].strip()
                dep = re.split(r"[\s(:]", first, maxsplit=1)[0] if first else ""
                if dep and KERNEL_DEP_RE.match(dep) and dep not in seen:
                    todo.append(dep)
        return list(seen.values())

    def download(self, stanzas: list[dict[str, str]]) -> list[Path]:
        paths = []
        for st in stanzas:
            path = self.debs / Path(st["Filename"]).name
            if not (path.exists() and self._verify(path, st)):
                path.unlink(missing_ok=True)
                self._run("apt-get", "-q", "download", f"{st['Package']}={st['Version']}",
                          cwd=self.debs, timeout=1200)
                if not path.exists():
                    found = sorted(self.debs.glob(f"{st['Package']}_*.deb"))
                    raise Failure(f"apt-get download {st['Package']} did not produce {path.name} "
                                  f"(found: {[p.name for p in found]})")
                if not self._verify(path, st):
                    raise Failure(f"{path.name}: size/sha256 differ from the index")
            paths.append(path)
        keep = {p.name for p in paths}
        for old in self.debs.glob("*.deb"):
            if old.name not in keep:
                old.unlink()
        return paths

    @staticmethod
    def _verify(path: Path, st: dict[str, str]) -> bool:
        if "Size" in st and path.stat().st_size != int(st["Size"]):
            return False
        if "SHA256" in st:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest() == st["SHA256"]
        return True


# --------------------------------------------------------------------------
# images


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_key(env: Environment, sources: list[str], packages: list[str],
              kernel: list[dict[str, str]], kernel_sources: list[str] | None = None) -> str:
    material: dict[str, object] = {
        "format": IMAGE_FORMAT,
        "name": env.name,
        "suite": env.suite,
        "sources": sources,
        "packages": packages,
        "kernel": [[k["Package"], k["Version"], k.get("SHA256", "")] for k in kernel],
        "modules": REQUIRED_MODULES,
        "optional_modules": OPTIONAL_MODULES,
        "build-image.sh": file_sha256(BUILD_SCRIPT),
        "debian-rootfs.sh": file_sha256(ROOTFS_SCRIPT),
        "init.sh": file_sha256(INIT_SCRIPT),
    }
    if kernel_sources and kernel_sources != sources:
        material["kernel_sources"] = kernel_sources  # absent otherwise: cached keys stay
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def rootfs_key(env: Environment, sources: list[str], packages: list[str]) -> str:
    """What the userland of an image (mmdebstrap's result, before the kernel) depends on:
    environments that differ only in their kernel share it."""
    material = {"format": IMAGE_FORMAT, "suite": env.suite, "sources": sources,
                "packages": packages, "build-image.sh": file_sha256(BUILD_SCRIPT),
                "debian-rootfs.sh": file_sha256(ROOTFS_SCRIPT)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def own_images(images: Path, name: str, partial: bool = False) -> list[Path]:
    """The images (or partial builds) of environment ``name`` only: "trixie-<key>" but not
    "trixie-bpo-<key>", whose name starts the same."""
    pattern = re.compile((r"\." if partial else "") + re.escape(name) + r"-[0-9a-f]{16}"
                         + (r"\.partial" if partial else "") + "$")
    return [p for p in images.glob("*") if pattern.match(p.name)] if images.is_dir() else []


def image_complete(d: Path) -> bool:
    return all((d / f).is_file() for f in ("initramfs.cpio.zst", "vmlinuz", "kernel-release"))


# --------------------------------------------------------------------------
# subprocess helpers


LIVE_CHILDREN: set[Child] = set()  # what an interrupt must stop: the workers cannot see it


class Child:
    """A child process in its own process group whose output is relayed line by line."""

    def __init__(self, cmd: list[str], prefix: str, log_path: Path, cwd: Path | None = None,
                 grace: float = 5.0):
        self.prefix = prefix
        self.grace = grace
        self.lines: list[str] = []
        self.log = log_path.open("w", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        LIVE_CHILDREN.add(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _emit(self, raw: bytes) -> None:
        text = ANSI_RE.sub("", raw.decode("utf-8", "replace")).replace("\r", "").rstrip("\n")
        self.lines.append(text)
        self.log.write(text + "\n")
        with _print_lock:
            print(f"{self.prefix}{text}", flush=True)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self._emit(raw)

    def wait(self, timeout: float) -> tuple[int | None, bool]:
        """(returncode, timed_out); on timeout the whole process group is killed."""
        timed_out = False
        try:
            rc: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
            rc = None
        self._reader.join(timeout=10)
        self.log.flush()
        return rc, timed_out

    def wait_for_text(self, text: str, timeout: float) -> bool:
        """Whether a line containing ``text`` arrives within ``timeout`` seconds (False
        at once if the process ends without one)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            if any(text in l for l in self.lines[seen:]):
                return True
            seen = max(0, len(self.lines) - 1)
            if self.proc.poll() is not None:
                self._reader.join(timeout=10)
                return any(text in l for l in self.lines)
            time.sleep(0.5)
        return False

    def kill(self) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after the grace time."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def close(self) -> None:
        self.kill()
        self.log.close()
        LIVE_CHILDREN.discard(self)


def print_tail(lines: list[str], what: str, n: int = 40) -> None:
    print(f"---- last {min(n, len(lines))} lines of {what} ----", flush=True)
    for l in lines[-n:]:
        print(f"  | {l}")
    print("---- end ----", flush=True)


# --------------------------------------------------------------------------
# QEMU


def virtfs(path: Path, tag: str, readonly: bool) -> str:
    p = str(path).replace(",", ",,")
    ro = ",readonly=on" if readonly else ""
    return f"local,path={p},mount_tag={tag},security_model=none,id={tag}{ro}"


def vm_accel() -> str:
    accel = os.environ.get("IDRUN_VM_ACCEL", "tcg")
    if accel not in ACCELS:
        raise SystemExit(f"run.py: IDRUN_VM_ACCEL={accel!r}: use one of {', '.join(ACCELS)}")
    return accel


def default_cache() -> Path:
    return Path(os.environ.get("IDRUN_CACHE", "/var/cache")) / "idrun-vm"


def qemu_cmd(image: Path, tree: Path, out: Path) -> list[str]:
    # TCG: this project's machines have a /dev/kvm (PVM) that hangs stock kernels
    # (shared/spec/vm-testing.md); IDRUN_VM_ACCEL=kvm where KVM is real.
    accel = vm_accel()
    cmd = ["qemu-system-x86_64", "-m", str(MEMORY_MIB), "-smp", "2", "-nographic",
           "-no-reboot", "-nic", "none", "-accel", accel]
    if accel == "kvm":
        cmd += ["-cpu", "host"]
    return cmd + ["-kernel", str(image / "vmlinuz"),
                  "-initrd", str(image / "initramfs.cpio.zst"),
                  "-append", "console=ttyS0 panic=-1 quiet",
                  "-virtfs", virtfs(tree, "idrun_tree", True),
                  "-virtfs", virtfs(out, "idrun_out", False)]


# --------------------------------------------------------------------------
# one environment


@dataclasses.dataclass
class Pass:
    user: str
    kernel: str
    rc: int
    summary: str | None


@dataclasses.dataclass
class Result:
    name: str
    kernel: str = "?"
    passes: list[Pass] = dataclasses.field(default_factory=list)
    ok: bool = False
    reason: str = ""
    t_download: float | None = None
    t_build: float | None = None
    build_cached: bool = False
    t_boot: float | None = None
    under_test: str = ""
    kernel_package: str = "?"   # "linux-image-... VERSION (suites)"


def parse_console(lines: list[str], result: Result) -> int | None:
    status = None
    summary = None
    for line in lines:
        if m := PYTEST_SUMMARY_RE.match(line):
            summary = m.group(1)
        elif m := SUITE_RE.match(line):
            result.passes.append(Pass(m.group(1), m.group(2), int(m.group(3)), summary))
            result.kernel = m.group(2)
            summary = None
        elif m := STATUS_RE.match(line):
            status = int(m.group(1))
        elif (m := UNDER_TEST_RE.match(line)) and not result.under_test:
            result.under_test = f"idrun={m.group(3)} {m.group(2)} module={m.group(4)}"
    return status


def describe_pass(p: Pass) -> str:
    counts = {"passed": 0, "failed": 0}
    for n, word in COUNT_RE.findall(p.summary or ""):
        word = {"error": "errors"}.get(word, word)
        counts[word] = counts.get(word, 0) + int(n)
    text = ", ".join(f"{v} {k}" for k, v in counts.items() if k in ("passed", "failed") or v)
    if p.summary is None:
        text = "no pytest summary"
    return f"{p.user}: {text}" + ("" if p.rc == 0 else f" (rc {p.rc})")


# host commands/paths, and the guest's own choice of what it tests
HOST_ONLY_VARS = {"IDRUN", "IDRUN_TREE", "IDRUN_PYTHON", "IDRUN_DEB", "IDRUN_INSTALLED",
                  "IDRUN_CACHE", "IDRUN_DEBIAN_MIRROR"}
GUEST_DEB_DIR = "/host/tree/deb"  # the snapshot's deb/ (init.sh mounts the share at /host/tree)


def guest_environment(pkg: Package) -> dict[str, str]:
    """CI and the suite's IDRUN_* knobs, for /host/out/guest-env, and IDRUN_DEB: the
    guest's run-suite.sh installs that .deb and tests the installed package."""
    env = {k: v for k, v in sorted(os.environ.items())
           if (k == "CI" or (k.startswith("IDRUN_")
                             and not k.startswith(("IDRUN_VM_", "IDRUN_VAGRANT_"))))
           and k not in HOST_ONLY_VARS and "\n" not in v}
    env["IDRUN_DEB"] = f"{GUEST_DEB_DIR}/{pkg.path.name}"
    return env


# No src/: the guests test the installed .deb, and nothing may import the checkout.
# testlib/: the tests' helper package (pyproject.toml puts the top on pytest's path).
SNAPSHOT_ITEMS = ("integration", "testlib", "pyproject.toml")


def snapshot_tree(dest: Path, pkg: Package) -> None:
    """Copy the .deb and what the guests need from the checkout (the tests), so every
    guest of a run tests the same package and tests even while the checkout is edited."""
    dest.mkdir()
    (dest / "deb").mkdir()
    shutil.copy2(pkg.path, dest / "deb" / pkg.path.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "*.so")
    for item in SNAPSHOT_ITEMS:
        src = TREE / item
        if src.is_dir():
            shutil.copytree(src, dest / item, symlinks=True, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / item)


class BootSlots:
    """At most ``n`` guests boot at a time, the longest first.

    Guests are CPU bound under TCG and take very different times (the whole kernel set
    against a subset); when a slot frees, the waiting guest with the most to run takes
    it, so a long guest never starts last and leaves the other slots idle."""

    def __init__(self, n: int):
        self._free = n
        self._waiting: list[tuple[int, int]] = []     # (-weight, arrival)
        self._cond = threading.Condition()
        self._arrivals = 0

    @contextlib.contextmanager
    def slot(self, weight: int):
        with self._cond:
            me = (-weight, self._arrivals)
            self._arrivals += 1
            self._waiting.append(me)
            self._cond.wait_for(lambda: self._free > 0 and min(self._waiting) == me)
            self._waiting.remove(me)
            self._free -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()


class Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.cache = args.cache
        self.images = self.cache / "images"
        self.package: Package = args.package
        self.packages = image_packages(load_packages(), self.package)
        self.workdir = workdir
        self.share = workdir / "tree"
        self.boot_slots = BootSlots(args.jobs)
        self.rootfs_dir = self.cache / "rootfs"
        self._rootfs_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def rootfs_lock(self, key: str) -> threading.Lock:
        """One build per userland at a time: the second reuses the first's rootfs."""
        with self._locks_lock:
            return self._rootfs_locks.setdefault(key, threading.Lock())

    def fetch(self, env: Environment, res: Result, sources: list[str]) -> tuple[Path | None, list[Path], str]:
        """Returns (cached image or None, kernel debs, image key)."""
        t0 = time.monotonic()
        try:
            ksources = kernel_source_lines(env)
            if ksources == sources:
                apt = PrivateApt(self.cache / "apt" / env.name, sources)
            else:  # the kernel of another release: its own private apt
                apt = PrivateApt(self.cache / "apt" / f"{env.name}-kernel", ksources)
            try:
                apt.update()
            except Failure as e:
                raise Failure(f"{e} (the mirror may not serve {', '.join(env.kernel_suites or [env.suite])}"
                              " any more: set IDRUN_DEBIAN_MIRROR to one that does)") from None
            kernel = apt.resolve_kernel(env.kernel_package)
            key = image_key(env, sources, self.packages, kernel, ksources)
            image = self.images / f"{env.name}-{key}"
            names = ", ".join(k["Package"] + " " + k["Version"] for k in kernel)
            real = [k for k in kernel if k["Package"].startswith("linux-image-")
                    and k["Package"] != env.kernel_package] or kernel
            res.kernel_package = (", ".join(k["Package"] + " " + k["Version"] for k in real)
                                  + f" from {','.join(env.kernel_suites or [env.suite, *env.extra_suites])}")
            if image_complete(image):
                log(f"{env.name}: kernel {names}; image {image.name} is cached")
                return image, [], key
            log(f"{env.name}: downloading {names}")
            return None, apt.download(kernel), key
        except (subprocess.TimeoutExpired, OSError) as e:
            raise Failure(f"download failed: {e}") from e
        finally:
            res.t_download = time.monotonic() - t0

    def build(self, env: Environment, res: Result, sources: list[str], debs: list[Path], key: str) -> Path:
        self.images.mkdir(parents=True, exist_ok=True)
        final = self.images / f"{env.name}-{key}"
        partial = self.images / f".{env.name}-{key}.partial"
        # leftovers of killed builds (we hold the cache lock, nobody else builds);
        # build-image.sh unmounts what a killed mmdebstrap left in its work dir
        for d in [final, *own_images(self.images, env.name, partial=True)]:
            shutil.rmtree(d, ignore_errors=True)
        cmd = ["bash", str(BUILD_SCRIPT), "--suite", env.suite, "--out", str(partial),
               "--init", str(INIT_SCRIPT), "--packages", ",".join(self.packages),
               "--modules", REQUIRED_MODULES, "--optional-modules", OPTIONAL_MODULES]
        for s in sources:
            cmd += ["--source", s]
        for d in debs:
            cmd += ["--kernel-deb", str(d)]
        rkey = rootfs_key(env, sources, self.packages)
        tar = self.rootfs_dir / f"{env.suite}-{rkey}.tar"
        cmd += ["--rootfs-tar", str(tar)]
        t0 = time.monotonic()
        with self.rootfs_lock(rkey):
            log(f"{env.name}: building image {final.name}"
                + (f" (userland from {tar.name})" if tar.exists() else ""))
            # the build script needs time to unmount and delete its work dir
            child = Child(cmd, f"[{env.name} build] ", self.workdir / f"build-{env.name}.log",
                          grace=60)
            try:
                rc, timed_out = child.wait(BUILD_TIMEOUT)
            finally:
                child.close()
                res.t_build = time.monotonic() - t0
        if self.rootfs_dir.is_dir():     # userlands of this suite that no input matches now
            for old in self.rootfs_dir.glob(f"{env.suite}-*.tar"):
                if old != tar and re.fullmatch(re.escape(env.suite) + r"-[0-9a-f]{16}\.tar",
                                               old.name):
                    old.unlink(missing_ok=True)
        if timed_out or rc != 0:
            shutil.rmtree(partial, ignore_errors=True)
            print_tail(child.lines, f"the {env.name} image build")
            raise Failure(f"image build {'timed out' if timed_out else f'failed (rc {rc})'}")
        partial.rename(final)
        for old in own_images(self.images, env.name):
            if old != final and old.is_dir():
                log(f"{env.name}: removing superseded image {old.name}")
                shutil.rmtree(old, ignore_errors=True)
        return final

    def boot(self, env: Environment, res: Result, image: Path) -> None:
        out = self.workdir / f"out-{env.name}"
        out.mkdir()
        pytest_args = guest_pytest_args(env, self.args.pytest_args)
        if pytest_args:
            (out / "pytest-args").write_text("".join(a + "\n" for a in pytest_args))
        if env.tests and pytest_args != self.args.pytest_args:
            log(f"{env.name}: runs its subset {' '.join(env.tests)} (kernels.txt)")
        guest_env = guest_environment(self.package)
        (out / "guest-env").write_text("".join(f"{k}={v}\n" for k, v in guest_env.items()))
        # a subset guest (kernels.txt) runs a few files: boot those after the full ones
        with self.boot_slots.slot(0 if env.tests else 1):
            log(f"{env.name}: booting {res.kernel} (timeout {self.args.timeout} s)")
            t0 = time.monotonic()
            for attempt in (1, 2):
                child = Child(qemu_cmd(image, self.share, out), f"[{env.name}] ",
                              self.workdir / f"console-{env.name}-{attempt}.log")
                try:
                    deadline = min(BOOT_DEADLINE, self.args.timeout)
                    if (attempt == 1 and not child.wait_for_text("GUEST-UP ", deadline)
                            and child.proc.poll() is None):
                        log(f"{env.name}: no GUEST-UP after {deadline} s, a hang in early "
                            "boot: killing QEMU and booting once more")
                        continue
                    left = max(1.0, self.args.timeout - (time.monotonic() - t0))
                    rc, timed_out = child.wait(left)
                finally:
                    child.close()
                    res.t_boot = time.monotonic() - t0
                break
        status = parse_console(child.lines, res)
        if timed_out:
            print_tail(child.lines, f"the {env.name} console")
            raise Failure(f"guest timed out after {self.args.timeout} s (QEMU killed)")
        if status is None:
            print_tail(child.lines, f"the {env.name} console")
            raise Failure(f"guest stopped without reporting GUEST-EXIT-STATUS (qemu rc {rc})")
        users = [p.user for p in res.passes]
        if status != 0:
            bad = [p.user for p in res.passes if p.rc != 0]
            raise Failure(f"guest exit status {status}"
                          + (f"; failing passes: {', '.join(bad)}" if bad else ""))
        if len(res.passes) < 2 or "root" not in users:
            raise Failure(f"expected a root and an unprivileged pass, got: {users or 'none'}")

    def run_env(self, env: Environment) -> Result:
        res = Result(env.name)
        sources = source_lines(env)
        try:
            image, debs, key = self.fetch(env, res, sources)
            if image is None:
                image = self.build(env, res, sources, debs, key)
            else:
                res.build_cached = True
                res.t_build = 0.0
            res.kernel = (image / "kernel-release").read_text().strip()
            self.boot(env, res, image)
            res.ok = True
        except Failure as e:
            res.reason = str(e)
            log(f"{env.name}: FAIL: {e}")
        return res


def names_test_path(args: list[str]) -> bool:
    """Whether the pytest arguments name a test file (relative to the tree)."""
    return any(not a.startswith("-") and (TREE / a.split("::")[0]).exists() and
               a.split("::")[0].startswith("integration") for a in args)


def guest_pytest_args(env: Environment, args: list[str]) -> list[str]:
    """An environment's subset (kernels.txt) unless the arguments name test files."""
    if env.tests and not names_test_path(args):
        return [*args, *env.tests]
    return list(args)


def matrix_line(r: Result) -> str:
    parts = [describe_pass(p) for p in r.passes]
    verdict = "PASS" if r.ok else f"FAIL ({r.reason})"
    times = (f"download {fmt_s(r.t_download)}, build {fmt_s(r.t_build)}"
             f"{' (cached)' if r.build_cached else ''}, boot+test {fmt_s(r.t_boot)}")
    tested = r.under_test or "idrun=? (no IDRUN-UNDER-TEST line)"
    return (f"MATRIX {r.name} kernel={r.kernel} ({r.kernel_package}) {tested} "
            + " | ".join(parts + [verdict, times]))


def parse_args(argv: list[str]) -> argparse.Namespace:
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1:]
    envs = load_environments()
    ap = argparse.ArgumentParser(
        prog="run.py",
        description="Boot Debian kernels under QEMU and run idrun's integration suite in them. "
                    "Arguments after -- are passed to pytest in the guests.")
    ap.add_argument("--deb", type=Path, required=True, metavar="FILE",
                    help="the idrun .deb to install in the guests and test (make deb: "
                         "dist/idrun_VERSION_all.deb)")
    ap.add_argument("--suite", action="append", choices=list(envs), metavar="NAME",
                    help=f"environment to run (repeatable; default: all of {', '.join(envs)})")
    ap.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                    help="hard limit per boot in seconds (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="guests running at the same time, those with the whole kernel set "
                         "first (default %(default)s; make vm-test uses VM_JOBS=3)")
    ap.add_argument("--cache", type=Path, default=default_cache(), metavar="DIR",
                    help="images, rootfs tars and private apt (default $IDRUN_CACHE/idrun-vm, "
                         "IDRUN_CACHE defaulting to /var/cache)")
    args = ap.parse_args(argv)
    vm_accel()
    args.pytest_args = pytest_args
    args.environments = [envs[n] for n in (args.suite or list(envs))]
    if args.timeout <= 0 or args.jobs <= 0:
        ap.error("--timeout and --jobs must be positive")
    return args


def preflight() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run.py: must run as root (mmdebstrap --mode=root, chroot, cpio ownership)")
    tools = ("qemu-system-x86_64", "apt-get", "apt-cache", "mmdebstrap", "zstd", "cpio", "dpkg-deb")
    if missing := [t for t in tools if not shutil.which(t)]:
        raise SystemExit(f"run.py: missing tools: {' '.join(missing)} (run: make vm-deps)")


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop QEMU/builds


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    preflight()
    args.package = load_package(args.deb)
    signal.signal(signal.SIGTERM, _on_sigterm)
    t_start = time.monotonic()
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="idrun-vm-run."))
    os.chmod(workdir, 0o755)
    results: list[Result] = []
    try:
        with (cache / ".lock").open("w") as lockf:
            try:
                fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another run.py holding {cache / '.lock'}")
                fcntl.flock(lockf, fcntl.LOCK_EX)
            runner = Runner(args, workdir)
            snapshot_tree(runner.share, runner.package)
            pkg = runner.package
            log(f"testing package {pkg.name} {pkg.version} ({pkg.path}, sha256 "
                f"{file_sha256(pkg.path)[:16]}); the guests install it with dpkg -i")
            log(f"cache {cache}; {len(args.environments)} environments, "
                f"at most {args.jobs} booting at a time")
            pool = concurrent.futures.ThreadPoolExecutor(len(args.environments))
            try:
                results = list(pool.map(runner.run_env, args.environments))
            finally:
                for child in list(LIVE_CHILDREN):  # only after an interrupt
                    child.kill()
                pool.shutdown()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if results and all(r.ok for r in results):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept console and build logs in {workdir}")
    print("\n======== matrix ========", flush=True)
    for r in results:
        print(matrix_line(r))
    failed = [r.name for r in results if not r.ok]
    total = time.monotonic() - t_start
    print(f"TOTAL {len(results) - len(failed)}/{len(results)} environments passed in {total:.1f}s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
