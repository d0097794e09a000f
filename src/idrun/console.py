"""The ``idrun`` command's entry point: the console script and ``python -m idrun``.

A launch is a process that execs the command (or waits for it) a few tens of
milliseconds after it starts, and it creates no garbage cycles worth collecting:
the cyclic garbage collector would only spend about 2 ms of each launch on the
objects of the modules being loaded. So it is off from here on in this process;
``import idrun`` (the library) leaves it alone, and a wrapper that stays to wait
for the command turns it back on.
"""
import gc

gc.disable()

from .cli import main  # noqa: E402

__all__ = ["main"]
