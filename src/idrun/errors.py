"""The one exception family of idrun.

Every failure a user can cause or meet is an ``IdrunError``: its ``str()`` is the
single line the CLI prints (what, where, why, and a hint) and ``exit_status`` is
what the process exits with. Anything else escaping is a bug.
"""
from __future__ import annotations

EXIT_IDRUN = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


class IdrunError(Exception):
    """Base of every error idrun reports to its user."""

    exit_status: int = EXIT_IDRUN

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; hint: {self.hint}"
        return self.message


class MapSyntaxError(IdrunError):
    """A --uidmap/--gidmap/--userns value that cannot be parsed."""


class MapConflictError(IdrunError):
    """Options that cannot be combined."""


class MapValidationError(IdrunError):
    """A mapping the kernel, newuidmap or idrun's own rules would refuse."""


class SubidError(IdrunError):
    """A problem with /etc/subuid, /etc/subgid or the NSS sub-id source."""


class LaunchError(IdrunError):
    """A failure while creating the namespace or writing its maps."""


class CommandNotFound(IdrunError):
    """The command does not exist (exit status 127; subprocess would raise FileNotFoundError)."""

    exit_status = EXIT_NOT_FOUND


class CommandNotExecutable(IdrunError):
    """The command exists but cannot be executed (exit status 126)."""

    exit_status = EXIT_NOT_EXECUTABLE


MAX_QUOTED = 60


def quoted(text: str) -> str:
    """``text`` in double quotes, with control characters escaped.

    Error messages must stay one line whatever the user typed, and readable:
    a value of thousands of characters is cut, saying how long it was.
    """
    if len(text) > MAX_QUOTED:
        return quoted(text[:MAX_QUOTED - 20]) + f"… ({len(text)} characters)"
    if text.isprintable():
        return f'"{text}"'
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


class RegistryError(IdrunError):
    """The lease registry of --userns=auto is unusable (ownership, mode, I/O)."""
