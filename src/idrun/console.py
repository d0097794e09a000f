"""The ``idrun`` command's entry point: the console script and ``python -m idrun``.

SIGINT first: Python turns it into KeyboardInterrupt, which during the imports
below printed a traceback (a ^C right after starting idrun). From here on a SIGINT
that is not ignored ends the process as SIGTERM does, quietly, with the status of
a death by SIGINT (130 in a shell); nothing has started yet, and a launch in
progress is as safe from it as from SIGTERM (the map writer dies with its parent,
a lease names a dead owner). A SIGINT ignored by the caller (``nohup``, ``&``)
stays ignored, for the command too.

A launch is a process that execs the command (or waits for it) a few tens of
milliseconds after it starts, and it creates no garbage cycles worth collecting:
the cyclic garbage collector would only spend about 2 ms of each launch on the
objects of the modules being loaded. So it is off from here on in this process;
``import idrun`` (the library) leaves it alone, and a wrapper that stays to wait
for the command turns it back on.
"""
import _signal

if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

import gc  # noqa: E402

gc.disable()

import sys  # noqa: E402

from .cli import plain  # noqa: E402

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``idrun``: a plain launch without click (cli/plain.py); anything else, and
    whatever that parser is not sure of, through click (cli/launcher.py)."""
    args = sys.argv[1:] if argv is None else list(argv)
    parsed = plain.parse(args)
    if parsed is None:
        from .cli.launcher import main as click_main
        return click_main(args)
    return plain.launch_main(*parsed, args)
